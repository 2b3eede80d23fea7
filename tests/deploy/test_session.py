"""A board's session on the local transport (a board that is this machine): steps, bugs, the run's deadline."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import pytest
from helpers import RUN, deploy, saved_board

from farm.board.artifacts import PushReport
from farm.config.inventory import Board
from farm.deploy import fanout, session
from farm.record.rundir import RunDir

pytestmark = pytest.mark.real  # a session runs the agent as a process (local transport)


@pytest.fixture
def local_board(tmp_path) -> Board:
    return Board(name="here", host="localhost", transport="local", workdir=str(tmp_path / "board"),
                 python=sys.executable, threads=1)


def test_steps_are_recorded_with_their_durations(local_board, plan, tmp_path):
    (result,) = deploy(dataclasses.replace(plan, variants={"fp32": plan.variants["fp32"]}), tmp_path, [local_board])
    assert result.status == "ok", result.error
    names = [s.name for s in result.steps]
    assert names == ["connect", "lock", "probe", "push", "measure fp32", "accuracy fp32"]
    assert all(s.seconds >= 0 for s in result.steps)
    assert saved_board(tmp_path, "here")["steps"][-1]["name"] == "accuracy fp32"


def test_a_bug_in_farm_is_an_internal_error_with_its_traceback_in_the_log(local_board, plan, tmp_path, monkeypatch):
    def broken_push(*args, **kwargs):
        raise TypeError("an argument farm passed wrongly")

    monkeypatch.setattr(session, "push", broken_push)
    (result,) = deploy(plan, tmp_path, [local_board])
    assert result.status == "internal-error"
    assert "internal error in farm (TypeError: an argument farm passed wrongly)" in result.error
    log = RunDir(tmp_path, RUN).log_file("here").read_text()
    assert "Traceback (most recent call last)" in log and "broken_push" in log
    assert not Path(local_board.workdir, "farm.lock").exists()  # released all the same


def test_run_deadline_cancels_releases_the_lease_and_nothing_overwrites_the_timeout(local_board, plan, tmp_path,
                                                                                   monkeypatch):
    """A session stuck past the run's deadline: recorded `timeout` at the deadline, lease released when it ends."""
    def stuck_push(*args, **kwargs):
        time.sleep(4)  # a push that no cancel can interrupt
        return PushReport()

    monkeypatch.setattr(session, "push", stuck_push)
    monkeypatch.setattr(fanout, "CANCEL_GRACE_S", 0.5)
    started = time.monotonic()
    (result,) = deploy(plan, tmp_path, [local_board], run_deadline_s=1.0)
    assert time.monotonic() - started < 3
    assert result.status == "timeout" and "did not finish in time to report" in result.error
    log = RunDir(tmp_path, RUN).log_file("here")
    deadline = time.monotonic() + 20
    while " status " not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)  # the stuck session ends on its own, after the run
    assert "status timeout: the run's deadline passed" in log.read_text()
    assert not Path(local_board.workdir, "farm.lock").exists()
    saved = saved_board(tmp_path, "here")
    assert saved["status"] == "timeout" and "did not finish in time to report" in saved["error"]


def test_a_model_that_fails_at_run_time_is_a_model_error_in_one_line(local_board, plan, tmp_path):
    import numpy as np

    from farm.board.artifacts import Artifact

    feed = tmp_path / "wrong-feed.npz"
    np.savez(feed, image=np.zeros((1, 1, 28, 28), np.float32))  # the model takes 32x32
    wrong = dataclasses.replace(plan, variants={"fp32": plan.variants["fp32"]}, feed=Artifact.of(feed))
    (result,) = deploy(wrong, tmp_path, [local_board])
    assert result.status == "model-error" and result.variants["fp32"].status == "model-error"
    assert "fp32: the model failed at run time:" in result.error and "\n" not in result.error
    assert "Traceback" not in result.error
