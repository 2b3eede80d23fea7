"""The history store, on SQLite and on a real PostgreSQL server the test starts on loopback."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys

import pytest

from farm import resources
from farm.record.history import History
from farm.results import BoardResult, BoardStatus, Check, CheckStatus, ModelResult, RunResult, VariantResult

@pytest.fixture(scope="module")
def postgres_url(postgres_server):
    return postgres_server("history")


def run_doc(run_id: str, board: str, p50: float, passed: bool = True, started: str = "2026-01-01T00:00:00") -> RunResult:
    check = Check("latency", CheckStatus.PASS if passed else CheckStatus.FAIL, p50, 2.0, "ms")
    variant = VariantResult("fp32", latency_ms={"p50": p50, "p95": p50 * 1.2}, samples_ms=[p50] * 20, peak_rss_mb=90.0,
                            accuracy={"top1": 0.98}, checks=[check])
    return RunResult(run_id, started, started, "lab.yaml", {"name": "dms"}, model=ModelResult("digits", "ab" * 32),
                     boards=[BoardResult(board, BoardStatus.OK, None, pools=["nightly"], variants={"fp32": variant})])


def _writer(url: str, prefix: str) -> None:
    history = History(url)
    for i in range(25):
        history.record(run_doc(f"{prefix}-{i:02d}", f"{prefix}-board", 1.0, started=f"2026-01-01T00:{i:02d}:00"))


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    """Each store the history supports: an SQLite file, and the PostgreSQL server above."""
    if request.param == "sqlite":
        return str(tmp_path / "history.sqlite")
    return request.getfixturevalue("postgres_url")


def test_history_records_baselines_pins_and_lists(store_url):
    history = History(store_url)
    history.record(run_doc("r1", "rpi4-01", 1.0, started="2026-01-01T01:00:00"))
    history.record(run_doc("r2", "rpi4-01", 1.1, started="2026-01-01T02:00:00"))
    history.record(run_doc("r3", "rpi4-01", 5.0, passed=False, started="2026-01-01T03:00:00"))
    assert history.baseline("rpi4-01", "digits", "fp32").run_id == "r2"  # the failed night is not a baseline
    assert history.baseline("rpi4-01", "digits", "fp32").variant.samples_ms == [1.1] * 20
    assert history.pin("r1", pool="nightly") == [("rpi4-01", "fp32")]
    pinned = history.baseline("rpi4-01", "digits", "fp32")
    assert (pinned.run_id, pinned.pinned) == ("r1", True)
    listed = history.runs(board="rpi4-01")
    assert [r["run_id"] for r in listed] == ["r3", "r2", "r1"] and listed[0]["boards"] == "rpi4-01"
    assert [p[2] for p in history.trend("rpi4-01", "digits", "fp32", "p50")] == [1.0, 1.1, 5.0]
    assert history.load_run("r2").boards[0].name == "rpi4-01"


def test_concurrent_writers_lose_nothing(store_url):
    prefixes = [f"{name}-{os.urandom(3).hex()}" for name in ("c1", "c2")]  # the server outlives one test
    History(store_url)
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_writer, args=(store_url, prefix)) for prefix in prefixes]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
        assert writer.exitcode == 0
    runs = History(store_url).runs(limit=10000)
    for prefix in prefixes:
        assert sum(r["run_id"].startswith(prefix + "-") for r in runs) == 25


def test_farm_run_records_into_postgres(postgres_url, lab, tmp_path):
    lab_obj, _ = lab
    farm = [sys.executable, "-m", "farm"]
    proc = subprocess.run([*farm, "run", "--inventory", str(lab_obj.dir / "inventory.yaml"), "--board", "t2",
                           "--variants", "int8_static", "--runs", "10", "--history", postgres_url],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run_id = (tmp_path / "results" / "latest").resolve().name
    listing = subprocess.run([*farm, "history", "--history", postgres_url, "--board", "t2"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run_id in listing.stdout


def test_unreachable_history_errors_only_the_regression_item(lab, tmp_path):
    """A nightly whose store is down still judges every other item and keeps every figure."""
    lab_obj, _ = lab
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    nightly = resources.checklist("dms-nightly")
    proc = subprocess.run([sys.executable, "-m", "farm", "run", "--inventory", str(lab_obj.dir / "inventory.yaml"),
                           "--board", "t3", "--variants", "fp32", "--runs", "10", "--checklist", str(nightly),
                           "--history", f"postgresql://postgres@127.0.0.1:{closed}/farm"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    results = json.loads((tmp_path / "results" / "latest" / "results.json").read_text())
    checks = {c["item"]: c for c in results["boards"][0]["variants"]["fp32"]["checks"]}
    assert checks["regression"]["status"] == "error" and "history unavailable" in checks["regression"]["why"]
    assert checks["latency"]["status"] == "pass" and checks["accuracy"]["status"] == "pass"
    assert "could not record the run in the history" in proc.stdout + proc.stderr
    report = (tmp_path / "results" / "latest" / "report.html").read_text()  # the report does not need the store
    assert "farm-matrix" in report and "t3" in report
