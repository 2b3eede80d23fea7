"""The history store, on SQLite and on a real PostgreSQL server the test starts on loopback."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import pytest
from helpers import closed_port, history_run

from farm import resources
from farm.record.history import History


@pytest.fixture(scope="module")
def postgres_url(postgres_server):
    return postgres_server("history")


def _writer(url: str, prefix: str) -> None:
    history = History(url)
    for i in range(25):
        history.record(history_run(f"{prefix}-{i:02d}", f"{prefix}-board", 1.0, started=f"2026-01-01T00:{i:02d}:00"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.real)])
def store_url(request, tmp_path):
    """Each store the history supports: an SQLite file, and the PostgreSQL server above."""
    if request.param == "sqlite":
        return str(tmp_path / "history.sqlite")
    return request.getfixturevalue("postgres_url")


def test_history_records_baselines_pins_and_lists(store_url):
    history = History(store_url)
    history.record(history_run("r1", "rpi4-01", 1.0, started="2026-01-01T01:00:00"))
    history.record(history_run("r2", "rpi4-01", 1.1, started="2026-01-01T02:00:00"))
    history.record(history_run("r3", "rpi4-01", 5.0, passed=False, started="2026-01-01T03:00:00"))
    assert history.baseline("rpi4-01", "digits", "fp32").run_id == "r2"  # the failed night is not a baseline
    assert history.baseline("rpi4-01", "digits", "fp32").variant.samples_ms == [1.1] * 20
    assert history.pin("r1", pool="nightly") == [("rpi4-01", "fp32")]
    pinned = history.baseline("rpi4-01", "digits", "fp32")
    assert (pinned.run_id, pinned.pinned) == ("r1", True)
    listed = history.runs(board="rpi4-01")
    assert [r["run_id"] for r in listed] == ["r3", "r2", "r1"] and listed[0]["boards"] == "rpi4-01"
    assert [p[2] for p in history.trend("rpi4-01", "digits", "fp32", "p50")] == [1.0, 1.1, 5.0]
    assert [r["top1"] for r in history.series("rpi4-01", "fp32")] == [0.98] * 3  # the classifier's top-1
    assert history.load_run("r2").boards[0].name == "rpi4-01"


@pytest.mark.real
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
    closed = closed_port()
    nightly = resources.checklist("dms-nightly")
    proc = subprocess.run([sys.executable, "-m", "farm", "run", "--inventory", str(lab_obj.dir / "inventory.yaml"),
                           "--board", "t3", "--variants", "fp32", "--runs", "10", "--checklist", str(nightly),
                           "--history", f"postgresql://postgres@127.0.0.1:{closed}/farm"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    results = json.loads((tmp_path / "results" / "latest" / "results.json").read_text())
    checks = {c["item"]: c for c in results["boards"][0]["variants"]["fp32"]["checks"]}
    assert checks["regression"]["status"] == "error" and "history unavailable" in checks["regression"]["why"]
    # Every other item judged: latency on its figures (a loaded machine may miss the budget), accuracy passes.
    assert checks["latency"]["status"] in ("pass", "fail") and checks["accuracy"]["status"] == "pass"
    assert "could not record the run in the history" in proc.stdout + proc.stderr
    report = (tmp_path / "results" / "latest" / "report.html").read_text()  # the report does not need the store
    assert "farm-matrix" in report and "t3" in report


@pytest.mark.real
def test_history_changes_lists_each_change_point_with_the_run_where_it_began(store_url, tmp_path):
    """`farm history --changes`: a board whose p50 stepped up 30 % at night 10, beside a steady board."""
    history = History(store_url)
    tag = os.urandom(3).hex()  # the PostgreSQL server outlives one test
    noise = [1.0, 1.03, 0.97, 1.02, 0.98, 1.01, 0.99, 1.04, 0.96, 1.0] * 2
    for night, wobble in enumerate(noise):
        started = f"2026-02-{night + 1:02d}T02:00:00"
        level = 1.3 if night >= 10 else 1.0
        history.record(history_run(f"{tag}-stepped-{night:02d}", f"{tag}-stepped", level * wobble, started=started))
        history.record(history_run(f"{tag}-steady-{night:02d}", f"{tag}-steady", wobble, started=started))
    farm = [sys.executable, "-m", "farm", "history", "--history", store_url, "--changes"]
    stepped = subprocess.run([*farm, "--board", f"{tag}-stepped"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=60)
    assert stepped.returncode == 0, stepped.stderr
    rows = [line.split() for line in stepped.stdout.splitlines()[1:]]
    # p50 and p95 (1.2 x p50 here) both moved at night 10; memory stayed at 90 MB.
    assert sorted(row[3] for row in rows) == ["p50", "p95"]
    for row in rows:
        assert row[:3] == [f"{tag}-stepped", "fp32", "digits"] and row[4] == f"{tag}-stepped-10"
        assert row[5] == "2026-02-11T02:00:00" and row[8] == "+30.0%" and float(row[9]) <= 0.01
    steady = subprocess.run([*farm, "--board", f"{tag}-steady"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert steady.returncode == 0 and steady.stdout.splitlines()[1:] == [
        f"no change point at p <= 0.01 and 5.0 % or more for board {tag}-steady"]


def test_health_figures_keep_each_passing_checks_p50_newest_first_and_a_restore_forgets_them(store_url):
    import uuid

    board, other = f"b-{uuid.uuid4().hex[:6]}", f"o-{uuid.uuid4().hex[:6]}"
    history = History(store_url)
    history.set_health(board, "good", "health check passed", "r1", p50=2.0)
    history.set_health(board, "bad", "health check: figures off its own history", "r2")
    history.set_health(board, "good", "health check passed", "r3", p50=2.2)
    history.set_health(other, "good", "health check passed", "r4", p50=9.0)
    history.set_health(board, "retired", "retired by a person", p50=5.0)  # only a passing check's figure is kept
    assert history.health_figures(board, 5) == [2.2, 2.0] and history.health_figures(board, 1) == [2.2]
    history.set_health(board, "good", "restored by a person", forget_figures=True)
    assert history.health_figures(board, 5) == [] and history.health_figures(other, 5) == [9.0]
    assert history.health()[board]["state"] == "good"


def test_a_history_file_from_before_health_figures_opens_and_keeps_its_board_health(tmp_path):
    import sqlite3

    path = tmp_path / "history.sqlite"
    History(path).set_health("b1", "bad", "health check: unreachable")
    old = sqlite3.connect(path, isolation_level=None)  # as a farm before health figures left it
    old.execute("DROP INDEX health_figures_lookup")
    old.execute("DROP TABLE health_figures")
    old.close()
    history = History(path)
    assert history.health()["b1"]["reason"] == "health check: unreachable"
    assert history.health_figures("b1", 5) == []
    history.set_health("b1", "good", "health check passed", "r1", p50=1.5)
    assert history.health_figures("b1", 5) == [1.5]
