"""`farm history`, `baseline`, `compare`, `signoff sign|verify`: --out and --history resolved from the one option
table, as `farm run`'s; the sign-off's two subcommands, each with its own options."""

from __future__ import annotations

import os

import pytest
from helpers import history_run

from farm.record.history import History
from farm.ui.cli import main


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project folder, the current one, with none of this session's FARM_* settings."""
    for name in [n for n in os.environ if n.startswith("FARM_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_history_none_in_the_project_makes_farm_history_create_nothing(project, capsys):
    (project / "pyproject.toml").write_text('[tool.farm]\nresults = "out"\nhistory = "none"\n')
    assert main(["history"]) == 2
    assert "--history none" in capsys.readouterr().err
    assert list(project.iterdir()) == [project / "pyproject.toml"]


def test_farm_history_none_in_the_environment_creates_nothing(project, monkeypatch, capsys):
    monkeypatch.setenv("FARM_HISTORY", "none")
    assert main(["baseline", "set", "r1"]) == 2
    assert main(["history", "--signoffs"]) == 2
    assert list(project.iterdir()) == []


def test_the_projects_results_folder_holds_the_history_farm_history_reads(project, capsys):
    (project / "farm.toml").write_text('results = "out"\n')
    History(project / "out" / "history.sqlite").record(history_run("r1", "b1", 1.0))
    assert main(["history"]) == 0
    assert "r1" in capsys.readouterr().out
    assert not (project / "results").exists()
    assert main(["history", "--out", "elsewhere"]) == 0  # the command line still wins
    assert "r1" not in capsys.readouterr().out and (project / "elsewhere" / "history.sqlite").exists()


def test_compare_reads_runs_from_the_projects_history(project, capsys):
    (project / "farm.toml").write_text('results = "out"\n')
    history = History(project / "out" / "history.sqlite")
    history.record(history_run("r1", "b1", 1.0, started="2026-01-01T01:00:00"))
    history.record(history_run("r2", "b1", 1.0, started="2026-01-01T02:00:00"))
    assert main(["compare", "r1", "r2"]) == 0
    assert "b1" in capsys.readouterr().out


def test_farm_signoff_without_sign_or_verify_is_a_one_line_usage_error_naming_both(project, capsys):
    assert main(["signoff"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "farm signoff sign RUN_ID" in err and "farm signoff verify SIGNOFF.json" in err


def test_the_old_farm_signoff_run_id_form_is_one_line_saying_how_to_sign_now(project):
    with pytest.raises(SystemExit) as stopped:
        main(["signoff", "20261122T020000Z-1a2b"])
    assert stopped.value.code == 2


def test_every_usage_error_is_one_line_naming_the_command_and_its_help(project, capsys):
    for argv, said in ((["signoff", "20261122T020000Z-1a2b"], "farm signoff sign RUN_ID"),
                       (["run", "--no-such-option"], "`farm --help`"),
                       (["history", "--limit", "x"], "`farm history --help`")):
        with pytest.raises(SystemExit):
            main(argv)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and said in err and "error:" in err, (argv, err)


def test_signoff_sign_reads_the_run_from_the_projects_results_folder_and_creates_nothing(project, capsys):
    (project / "pyproject.toml").write_text('[tool.farm]\nresults = "out"\nhistory = "none"\n')
    assert main(["signoff", "sign", "r1", "--dry-run"]) == 1
    assert f"{project / 'out' / 'r1' / 'results.json'}: no results.json" in capsys.readouterr().err
    assert list(project.iterdir()) == [project / "pyproject.toml"]


@pytest.mark.parametrize("argv", [["signoff", "sign", "r1", "--record-only"], ["signoff", "verify", "x", "--dry-run"],
                                  ["signoff", "verify", "x", "--signing-key", "k"], ["signoff", "verify"]])
def test_each_signoff_subcommand_refuses_the_others_options(project, argv, capsys):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
