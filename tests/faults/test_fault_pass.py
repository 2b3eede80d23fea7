"""What a second fault pass found: one board's fault stalling the others, a full disk left full, a huge
inventory, a silent wait for a busy board. Each through real stand-ins where the fault lives there."""

from __future__ import annotations

import dataclasses
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from helpers import (
    RUN,
    Proxy,
    deploy,
    farm,
    fresh_workdir,
    processes,
    saved_board,
    via_proxy,
    wait_for_processes,
    wrapper_python,
)

from farm.board.artifacts import blob_dir, clean
from farm.board.lease import Lease
from farm.board.ssh import SshTransport
from farm.deploy.fanout import Fanout
from farm.deploy.session import SharedCpu
from farm.record.rundir import RunDir


# -- one board's fault stays that board's: the measuring slot --------------------------------------
def _hold_and_wait(cpu: SharedCpu, holder_alive) -> float | None:
    """A holder measures (forever, unless released); how long a second measurement waited for the slot."""
    release = threading.Event()
    holding = threading.Event()

    def holder() -> None:
        with cpu.measure(holder_alive):
            holding.set()
            release.wait(30)

    threading.Thread(target=holder, daemon=True).start()
    holding.wait(5)
    got = threading.Event()

    def waiter() -> None:
        with cpu.measure():
            got.set()

    started = time.monotonic()
    threading.Thread(target=waiter, daemon=True).start()
    waited = time.monotonic() - started if got.wait(2) else None
    release.set()
    return waited


def test_a_board_whose_link_went_silent_gives_up_the_measuring_slot(monkeypatch):
    monkeypatch.setattr(SharedCpu, "CHECK_S", 0.1)
    assert _hold_and_wait(SharedCpu(), lambda: False) is not None


def test_a_board_whose_link_answers_keeps_the_measuring_slot(monkeypatch):
    monkeypatch.setattr(SharedCpu, "CHECK_S", 0.1)
    assert _hold_and_wait(SharedCpu(), lambda: True) is None


@pytest.mark.slow
def test_a_stand_in_whose_link_stalls_mid_measure_does_not_hold_up_a_healthy_one(lab, plan, shared_dir, tmp_path):
    """The silent board held the slot until it was link-lost (15-28 s); now the healthy one measures first."""
    _, boards = lab
    marker = f"farm-silent-{uuid.uuid4().hex[:8]}"
    real = boards["t1"].python
    slow = wrapper_python(shared_dir, f"slow-all-{marker[-8:]}",  # every variant measures for ten minutes
                          f'exec {real} "$@" --runs 999999999 --duration 600 --providers CPUExecutionProvider,{marker}',
                          real)
    silent = dataclasses.replace(fresh_workdir(boards["t1"], "silent"), name="silent", python=slow)
    healthy = dataclasses.replace(fresh_workdir(boards["t2"], "healthy"), name="healthy")
    proxy = Proxy(silent.port)
    phases: list[tuple[float, str, str]] = []
    fanout = Fanout(dataclasses.replace(plan, variant_deadline_s=300), RunDir(tmp_path, RUN),
                    progress=lambda b, p: phases.append((time.monotonic(), b, p)))
    try:
        worker = threading.Thread(target=lambda: fanout.run([via_proxy(silent, proxy, tmp_path), healthy]))
        worker.start()
        assert wait_for_processes(marker, 90), phases  # the silent board holds the slot now
        proxy.stalled.set()
        stalled_at = time.monotonic()
        worker.join(180)
    finally:
        proxy.close()
    assert not worker.is_alive()
    assert not any(b == "healthy" and p == "ok" and t < stalled_at for t, b, p in phases), \
        "the healthy board finished before the stall: nothing was tested"
    assert saved_board(tmp_path, "silent")["status"] == "link-lost"
    assert saved_board(tmp_path, "healthy")["status"] == "ok", saved_board(tmp_path, "healthy")["error"]
    silent_ended = next(t for t, b, p in phases if b == "silent" and p == "link-lost")
    measured = [round(t - stalled_at, 1) for t, b, p in phases if b == "healthy" and p.startswith("measure")
                and t > stalled_at]
    assert measured and measured[0] < silent_ended - stalled_at, (measured, phases)
    assert wait_for_processes(marker, 30, present=False), processes(marker)


# -- a full disk is left as it was found -----------------------------------------------------------
@pytest.fixture
def tiny_disk():
    """A 3 MB tmpfs, writable by the stand-ins' login user."""
    import os

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder = Path(f"/tmp/farm-tiny-{uuid.uuid4().hex[:6]}")
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=1777", "tmpfs", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", str(folder)], check=True)
    folder.rmdir()


def _free_mb(folder: Path) -> float:
    import shutil

    return shutil.disk_usage(folder).free / 1024 / 1024


def test_a_push_that_fills_the_disk_removes_its_partial_blob_and_says_what_the_board_had_free(lab, plan, tmp_path,
                                                                                              tiny_disk):
    _, boards = lab
    board = dataclasses.replace(boards["t3"], workdir=str(tiny_disk / "wd"))
    (result,) = deploy(plan, tmp_path, [board])
    assert result.status == "disk-full", result.error
    blobs = Path(blob_dir(board.workdir))
    assert not list(blobs.glob("*.partial-*")), list(blobs.iterdir())  # nothing left half-written
    free = _free_mb(tiny_disk)
    assert free > 2.0  # the small blobs (agent, data) fit; the 10.9 MB model did not
    said = float(result.error.split("disk full: ")[1].split(" MB free")[0])
    assert abs(said - free) < 0.2, (said, free, result.error)


def test_boards_clean_counts_what_an_interrupted_push_left(lab, tmp_path, tiny_disk):
    _, boards = lab
    board = dataclasses.replace(boards["t3"], workdir=str(tiny_disk / "wd"))
    with SshTransport(board) as transport:
        transport.run(["mkdir", "-p", blob_dir(board.workdir)])
        transport.run(["dd", "if=/dev/zero", f"of={blob_dir(board.workdir)}/{'ab' * 32}.partial-123", "bs=1024",
                       "count=2048"])  # what a push cut off mid-way leaves
        freed = clean(transport, board.workdir, keep_runs=3)
    assert freed == 2048 * 1024
    assert not list(Path(blob_dir(board.workdir)).iterdir())


# -- inventory bounds ------------------------------------------------------------------------------
@pytest.mark.real  # starts a process
def test_an_inventory_over_the_size_bound_is_refused_at_once_in_one_line(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("boards:\n  - {name: b1, host: 10.0.0.1}\n" + "#" * 2_100_000 + "\n")
    proc = farm("inventory", "check", path, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "huge.yaml: inventory file is 2.1 MB, over farm's 2 MB limit" in proc.stderr


@pytest.mark.parametrize("field, value", [("tags", ["x" * 20_000]), ("host", "h" * 5000),
                                          ("pools", [f"p{i}" for i in range(300)])])
@pytest.mark.real  # starts a process
def test_a_runaway_field_value_is_refused_naming_the_board_and_field(tmp_path, field, value):
    import yaml

    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump({"boards": [{"name": "b1", "host": "10.0.0.1", field: value}]}))
    proc = farm("inventory", "check", path, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f"board 'b1', field '{field}'" in proc.stderr and "over farm's limit" in proc.stderr


# -- a wait for a busy board says whom it waits for ------------------------------------------------
def test_a_run_waiting_for_a_busy_board_says_which_run_holds_it(lab, plan, tmp_path):
    _, boards = lab
    board = fresh_workdir(boards["t3"], "busy-wait")
    phases: list[str] = []
    with SshTransport(board) as holder:
        lease = Lease(holder, board.workdir, "run-A").acquire()
        fanout = Fanout(dataclasses.replace(plan, lock_wait_s=60, variants={}), RunDir(tmp_path, RUN),
                        progress=lambda b, phase: phases.append(phase))
        worker = threading.Thread(target=lambda: fanout.run([board]))
        worker.start()
        deadline = time.monotonic() + 30
        while not any(p.startswith("lock: waiting") for p in phases) and time.monotonic() < deadline:
            time.sleep(0.1)
        lease.release()
        worker.join(60)
    waiting = [p for p in phases if p.startswith("lock: waiting")]
    assert waiting and "run run-A from " in waiting[0] and "(pid " in waiting[0], phases
    assert saved_board(tmp_path, board.name)["status"] == "ok"  # and it went on once the holder let go
    assert "busy: waiting up to 60 s for run run-A" in (tmp_path / RUN / "logs" / f"{board.name}.log").read_text()
