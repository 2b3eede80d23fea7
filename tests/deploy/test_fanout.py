"""The fan-out through real OpenSSH stand-ins: every board's result, whatever its fault."""

from __future__ import annotations

import dataclasses
import shutil
import time
import uuid
from pathlib import Path

from helpers import (
    RUN,
    closed_port,
    deploy,
    fresh_workdir,
    processes,
    run_until_agent_starts,
    saved_board,
    wrapper_python,
)

from farm.deploy.fanout import Fanout
from farm.record.rundir import RunDir


def test_unreachable_board_does_not_stop_the_others(lab, plan, tmp_path):
    _, boards = lab
    dead = dataclasses.replace(boards["t3"], name="dead", port=closed_port())
    outcomes = deploy(plan, tmp_path, [boards["t1"], dead, boards["t2"]]).results
    assert outcomes["dead"].status == "unreachable"
    assert "dead (farm-standin@127.0.0.1" in outcomes["dead"].error and "unreachable" in outcomes["dead"].error
    for name in ("t1", "t2"):
        assert outcomes[name].status == "ok", outcomes[name].error
        assert set(outcomes[name].variants) == set(plan.variants)
        saved = saved_board(tmp_path, name)
        assert saved["status"] == "ok" and saved["variants"]["int8_static"]["latency_ms"]["n"] == 20
    assert saved_board(tmp_path, "dead")["status"] == "unreachable"
    assert "status unreachable" in RunDir(tmp_path, RUN).log_file("dead").read_text()


def test_hung_agent_is_killed_at_its_deadline(lab, plan, tmp_path, shared_dir):
    _, boards = lab
    marker = f"farm-hang-{uuid.uuid4().hex[:8]}"
    python = wrapper_python(shared_dir, "hang-python",
                            f"exec python3 -c 'import time; time.sleep(600)' {marker}", boards["t1"].python)
    board = dataclasses.replace(fresh_workdir(boards["t1"], "hang"), python=python)
    short = dataclasses.replace(plan, variant_deadline_s=3)
    started = time.monotonic()
    (outcome,) = deploy(short, tmp_path, [board])
    elapsed = time.monotonic() - started
    assert outcome.status == "timeout" and "deadline" in outcome.error
    assert elapsed < 3 + 10
    assert processes(marker) == "", f"processes left on the board: {processes(marker)}"


def test_a_crashed_agent_is_killed_by_its_signal_named_with_its_stderr(lab, plan, tmp_path, shared_dir):
    _, boards = lab
    python = wrapper_python(shared_dir, "crash-python", "echo 'Segmentation fault in libonnxruntime' >&2; exit 139",
                            boards["t2"].python)
    board = dataclasses.replace(fresh_workdir(boards["t2"], "crash"), python=python)
    (outcome,) = deploy(plan, tmp_path, [board])
    assert outcome.status == "killed"
    assert set(outcome.variants) == set(plan.variants)  # each variant tried, none skipped silently
    for variant in outcome.variants.values():
        assert variant.status == "killed" and "killed by SIGSEGV (signal 11)" in variant.error
        assert "Segmentation fault in libonnxruntime" in variant.error


def test_board_without_onnxruntime_is_not_ready(lab, plan, tmp_path):
    _, boards = lab
    board = dataclasses.replace(fresh_workdir(boards["t1"], "bare"), python="/usr/bin/python3")
    (outcome,) = deploy(plan, tmp_path, [board])
    assert outcome.status == "not-ready"
    assert "onnxruntime" in outcome.error and "/usr/bin/python3" in outcome.error


def test_workdir_with_shell_characters_is_never_interpreted(lab, plan, tmp_path):
    _, boards = lab
    canary = tmp_path / "canary"
    nasty = f"/tmp/farm-boards/we ird;touch {canary};$(touch {canary})`touch {canary}`"
    board = dataclasses.replace(boards["t1"], workdir=nasty)
    (outcome,) = deploy(dataclasses.replace(plan, variants={"int8_static": plan.variants["int8_static"]}),
                        tmp_path, [board])
    assert outcome.status == "ok", outcome.error
    assert not canary.exists()
    assert Path(nasty, "blobs", plan.variants["int8_static"].sha256).is_file()
    shutil.rmtree("/tmp/farm-boards/we ird;touch " + str(canary).split("/")[1], ignore_errors=True)


def test_cancel_kills_remote_agents_releases_locks_and_keeps_results(lab, plan, tmp_path, shared_dir):
    """What Ctrl-C does: no new phase starts, the running agent dies on the board, results stay."""

    _, boards = lab
    marker = f"farm-cancel-{uuid.uuid4().hex[:8]}"
    static_blob = plan.variants["int8_static"].sha256  # blobs are named by content, not by variant
    python = wrapper_python(shared_dir, "slow-python",
                            f"case \"$*\" in *{static_blob}*) "
                            f"exec python3 -c 'import time; time.sleep(600)' {marker};; esac",
                            boards["t3"].python)
    board = dataclasses.replace(fresh_workdir(boards["t3"], "cancel"), python=python)
    deployment = Fanout(plan, RunDir(tmp_path, RUN))
    worker = run_until_agent_starts(deployment, [board], marker)
    started = time.monotonic()
    deployment.cancel()
    worker.join(30)
    assert not worker.is_alive() and time.monotonic() - started < 10
    assert processes(marker) == ""
    saved = saved_board(tmp_path, board.name)
    assert saved["status"] == "cancelled"
    assert set(saved["variants"]) == {"fp32", "int8_dynamic"}  # measured before the cancel, kept
    assert not Path(board.workdir, "farm.lock").exists()
