"""Inventories: strict loading, precise errors, classes, selection, Ansible."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from farm.config.inventory import load_inventory
from farm.errors import InventoryError
from farm.ui.cli import main

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "lab.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def error_of(path: Path) -> InventoryError:
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    return caught.value


def test_example_lab_loads_with_classes_and_defaults():
    inventory = load_inventory(REPO / "inventory" / "example-lab.yaml")
    boards = {b.name: b for b in inventory.boards}
    assert len(boards) == 6
    orin = boards["orin-01"]
    assert orin.providers == ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    assert orin.latency_budget_ms == 10 and orin.cores == 8 and orin.user == "farm"
    assert boards["rpi3-01"].latency_budget_ms == 50 and boards["rpi3-01"].cores == 4
    assert boards["qcs-01"].port == 2222 and boards["qcs-01"].providers[0] == "QNNExecutionProvider"
    assert boards["tda4-01"].python == "/usr/bin/python3.8"
    assert boards["rpi4-01"].identity_file == str(Path("~/.ssh/farm_ed25519").expanduser())


def test_ansible_twin_gives_the_same_boards():
    farm_yaml = load_inventory(REPO / "inventory" / "example-lab.yaml")
    ansible = load_inventory(REPO / "inventory" / "example-lab.ansible.yaml")
    by_name = {b.name: b for b in ansible.boards}
    assert set(by_name) == {b.name for b in farm_yaml.boards}
    for board in farm_yaml.boards:
        twin = by_name[board.name]
        assert twin.__dict__ | {"pools": ()} == board.__dict__ | {"pools": ()}, board.name
    # Ansible's nested groups are all pools: arm boards are in both nightly and arm.
    assert set(by_name["rpi4-01"].pools) == {"nightly", "arm"}
    assert set(by_name["qcs-01"].pools) == {"automotive"}


def test_selection_by_pool_tag_and_glob():
    inventory = load_inventory(REPO / "inventory" / "example-lab.yaml")
    names = lambda boards: sorted(b.name for b in boards)  # noqa: E731
    assert names(inventory.select(pools=["jetson"])) == ["orin-01"]
    assert names(inventory.select(pools=["arm"], tags=["int8"])) == ["rpi4-01", "rpi5-01"]
    assert names(inventory.select(names=["rpi*"])) == ["rpi3-01", "rpi4-01", "rpi5-01"]
    assert names(inventory.select(pools=["automotive"], names=["tda4*"])) == ["tda4-01"]


def test_unknown_key_names_file_line_board_field_and_a_hint(tmp_path):
    path = write(tmp_path, """
        boards:
          - name: b1
            host: 10.0.0.1
            latency_budget: 20
        """)
    err = error_of(path)
    assert (err.line, err.board, err.field) == (4, "b1", "latency_budget")
    assert str(err).startswith(f"{path}:4, board 'b1', field 'latency_budget': unknown key")
    assert "did you mean 'latency_budget_ms'?" in str(err)


def test_wrong_type_names_the_field(tmp_path):
    err = error_of(write(tmp_path, """
        defaults:
          user: farm
        boards:
          - name: b1
            host: h
          - name: b2
            host: h
            cores: four
        """))
    assert (err.line, err.board, err.field) == (8, "b2", "cores")
    assert "expected a whole number, got str 'four'" in str(err)


def test_duplicate_name_points_at_both(tmp_path):
    err = error_of(write(tmp_path, """
        boards:
          - name: b1
            host: h1
          - name: b1
            host: h2
        """))
    assert (err.line, err.field) == (4, "name")
    assert "duplicate board name (first at line 2)" in str(err)


def test_missing_host_and_bad_name(tmp_path):
    err = error_of(write(tmp_path, "boards:\n  - name: b1\n    port: 22\n"))
    assert (err.line, err.board, err.field) == (2, "b1", "host")
    err = error_of(write(tmp_path, "boards:\n  - name: 'b 1;rm'\n    host: h\n", "bad.yaml"))
    assert err.field == "name" and "is not a name" in str(err)


def test_missing_file_and_yaml_syntax(tmp_path):
    err = error_of(tmp_path / "nope.yaml")
    assert str(err) == f"{tmp_path / 'nope.yaml'}: inventory file not found"
    err = error_of(write(tmp_path, "boards:\n  - name: b1\n    host: [unclosed\n"))
    assert err.line == 4 and "YAML syntax" in str(err)


def test_unknown_class_and_policy(tmp_path):
    err = error_of(write(tmp_path, "boards:\n  - name: b1\n    host: h\n    class: cortex-a75\n"))
    assert err.field == "class" and "unknown board class 'cortex-a75'" in str(err)
    err = error_of(write(tmp_path, "boards:\n  - name: b1\n    host: h\n    host_key_policy: trust-me\n", "p.yaml"))
    assert err.field == "host_key_policy" and err.line == 4


def test_environment_substitution_only_in_values(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_USER", "ci-bot")
    inventory = load_inventory(write(tmp_path, "boards:\n  - name: b1\n    host: h\n    user: ${LAB_USER}\n"))
    assert inventory.boards[0].user == "ci-bot"
    monkeypatch.delenv("LAB_USER")
    err = error_of(write(tmp_path, "boards:\n  - name: b1\n    host: h\n    user: ${LAB_USER}\n", "e.yaml"))
    assert err.field == "user" and "${LAB_USER} is not set" in str(err)


def test_paths_are_relative_to_the_inventory(tmp_path):
    (tmp_path / "keys").mkdir()
    inventory = load_inventory(write(tmp_path, "boards:\n  - name: b1\n    host: h\n    identity_file: keys/id\n"))
    assert inventory.boards[0].identity_file == str(tmp_path / "keys" / "id")


def test_ansible_errors_name_the_var_line(tmp_path):
    err = error_of(write(tmp_path, """
        all:
          hosts:
            b1:
              ansible_host: h
              farm_cores: many
        """))
    assert (err.line, err.board, err.field) == (5, "b1", "cores")


def test_cli_inventory_check_and_list(tmp_path, capsys):
    assert main(["inventory", "check", str(REPO / "inventory" / "local.yaml")]) == 0
    assert "ok, 0 board(s), 3 stand-in(s)" in capsys.readouterr().out
    assert main(["inventory", "list", str(REPO / "inventory" / "example-lab.yaml"), "--pool", "jetson"]) == 0
    out = capsys.readouterr().out
    assert "orin-01" in out and "rpi3-01" not in out
    bad = write(tmp_path, "boards:\n  - name: b1\n    hots: h\n")
    assert main(["inventory", "check", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{bad}:3, board 'b1', field 'hots': unknown key (did you mean 'host'?)" in err


def test_regression_rule_is_validated_and_reaches_the_checklist(tmp_path):
    from farm.config.checklist import load_checklist
    from farm.judge.items import limits_for

    err = error_of(write(tmp_path, "boards:\n  - name: b1\n    host: h\n    regression_rule: p95-10\n"))
    assert err.field == "regression_rule" and "expected e.g. p95:10%" in str(err)
    board = load_inventory(write(tmp_path, "boards:\n  - {name: b1, host: h, regression_rule: 'p50:20%'}\n",
                                 "ok.yaml")).boards[0]
    checklist = load_checklist(REPO / "suites" / "checklists" / "dms-nightly.yaml")
    assert limits_for(checklist, board)["regression"]["rule"] == "p50:20%"
    assert checklist.items["regression"]["rule"] == "p95:10%"


def test_full_system_needs_an_arm64_standin(tmp_path):
    err = error_of(write(tmp_path, "standins:\n  - name: vm\n    full_system: true\n"))
    assert (err.line, err.board, err.field) == (3, "vm", "full_system")
    inventory = load_inventory(write(tmp_path, "standins:\n  - {name: vm, arch: arm64, full_system: true}\n",
                                     "ok.yaml"))
    assert inventory.standins[0].full_system is True


def test_only_a_stand_in_runs_on_an_emulated_cpu(tmp_path):
    err = error_of(write(tmp_path, "boards:\n  - name: b1\n    host: h\n    emulated_cpu: cortex-a72\n"))
    assert (err.line, err.board, err.field) == (2, "b1", "emulated_cpu") and "standin: true" in str(err)
    err = error_of(write(tmp_path, "boards:\n  - {name: b1, host: h, standin: true, emulated_cpu: m1}\n", "m1.yaml"))
    assert err.field == "emulated_cpu" and "cortex-a53" in str(err)
    err = error_of(write(tmp_path, "boards:\n  - {name: b1, host: h, standin: 'yes'}\n", "yes.yaml"))
    assert err.field == "standin" and "true or false" in str(err)
    (board,) = load_inventory(write(tmp_path, "boards:\n  - {name: b1, host: h, class: cortex-a72, standin: true, "
                                              "emulated_cpu: cortex-a72}\n", "ok.yaml")).boards
    assert board.standin and board.emulated_cpu == "cortex-a72"
    assert board.cores is None and board.latency_budget_ms == 50.0  # the class's budget, not its hardware


def test_a_board_has_no_cpu_key_and_a_stand_in_s_cpu_is_the_cpu_it_emulates(tmp_path):
    err = error_of(write(tmp_path, "boards:\n  - name: b1\n    host: h\n    cpu: cortex-a72\n"))
    assert (err.line, err.board, err.field) == (4, "b1", "cpu") and "unknown key" in str(err)
    (spec,) = load_inventory(write(tmp_path, "standins:\n  - {name: a76, arch: arm64, class: cortex-a72, "
                                             "cpu: cortex-a76}\n", "ok.yaml")).standins
    assert spec.qemu_cpu == "cortex-a76" and "cpu" not in spec.values  # not passed on as a board field
    board = spec.board()
    assert board.emulated_cpu == "cortex-a76" and board.board_class == "cortex-a72" and not hasattr(board, "cpu")


@pytest.mark.parametrize("key", ["--split-string", "-S", "-i", "1ST", "A B", "A=B", "PATH;id"])
@pytest.mark.real  # starts a process
def test_an_env_key_that_env1_could_read_as_an_option_or_a_command_is_refused_by_inventory_check(tmp_path, key):
    from helpers import farm

    planted = tmp_path / "planted"
    bad = write(tmp_path, f"""
        boards:
          - name: b1
            host: 127.0.0.1
            env:
              {json.dumps(key)}: "sh -c 'touch {planted}'"
        """)
    checked = farm("inventory", "check", str(bad), cwd=tmp_path, timeout=60)
    assert checked.returncode == 2 and "Traceback" not in checked.stderr
    line = next(s for s in checked.stderr.splitlines() if s.startswith("farm: error:"))
    assert f"{bad}:4, board 'b1', field 'env'" in line and "not an environment variable name" in line
    assert not planted.exists()
    good = write(tmp_path, "boards:\n  - name: b1\n    host: h\n    env: {OMP_NUM_THREADS: 2, _X1: '-S x'}\n",
                 "ok.yaml")
    assert load_inventory(good).boards[0].env == (("OMP_NUM_THREADS", "2"), ("_X1", "-S x"))


@pytest.mark.real  # starts a process
def test_a_board_s_env_reaches_the_command_after_env_s_own_double_dash(tmp_path):
    """Through a real shell (the local transport runs what SSH would send): values that look like options
    stay values."""
    import sys

    from farm.board.local import LocalTransport
    from farm.config.inventory import Board

    board = Board(name="envy", host="localhost", transport="local", python=sys.executable, workdir=str(tmp_path),
                  env=(("FIRST", "-S sh -c id"), ("SECOND", "--split-string")))
    with LocalTransport(board) as transport:
        done = transport.run(["sh", "-c", 'printf "%s|%s" "$FIRST" "$SECOND"'])
    assert done.exit_code == 0 and done.stdout == "-S sh -c id|--split-string"
