"""What a board's session says goes through logging: pytest's caplog sees it, and each board's log file
holds its own board's records only (boards run side by side, in threads)."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from helpers import RUN, deploy

from farm.config.inventory import Board
from farm.deploy import session
from farm.deploy.session import DeployPlan
from farm.record.boardlog import board_log, for_board
from farm.record.rundir import RunDir


class Link:
    """A board's link that opens and closes: all a session of `connect` alone asks of it."""

    def __init__(self, board: Board):
        self.board = board

    def open(self) -> Link:
        return self

    def close(self) -> None:
        pass

    def host_key(self) -> str:
        if self.board.name == "broken":
            raise TypeError("a bug in farm")
        return f"ssh-ed25519 key-of-{self.board.name}"

    def link_alive(self) -> bool:
        return True


@pytest.fixture
def connect_only(monkeypatch) -> DeployPlan:
    monkeypatch.setattr(session, "open_transport", lambda board, **options: Link(board))
    return dataclasses.replace(DeployPlan.probe(RUN), steps=("connect",))


def board(name: str) -> Board:
    return Board(name=name, host=f"{name}.lab")


def test_a_board_sessions_messages_reach_pytests_log_capture_naming_their_board(connect_only, tmp_path, caplog):
    (result,) = deploy(connect_only, tmp_path, [board("b1")])
    assert result.status == "ok"
    said = [(r.board, r.levelname, r.getMessage()) for r in caplog.records if r.name == "farm.deploy.session"]
    assert said == [("b1", "INFO", "connect"), ("b1", "DEBUG", "connecting to b1.lab"), ("b1", "INFO", "status ok")]


def test_each_boards_log_file_holds_its_own_records_and_a_bugs_traceback_only_there(connect_only, tmp_path):
    deploy(connect_only, tmp_path, [board("b1"), board("broken"), board("b2")])
    logs = {name: RunDir(tmp_path, RUN).log_file(name).read_text() for name in ("b1", "broken", "b2")}
    for name in ("b1", "b2"):
        lines = [line.split(" ", 1)[1] for line in logs[name].splitlines()]  # after the HH:MM:SS time
        assert lines == ["connect", f"connecting to {name}.lab", "status ok"]
    assert "connecting to broken.lab" in logs["broken"] and "status internal-error" in logs["broken"]
    assert "internal error in farm:\nTraceback (most recent call last)" in logs["broken"]
    assert "TypeError: a bug in farm" in logs["broken"]


def test_a_boards_file_handler_takes_its_boards_records_and_nothing_else(tmp_path):
    log = logging.getLogger("farm.deploy.session")
    path = tmp_path / "logs" / "b1.log"
    with board_log(path, "b1"):
        for_board(log, "b1").debug("pushed 2 blob(s)")
        for_board(log, "b2").info("connect")
        log.info("build: building fp32")  # the run's own record, no board's
    for_board(log, "b1").info("after the session")
    (line,) = path.read_text().splitlines()
    assert line.endswith(" pushed 2 blob(s)") and len(line.split(" ", 1)[0]) == len("12:34:56")
