"""`farm serve` keeps its token off the command line and its cookie off plain http: a real server over real TLS.

Half a TLS pair is refused before anything is served: tests/ui/test_dashboard_app.py, in-process."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from helpers import closed_port, start_farm

from farm.record.history import History

TOKEN = "tls-token-5d1e"


def _serve(cwd: Path, *args: str) -> tuple[subprocess.Popen, int]:
    History(cwd / "results" / "history.sqlite")  # the dashboard reads a history and makes none
    port = closed_port()
    process = start_farm("serve", "--port", str(port), "--out", "results", *args, cwd=cwd,
                         env={"FARM_SERVE_TOKEN": TOKEN}, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            assert process.poll() is None, process.stdout.read()
            time.sleep(0.2)
    raise AssertionError("farm serve did not start")


def _get(connection: http.client.HTTPConnection, path: str) -> tuple[int, dict]:
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}


@pytest.fixture
def certificate(tmp_path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                           "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    return cert, key


@pytest.mark.real  # starts a process
def test_over_tls_the_token_comes_from_the_environment_and_its_cookie_is_secure(tmp_path, certificate):
    cert, key = certificate
    process, port = _serve(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert TOKEN.encode() not in Path(f"/proc/{process.pid}/cmdline").read_bytes()
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE  # our own self-signed certificate
        assert _get(http.client.HTTPSConnection("127.0.0.1", port, context=insecure, timeout=30), "/")[0] == 401
        status, headers = _get(http.client.HTTPSConnection("127.0.0.1", port, context=insecure, timeout=30),
                               f"/?token={TOKEN}")
        assert status == 200
        assert "secure" in [part.strip().lower() for part in headers["set-cookie"].split(";")], headers["set-cookie"]
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.real  # starts a process
def test_over_plain_http_the_cookie_is_not_marked_secure(tmp_path):
    process, port = _serve(tmp_path)
    try:
        status, headers = _get(http.client.HTTPConnection("127.0.0.1", port, timeout=30), f"/?token={TOKEN}")
        assert status == 200 and "secure" not in headers["set-cookie"].lower()
    finally:
        process.terminate()
        process.wait(timeout=10)
