"""Health checks through the CLI and real stand-ins: a board that fails one is left out until one passes."""

from __future__ import annotations

import json
import uuid

import pytest
from helpers import farm, fresh_workdir, write_inventory

from farm.record.history import History

# a minute or more of real stand-ins: the default run skips it, CI runs it (-m slow locally)
pytestmark = pytest.mark.slow


def _results(cwd) -> dict:
    return json.loads((cwd / "results" / "latest" / "results.json").read_text())


def test_a_board_failing_its_health_check_is_left_out_until_a_check_passes(lab, shared_dir, tmp_path):
    _, boards = lab
    sick = shared_dir / f"sick-{uuid.uuid4().hex[:8]}"  # while it exists, t2's agent dies at once
    python = shared_dir / f"health-python-{uuid.uuid4().hex[:8]}"
    python.write_text(f'#!/bin/sh\ncase "$*" in *--model*) [ -e {sick} ] && exit 3;; esac\n'
                      f'exec {boards["t2"].python} "$@"\n')
    python.chmod(0o755)
    import dataclasses

    t2 = dataclasses.replace(fresh_workdir(boards["t2"], "health"), python=str(python))
    inventory = write_inventory(tmp_path / "lab.yaml", fresh_workdir(boards["t1"], "health"), t2)
    sick.touch()

    checked = farm("health", "--inventory", inventory, cwd=tmp_path)
    assert checked.returncode == 1, checked.stdout + checked.stderr[-2000:]
    lines = {line.split()[0]: line for line in checked.stdout.splitlines() if line.split()[:1] in (["t1"], ["t2"])}
    assert lines["t1"].split()[1] == "good" and lines["t2"].split()[1] == "bad", checked.stdout
    assert "health check: agent-error" in lines["t2"], lines["t2"]
    health = History(tmp_path / "results" / "history.sqlite").health()
    assert health["t2"]["state"] == "bad" and health["t1"]["state"] == "good"

    run = farm("run", "--inventory", inventory, "--variants", "fp32", "--runs", "20", cwd=tmp_path)
    assert "t2: left out: bad since" in run.stderr and "farm health --board t2" in run.stderr, run.stderr[-2000:]
    assert [b["name"] for b in _results(tmp_path)["boards"]] == ["t1"]

    alone = farm("run", "--inventory", inventory, "--board", "t2", "--variants", "fp32", cwd=tmp_path)
    assert alone.returncode == 1, alone.stderr
    assert "every selected board is bad or retired (t2 bad since" in alone.stderr, alone.stderr
    assert "health check: agent-error" in alone.stderr.splitlines()[-1], alone.stderr  # why, on the error's own line

    sick.unlink()  # repaired
    again = farm("health", "--inventory", inventory, "--board", "t2", cwd=tmp_path)
    assert again.returncode == 0 and "t2            good  health check passed" in again.stdout, again.stdout
    run = farm("run", "--inventory", inventory, "--variants", "fp32", "--runs", "20", cwd=tmp_path)
    assert "left out" not in run.stderr
    assert sorted(b["name"] for b in _results(tmp_path)["boards"]) == ["t1", "t2"]


def test_a_board_whose_reference_is_far_off_its_own_health_history_is_bad_with_the_figures_and_left_out(lab, tmp_path):
    _, boards = lab
    inventory = write_inventory(tmp_path / "lab.yaml", fresh_workdir(boards["t1"], "figures"),
                                fresh_workdir(boards["t3"], "figures"))
    history = History(tmp_path / "results" / "history.sqlite")
    for n in range(5):  # a level no real board reaches: the digits reference at 10 ns, far beyond any allowance
        history.set_health("t1", "good", "seeded by the test", f"seed-{n}", p50=1e-5)

    checked = farm("health", "--inventory", inventory, "--board", "t1", cwd=tmp_path)
    assert checked.returncode == 1, checked.stdout + checked.stderr[-2000:]
    reason = history.health()["t1"]["reason"]
    assert history.health()["t1"]["state"] == "bad" and reason in checked.stdout, (reason, checked.stdout)
    assert reason.startswith("health check: figures off its own history: digits reference p50 "), reason
    assert "x slower than this board's own level 1e-05 ms (median of its last 5 passing checks); " \
           "a board of no class allows 3x either way" in reason, reason
    assert history.health_figures("t1", 10) == [1e-5] * 5  # a failing check's figure is no part of the level

    run = farm("run", "--inventory", inventory, "--variants", "fp32", "--runs", "20", cwd=tmp_path)
    assert "t1: left out: bad since" in run.stderr and "figures off its own history" in run.stderr, run.stderr[-2000:]
    assert [b["name"] for b in _results(tmp_path)["boards"]] == ["t3"]

    restored = farm("boards", "restore", "t1", cwd=tmp_path)  # a person's word: its level is learnt afresh
    assert restored.returncode == 0 and "health figures start afresh" in restored.stdout, restored.stdout
    again = farm("health", "--inventory", inventory, "--board", "t1", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr[-2000:]
    assert "figures not judged yet: 0 earlier passing checks of this board, 3 needed" in again.stdout, again.stdout
    assert len(history.health_figures("t1", 10)) == 1


def test_a_retired_board_is_left_out_until_restored_and_lab_status_says_why(lab, tmp_path):
    lab_obj, boards = lab
    inventory = write_inventory(tmp_path / "lab.yaml", fresh_workdir(boards["t3"], "retired"))
    assert farm("boards", "retire", "t3", "--reason", "fan noise", cwd=tmp_path).returncode == 0
    status = farm("lab", "status", cwd=tmp_path, env={"FARM_LAB_DIR": str(lab_obj.dir)})
    assert "t3" in status.stdout and "retired since" in status.stdout and "fan noise" in status.stdout, status.stdout
    run = farm("run", "--inventory", inventory, "--variants", "fp32", cwd=tmp_path)
    assert run.returncode == 1 and "every selected board is bad or retired (t3 retired since" in run.stderr, \
        run.stderr[-1500:]
    assert farm("boards", "restore", "t3", cwd=tmp_path).returncode == 0
    assert History(tmp_path / "results" / "history.sqlite").health()["t3"]["state"] == "good"
