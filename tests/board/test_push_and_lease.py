"""Content-addressed push and the board lease, through real sshd stand-ins."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest
from helpers import deploy, fresh_workdir

from farm.board.artifacts import Artifact, blob_path, push
from farm.board.lease import Lease
from farm.board.ssh import SshTransport
from farm.errors import BoardBusy


def test_push_then_repush_sends_nothing(lab, plan):
    _, boards = lab
    board = fresh_workdir(boards["t1"], "push")
    with SshTransport(board) as connection:
        first = push(connection, board.workdir, plan.artifacts)
        second = push(connection, board.workdir, plan.artifacts)
    total = sum(a.size for a in {a.sha256: a for a in plan.artifacts}.values())
    assert first.bytes_sent == total and len(first.uploaded) == len(plan.artifacts)
    assert second.bytes_sent == 0 and second.uploaded == []
    assert set(second.already_there) == {a.sha256 for a in plan.artifacts}


def test_corrupted_blob_on_the_board_is_detected_and_resent(lab, plan):
    _, boards = lab
    board = fresh_workdir(boards["t2"], "corrupt")
    model = plan.variants["int8_static"]
    with SshTransport(board) as connection:
        push(connection, board.workdir, [model])
        on_board = Path(blob_path(board.workdir, model))  # the stand-in's disk is this machine's
        on_board.write_bytes(b"bit rot" + on_board.read_bytes()[7:])
        again = push(connection, board.workdir, [model])
    assert again.uploaded == [model.sha256] and again.bytes_sent == model.size
    assert Artifact.of(on_board).sha256 == model.sha256


def test_second_run_on_a_board_is_busy(lab, plan, tmp_path):
    _, boards = lab
    board = fresh_workdir(boards["t3"], "busy")
    with SshTransport(board) as holder:
        lease = Lease(holder, board.workdir, "run-A").acquire()
        with SshTransport(board) as other, pytest.raises(BoardBusy, match="locked by run run-A"):
            Lease(other, board.workdir, "run-B").acquire()
        (outcome,) = deploy(plan, tmp_path, [board])
        assert outcome.status == "busy" and "run-A" in outcome.error
        lease.release()
    with SshTransport(board) as other:
        Lease(other, board.workdir, "run-B").acquire().release()


def test_stale_lock_is_broken_and_reported(lab, plan, tmp_path):
    _, boards = lab
    board = fresh_workdir(boards["t2"], "stale")
    with SshTransport(board) as connection:
        Lease(connection, board.workdir, "dead-run", ttl_s=0).acquire().abandon()  # its controller died
    time.sleep(1.1)
    (outcome,) = deploy(plan, tmp_path, [board])
    assert outcome.status == "ok", outcome.error
    assert outcome.lock_note.startswith("broke a stale lock held by: run dead-run from ")
    assert not Path(board.workdir, "farm.lock").exists()  # released after the run


def test_wait_queues_for_a_busy_board(lab, plan, tmp_path):

    _, boards = lab
    board = fresh_workdir(boards["t1"], "wait")
    with SshTransport(board) as holder:
        lease = Lease(holder, board.workdir, "run-A").acquire()
        threading.Timer(2.0, lease.release).start()
        waiting = dataclasses.replace(plan, lock_wait_s=30, variants={"int8_static": plan.variants["int8_static"]})
        (outcome,) = deploy(waiting, tmp_path, [board])
    assert outcome.status == "ok", outcome.error
