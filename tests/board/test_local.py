"""Lease, push, rounds and cancel on the local transport: the same code as over SSH, in milliseconds."""

from __future__ import annotations

import dataclasses
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import RUN, deploy, processes, run_until_agent_starts, saved_board, wrapper_python

from farm.board.artifacts import push
from farm.board.lease import Lease
from farm.board.local import LocalTransport
from farm.board.probe import probe
from farm.board.transport import STDERR_LIMIT
from farm.config.inventory import Board
from farm.config.settings import Measurement
from farm.deploy.fanout import Fanout
from farm.errors import BoardBusy
from farm.record.rundir import RunDir

pytestmark = pytest.mark.real  # the local transport runs the agent and its commands as processes


@pytest.fixture
def board(tmp_path) -> Board:
    return Board(name="here", host="localhost", transport="local", workdir=str(tmp_path / "board"),
                 python=sys.executable, threads=1)


def test_push_sends_only_what_the_board_lacks(board, plan):
    with LocalTransport(board) as transport:
        first = push(transport, board.workdir, plan.artifacts)
        second = push(transport, board.workdir, plan.artifacts)
    assert first.bytes_sent == sum(a.size for a in {a.sha256: a for a in plan.artifacts}.values())
    assert second.bytes_sent == 0 and second.uploaded == []


def test_a_held_lease_makes_the_board_busy_and_an_expired_one_is_broken(board):
    with LocalTransport(board) as transport:
        held = Lease(transport, board.workdir, "run-A").acquire()
        with pytest.raises(BoardBusy, match="locked by run run-A from .* heartbeat 0 s ago"):
            Lease(transport, board.workdir, "run-B").acquire()
        held.release()
        Lease(transport, board.workdir, "dead-run", ttl_s=0).acquire().abandon()  # a controller that died
        time.sleep(1.1)
        taken = Lease(transport, board.workdir, "run-C").acquire()
        assert taken.broke.startswith("run dead-run from ")
        taken.release()
    assert not Path(board.workdir, "farm.lock").exists()


def test_the_heartbeat_keeps_a_long_run_s_lease_and_its_end_frees_the_board_within_the_ttl(board):
    """Held longer than its TTL, a live lease stays; abandoned, it is stale a TTL after its last beat."""
    with LocalTransport(board) as transport:
        live = Lease(transport, board.workdir, "long-run", ttl_s=2).acquire()
        time.sleep(4)  # twice the TTL: only the heartbeat keeps it
        with pytest.raises(BoardBusy, match="locked by run long-run"):
            Lease(transport, board.workdir, "other").acquire()
        live.abandon()
        started = time.monotonic()
        taken = Lease(transport, board.workdir, "other").acquire(wait_s=10)
        assert taken.broke.startswith("run long-run from ") and time.monotonic() - started < 2 + 2
        time.sleep(1.5)  # the abandoned lease's last beat, had it come, finds its lock gone
        taken.release()


def test_a_lease_whose_lock_another_run_broke_knows_it_lost_the_board(board):
    with LocalTransport(board) as transport:
        ours = Lease(transport, board.workdir, "slow-run", ttl_s=4).acquire()
        lock = Path(board.workdir, "farm.lock")
        lock.write_text(f"thief-run elsewhere 1 someone {int(time.time())} 60\n")  # as a run that broke it would
        deadline = time.monotonic() + 5
        while ours.lost is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ours.lost == "run thief-run from elsewhere"
        lock.unlink()


def test_rounds_pool_their_samples_and_keep_each_summary(board, plan, tmp_path):
    three = dataclasses.replace(plan, variants={"fp32": plan.variants["fp32"]},
                                measurement=Measurement(warmup=1, runs=7, rounds=3))
    (result,) = deploy(three, tmp_path, [board])
    assert result.status == "ok", result.error
    fp32 = result.variants["fp32"]
    assert len(fp32.rounds) == 3 and all(r["n"] == 7 for r in fp32.rounds)
    assert len(fp32.samples_ms) == 21 and fp32.latency_ms["n"] == 21 and fp32.latency_ms["rounds"] == 3
    assert [s.name for s in result.steps][-4:] == ["measure fp32 (1/3)", "measure fp32 (2/3)", "measure fp32 (3/3)",
                                                   "accuracy fp32"]


def test_cancel_kills_the_agent_keeps_what_was_measured_and_releases_the_lease(board, plan, tmp_path):
    marker = f"farm-local-cancel-{uuid.uuid4().hex[:8]}"
    static = plan.variants["int8_static"].sha256
    python = wrapper_python(tmp_path, "slow-python", f"case \"$*\" in *{static}*) exec {sys.executable} -c "
                                                     f"'import time; time.sleep(600)' {marker};; esac", sys.executable)
    board = dataclasses.replace(board, python=python)
    run = Fanout(plan, RunDir(tmp_path, RUN))
    worker = run_until_agent_starts(run, [board], marker)
    run.cancel()
    worker.join(30)
    assert not worker.is_alive()
    assert processes(marker) == ""
    saved = saved_board(tmp_path, "here")
    assert saved["status"] == "cancelled" and set(saved["variants"]) == {"fp32", "int8_dynamic"}
    assert not Path(board.workdir, "farm.lock").exists()


def fake_onnxruntime(folder: Path, version: str) -> None:
    """A package named onnxruntime first on the board's path: replaced, it is a new install."""
    package = folder / "onnxruntime"
    if package.exists():
        for child in package.iterdir():
            child.unlink()
        package.rmdir()
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"__version__ = {version!r}\n"
                                         "def get_available_providers():\n    return ['CPUExecutionProvider']\n")


def test_a_repeat_probe_reads_its_cache_until_a_package_is_reinstalled(tmp_path):
    fakes, workdir = tmp_path / "site", tmp_path / "work"
    workdir.mkdir()
    fake_onnxruntime(fakes, "9.9.0")
    board = Board(name="cached", host="localhost", transport="local", python=sys.executable, workdir=str(workdir),
                  env=(("PYTHONPATH", str(fakes)),))
    with LocalTransport(board) as transport:
        first, second = probe(transport, str(workdir)), probe(transport, str(workdir))
        assert (first["onnxruntime"], first["probe_cached"]) == ("9.9.0", False)
        assert (second["onnxruntime"], second["probe_cached"]) == ("9.9.0", True)
        assert second["providers_available"] == ["CPUExecutionProvider"] and second["now"] >= first["now"]
        time.sleep(0.01)
        fake_onnxruntime(fakes, "9.10.0")
        third = probe(transport, str(workdir))
        assert (third["onnxruntime"], third["probe_cached"]) == ("9.10.0", False)


def test_a_command_s_output_is_kept_only_up_to_its_bound_and_said_so(tmp_path):
    board = Board(name="loud", host="localhost", transport="local", python=sys.executable, workdir=str(tmp_path))
    with LocalTransport(board) as transport:
        done = transport.run(["sh", "-c", "head -c 41943040 /dev/zero; head -c 3000000 /dev/zero | tr '\\0' e >&2; "
                                          "echo the-end >&2"])
    assert done.exit_code == 0 and done.stdout == ""  # 40 MiB: past the bound, no document at all
    assert "stdout passed 32 MiB, 41943040 bytes: dropped unread" in done.stderr
    assert done.stderr.startswith(f"(farm: the first {3000000 + 8 - STDERR_LIMIT} bytes of stderr dropped)")
    assert "the-end" in done.stderr and len(done.stderr) < STDERR_LIMIT + 200  # the tail, where errors are
    with LocalTransport(board) as transport:
        small = transport.run(["sh", "-c", "echo out; echo err >&2"])
    assert (small.stdout, small.stderr) == ("out\n", "err\n")


def test_a_probe_tells_the_id_a_power_cycle_changes_from_the_kernel_s_that_says_where_the_board_runs(tmp_path):
    from farm.config import locality
    from farm.results import BoardResult

    board = Board(name="cycled", host="localhost", transport="local", python=sys.executable,
                  workdir=str(tmp_path), env=(("FARM_BOOT_ID", "cycle-7"),))  # a stand-in's sshd sets one per start
    with LocalTransport(board) as transport:
        facts = probe(transport, str(tmp_path))
    assert facts["boot_id"] == "cycle-7"  # what recovery waits to see change
    assert facts["kernel_boot_id"] == locality.controller_boot_id()  # what makes it the controller
    assert BoardResult("cycled", facts=facts).kernel_boot_id == locality.controller_boot_id()
    older = {"boot_id": "k-1"}  # a record from before the two were told apart held the kernel's in boot_id
    assert BoardResult("old", facts=older).kernel_boot_id == "k-1"
