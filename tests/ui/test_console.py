"""The console: farm's records on stderr as `farm: ...`; -q leaves warnings and errors, -v adds debug lines and
each board's records."""

from __future__ import annotations

import logging

import pytest

from farm.record.boardlog import for_board
from farm.ui import cli
from farm.ui.cli import run

log = logging.getLogger("farm.ui.cli.run")


def said(monkeypatch, capsys, *flags: str) -> list[str]:
    """The lines `farm [flags] config` prints on stderr, its command saying one record of each kind."""
    def command(args) -> int:
        log.debug("a debug line")
        log.info("an info line")
        log.warning("a warning line")
        for_board(log, "b1").info("connect")
        return 0

    monkeypatch.setattr(run, "cmd_config", command)
    assert cli.main([*flags, "config"]) == 0
    return capsys.readouterr().err.splitlines()


def test_the_default_console_shows_info_and_warnings_but_no_debug_line_and_no_boards_step(monkeypatch, capsys):
    assert said(monkeypatch, capsys) == ["farm: an info line", "farm: a warning line"]


def test_quiet_hides_info_lines(monkeypatch, capsys):
    assert said(monkeypatch, capsys, "-q") == ["farm: a warning line"]


def test_verbose_shows_debug_lines_and_each_boards_records_by_name(monkeypatch, capsys):
    assert said(monkeypatch, capsys, "--verbose") == ["farm: a debug line", "farm: an info line",
                                                       "farm: a warning line", "farm: b1: connect"]


def test_quiet_and_verbose_together_are_bad_usage(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["-q", "-v", "config"])
    assert exited.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_an_error_is_one_console_line_even_when_quiet(monkeypatch, capsys):
    from farm.errors import ConfigError

    def command(args) -> int:
        raise ConfigError("inventory.yaml:3, field 'host': missing; give the board's address")

    monkeypatch.setattr(run, "cmd_config", command)
    assert cli.main(["-q", "config"]) == 2
    assert capsys.readouterr().err == "farm: error: inventory.yaml:3, field 'host': missing; give the board's address\n"


def test_while_the_plugin_runs_the_job_its_records_are_kept_from_pytests_capture(caplog, capsys):
    """Else a failing first test would print the whole run's lines again, as its captured log."""
    from farm.ui.console import console, kept_from_pytest

    with console(), kept_from_pytest():
        log.info("build: building fp32")
    log.info("after the run")
    assert caplog.messages == ["after the run"]
    assert capsys.readouterr().err == "farm: build: building fp32\n"  # on the console all the same
