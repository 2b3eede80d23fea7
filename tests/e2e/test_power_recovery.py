"""Boards that recover: a real pdudaemon (its localcmdline driver) switching a stand-in's power.

"off" freezes the stand-in's sshd and everything under it (the board hangs: connections open and
silent); "on" starts a fresh sshd (a new boot id). A `farm run` during which the board hangs ends
with it power-cycled, measured, and the cycle in results.json, the report and the history.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from helpers import processes, sshd_greets, wait_for_processes

from farm.config.inventory import StandinSpec
from farm.lab.standins import Lab
from farm.record.history import History

PDUDAEMON = shutil.which("pdudaemon", path=str(Path(sys.executable).parent))
# slow: a minute or more of real stand-ins: the default run skips it, CI runs it (-m slow locally)
pytestmark = [pytest.mark.skipif(PDUDAEMON is None, reason="pdudaemon is not installed (the test extra)"),
              pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def powered(shared_dir, tmp_path):
    """A lab of one stand-in, p1, whose outlet is on a pdudaemon (localcmdline driver) on 127.0.0.1."""
    lab_dir = shared_dir / f"lab-power-{uuid.uuid4().hex[:6]}"
    port = _free_port()
    farm_lab = f"FARM_LAB_DIR={shlex.quote(str(lab_dir))} {shlex.quote(sys.executable)} -m farm lab power"
    config = tmp_path / "pdudaemon.conf"
    config.write_text(json.dumps({
        "daemon": {"hostname": "127.0.0.1", "port": port, "listener": "http", "logging_level": "DEBUG"},
        "pdus": {"lab": {"driver": "localcmdline", "cmd_on": f"{farm_lab} on %s", "cmd_off": f"{farm_lab} off %s"}}}))
    log = open(tmp_path / "pdudaemon.log", "w")
    daemon = subprocess.Popen([PDUDAEMON, "--conf", str(config), "--listener", "http"], stdout=log,
                              stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    lab = Lab(lab_dir)
    power = {"pdudaemon": "127.0.0.1", "port": port, "pdu": "lab", "outlet": "p1", "off_s": 1, "boot_s": 60}
    lab.up([StandinSpec("p1", cores=1, fields=(("power", power),))])
    try:
        yield lab, port, tmp_path / "pdudaemon.log"
    finally:
        lab.down()
        daemon.terminate()
        daemon.wait(10)
        log.close()


def _pdudaemon(port: int, request: str, outlet: str = "p1") -> str:
    url = f"http://127.0.0.1:{port}/power/control/{request}?hostname=lab&port={outlet}"
    with urllib.request.urlopen(url, timeout=60) as answer:
        return answer.read().decode()


def test_pdudaemon_off_hangs_a_stand_in_and_on_brings_it_back_with_a_new_boot_id(powered):
    lab, port, _ = powered
    entry = lab.running()["p1"]
    sshd_config = lab.dir / "p1" / "sshd_config"  # the lab's own file: the record names no path
    config = sshd_config.read_text()
    assert sshd_greets(entry["port"])
    assert "OK" in _pdudaemon(port, "off")
    assert not sshd_greets(entry["port"])  # accepted by the kernel, never greeted: a hung board
    assert "OK" in _pdudaemon(port, "on")
    after = lab.running()["p1"]
    assert after["pid"] != entry["pid"] and after["port"] == entry["port"] and sshd_greets(after["port"])
    boot = re.compile(r"FARM_BOOT_ID=(\S+)")
    assert boot.search(config).group(1) != boot.search(sshd_config.read_text()).group(1)


def _inventory(lab: Lab, folder: Path, python: str) -> Path:
    """The lab's inventory, p1 running `python` as its board Python."""
    doc = yaml.safe_load((lab.dir / "inventory.yaml").read_text())
    doc["boards"][0]["python"] = python
    path = folder / "powered.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_board_that_hangs_mid_run_is_power_cycled_measured_and_the_cycle_recorded(powered, shared_dir, tmp_path):
    lab, port, daemon_log = powered
    marker = f"farm-hang-{uuid.uuid4().hex[:8]}"
    real = yaml.safe_load((lab.dir / "inventory.yaml").read_text())["defaults"]["python"]
    scratch = shared_dir / f"hang-{uuid.uuid4().hex[:8]}"
    scratch.mkdir(mode=0o777)
    scratch.chmod(0o777)  # the stand-in's login user leaves its mark here
    once = scratch / "measured-long-once"
    python = scratch / "python"  # the first agent measures long enough to hang in; later ones do not
    python.write_text(f"""#!/bin/sh
case "$*" in *--model*)
  if [ ! -e {once} ]; then
    touch {once}; exec {real} "$@" --runs 999999999 --duration 600 --providers CPUExecutionProvider,{marker}
  fi;;
esac
exec {real} "$@"
""")
    python.chmod(0o755)
    inventory = _inventory(lab, tmp_path, str(python))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "farm", "run", "--inventory", str(inventory), "--variants", "fp32",
                             "--runs", "20"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**env, "FARM_LAB_DIR": str(lab.dir)})
    try:
        assert wait_for_processes(marker, 120), proc.communicate(timeout=5)
        _pdudaemon(port, "off")  # the board hangs mid-measure
        hung_at = time.monotonic() - started
        out, err = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    run_dir = (tmp_path / "results" / "latest").resolve()
    (board,) = json.loads((run_dir / "results.json").read_text())["boards"]
    assert board["status"] == "ok", (board["error"], err[-3000:])
    assert board["variants"]["fp32"]["status"] == "ok" and board["variants"]["fp32"]["latency_ms"]["n"] >= 20
    recovery = board["recovery"]
    assert recovery["recovered"] and recovery["cause"].startswith("link-lost"), recovery
    assert re.fullmatch(r"recovered after power cycle, \d+ s", recovery["note"]), recovery
    assert "recovered after power cycle" in out  # the summary
    assert "recovered after power cycle" in (run_dir / "report.html").read_text()
    events = History(tmp_path / "results" / "history.sqlite").events("p1")  # newest first
    assert [e["kind"] for e in events] == ["good", "power cycle"], events  # a health check after the recovery
    assert events[1]["note"].startswith(recovery["note"]) and "health check of p1" in err
    assert "reboot" in daemon_log.read_text() or "off" in daemon_log.read_text()
    assert not processes(marker)  # the hung agent went with the power
    measured = [float(m.group(1)) for m in re.finditer(r"\[\s*([\d.]+) s\] p1: measure fp32", err)]
    print(f"hang at {hung_at:.1f} s; measured again at {measured[-1]:.1f} s: {measured[-1] - hung_at:.1f} s from hang "
          f"to measuring; recovery (fault found to board back) {recovery['seconds']} s")
    print((run_dir / "logs" / "p1.log").read_text()[-2500:])


def test_farm_power_cycle_waits_for_the_new_boot_and_a_board_without_power_is_one_line(powered, tmp_path):
    from helpers import farm

    lab, _, _ = powered
    before = lab.running()["p1"]["pid"]
    cycled = farm("power", "cycle", "p1", "--inventory", lab.dir / "inventory.yaml", "--wait", cwd=tmp_path,
                  env={"FARM_LAB_DIR": str(lab.dir)}, timeout=120)
    assert cycled.returncode == 0 and "p1: answering again after" in cycled.stdout, cycled.stdout + cycled.stderr
    assert lab.running()["p1"]["pid"] != before
    path = tmp_path / "plain.yaml"
    path.write_text("boards:\n  - {name: b1, host: 10.0.0.1}\n")
    refused = farm("power", "off", "b1", "--inventory", path, cwd=tmp_path)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "b1: no power control" in refused.stderr
