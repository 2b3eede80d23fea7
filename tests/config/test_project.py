"""Project configuration ([tool.farm] / farm.toml), FARM_* variables, and which wins."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from helpers import farm

from farm.config.options import resolve, run_settings
from farm.config.project import ProjectConfigError, find_project_config
from farm.errors import ConfigError


def project(tmp_path: Path, text: str, name: str = "pyproject.toml") -> Path:
    (tmp_path / name).write_text(textwrap.dedent(text).lstrip())
    return tmp_path


def given(**cli):
    return lambda name: cli.get(name)


def test_command_line_beats_environment_beats_project_beats_default(tmp_path):
    config = find_project_config(project(tmp_path, """
        [project]
        name = "dms"

        [tool.farm]
        inventory = "lab/boards.yaml"
        runs = 50
        warmup = 3
        pools = ["nightly"]
        """))
    settings = resolve(given(runs=7), environ={"FARM_RUNS": "20", "FARM_WARMUP": "4"}, project=config)
    assert (settings["runs"].value, settings["runs"].source) == (7, "command line")
    assert (settings["warmup"].value, settings["warmup"].source) == (4, "environment FARM_WARMUP")
    assert settings["pool"].value == ["nightly"] and settings["pool"].source == f"{tmp_path / 'pyproject.toml'}:8"
    assert settings["inventory"].value == str(tmp_path / "lab" / "boards.yaml")  # relative to the file
    assert (settings["rounds"].value, settings["rounds"].source) == (1, "default")
    run = run_settings(settings)
    assert run.measurement.runs == 7 and run.measurement.warmup == 4 and run.pools == ["nightly"]


def test_farm_toml_is_found_from_a_subfolder_and_wins_over_pyproject(tmp_path):
    project(tmp_path, "[tool.farm]\nruns = 5\n")
    project(tmp_path, "runs = 9\n", "farm.toml")
    (tmp_path / "suites" / "deep").mkdir(parents=True)
    config = find_project_config(tmp_path / "suites" / "deep")
    assert config.path == tmp_path / "farm.toml"
    assert resolve(given(), environ={}, project=config)["runs"].value == 9


def test_a_pyproject_without_a_farm_table_is_not_a_farm_project(tmp_path):
    project(tmp_path, "[project]\nname = 'other'\n")
    assert find_project_config(tmp_path) is None


@pytest.mark.parametrize("text, line, field, words", [
    ('[tool.farm]\ninventory = "a.yaml"\nrunz = 5\n', 3, "runz", "unknown key (did you mean 'runs'?)"),
    ('[tool.farm]\nruns = "many"\n', 2, "runs", "expected a whole number, got 'many'"),
    ('[tool.farm]\npools = "nightly"\nwarmup = true\n', 3, "warmup", "expected a whole number, got True"),
])
def test_a_bad_key_names_the_file_line_and_key(tmp_path, text, line, field, words):
    config = find_project_config(project(tmp_path, text))
    with pytest.raises(ProjectConfigError) as caught:
        resolve(given(), environ={}, project=config)
    assert str(caught.value) == f"{tmp_path / 'pyproject.toml'}:{line}, field {field!r}: {words}"


def test_numbers_are_checked_wherever_they_come_from(tmp_path):
    with pytest.raises(ConfigError, match=r"runs = 0 \(command line\): must be at least 1"):
        resolve(given(runs=0), environ={})
    with pytest.raises(ConfigError, match=r"deadline = -1.0 \(environment FARM_DEADLINE\): must be above 0"):
        resolve(given(), environ={"FARM_DEADLINE": "-1"})
    config = find_project_config(project(tmp_path, "[tool.farm]\nrounds = 0\n"))
    with pytest.raises(ConfigError, match=rf"rounds = 0 \({tmp_path / 'pyproject.toml'}:2\): must be at least 1"):
        resolve(given(), environ={}, project=config)


def test_a_model_without_its_data_is_refused_not_judged_on_the_demo_data():
    with pytest.raises(ConfigError, match="needs its data file"):
        run_settings(resolve(given(model="mine.onnx"), environ={}))




@pytest.mark.real
def test_farm_config_prints_each_setting_and_its_source(tmp_path):
    project(tmp_path, "[tool.farm]\nruns = 50\nresults = \"out\"\n")
    proc = farm("config", "--warmup", "2", cwd=tmp_path, env={"FARM_ROUNDS": "3"})
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    assert lines["runs"].split()[1:] == ["50", f"{tmp_path / 'pyproject.toml'}:2"]
    assert lines["warmup"].split()[1:] == ["2", "command", "line"]
    assert lines["rounds"].split()[1:] == ["3", "environment", "FARM_ROUNDS"]
    assert lines["out"].split()[1] == str(tmp_path / "out")


@pytest.mark.real
def test_an_unknown_key_is_exit_2_with_one_line(tmp_path):
    project(tmp_path, "[tool.farm]\ninventroy = \"lab.yaml\"\n")
    proc = farm("run", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"farm: error: {tmp_path / 'pyproject.toml'}:2, field 'inventroy': unknown key "
                                   "(did you mean 'inventory'?)")


@pytest.mark.real
def test_a_minimum_duration_the_deadline_cannot_hold_is_exit_2_naming_both(tmp_path):
    project(tmp_path, "[tool.farm]\ndeadline = 60\n")
    proc = farm("run", "--min-duration-s", "45", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        f"farm: error: min-duration-s 45 (command line) cannot be met: the agent stops timing at 45 s, three "
        f"quarters of the deadline 60 s ({tmp_path / 'pyproject.toml'}:2); raise --deadline above 60 or lower "
        "--min-duration-s")


def test_a_release_policy_is_pinned_by_the_sha256_of_what_its_checklist_means(tmp_path, repo):
    from farm.config.checklist import load_checklist
    from farm.config.project import release_policy

    dms = repo / "suites" / "checklists" / "dms.yaml"
    sha = load_checklist(dms).sha256
    config = find_project_config(project(tmp_path, f"""
        [tool.farm]
        release_policy = {{path = "{dms}", sha256 = "{sha}"}}
        """))
    assert release_policy(config).name == "dms" and release_policy(config).sha256 == sha
    assert release_policy(None) is None
    for value, field in (('"dms.yaml"', "'release_policy'"), (f'{{path = "{dms}"}}', "'release_policy'"),
                         (f'{{path = "{dms}", sha256 = "abc"}}', "'release_policy.sha256'"),
                         (f'{{path = "{dms}", sha256 = "{"0" * 64}"}}', "'release_policy.sha256'")):
        config = find_project_config(project(tmp_path, f"[tool.farm]\nrelease_policy = {value}\n"))
        with pytest.raises(ProjectConfigError, match=rf"pyproject.toml:2, field {field}"):
            release_policy(config)
