"""Where each limit comes from: board entry > checklist > class default > farm's default, or the strictest."""

from __future__ import annotations

import textwrap

import pytest

from farm.config.checklist import load_checklist
from farm.config.inventory import load_inventory
from farm.errors import ChecklistError
from farm.judge.items import _latency, limits_for
from farm.results import VariantResult

INVENTORY = """
boards:
  - {name: plain-a76, host: h1, class: cortex-a76}
  - {name: tight-a76, host: h2, class: cortex-a76, latency_budget_ms: 20}
  - {name: no-class, host: h3}
"""


def setup(tmp_path, checklist: str):
    (tmp_path / "lab.yaml").write_text(INVENTORY)
    (tmp_path / "c.yaml").write_text(textwrap.dedent(checklist))
    boards = {b.name: b for b in load_inventory(tmp_path / "lab.yaml").boards}
    return load_checklist(tmp_path / "c.yaml"), boards


def measured(p95: float) -> VariantResult:
    return VariantResult("fp32", latency_ms={"n": 200, "p50": p95 / 2, "p95": p95}, samples_ms=[p95] * 200)


def test_a_tighter_checklist_is_not_replaced_by_the_class_default(tmp_path):
    checklist, boards = setup(tmp_path, "name: tight\nitems:\n  latency: {max_ms: 0.001}\n")
    limits = limits_for(checklist, boards["plain-a76"])["latency"]
    assert (limits["max_ms"], limits["max_ms_source"]) == (0.001, "the checklist")
    check = _latency(measured(4.6), limits)  # the figure seen passing against the class's 50 ms
    assert check.status == "fail" and check.limit == 0.001 and "limit from the checklist" in check.why


def test_the_boards_own_budget_wins_then_the_class_default_then_farms(tmp_path):
    checklist, boards = setup(tmp_path, "name: loose\nitems:\n  latency: {max_ms: 80}\n  memory: {}\n")
    assert limits_for(checklist, boards["tight-a76"])["latency"]["max_ms_source"] == "board tight-a76's inventory entry"
    assert limits_for(checklist, boards["tight-a76"])["latency"]["max_ms"] == 20
    plain = limits_for(checklist, boards["plain-a76"])
    assert (plain["latency"]["max_ms"], plain["latency"]["max_ms_source"]) == (80, "the checklist")
    silent, _ = setup(tmp_path, "name: silent\nitems:\n  latency: {metric: p50}\n")
    assert limits_for(silent, boards["plain-a76"])["latency"]["max_ms_source"] == "class cortex-a76's default"
    assert limits_for(silent, boards["no-class"])["latency"]["max_ms_source"] == "farm's default"
    assert plain["memory"]["max_mb_source"] == "farm's default"


def test_limits_stricter_takes_the_strictest_and_names_it(tmp_path):
    checklist, boards = setup(tmp_path, "name: strict\nitems:\n  latency: {max_ms: 30, limits: stricter}\n")
    assert limits_for(checklist, boards["tight-a76"])["latency"]["max_ms"] == 20
    plain = limits_for(checklist, boards["plain-a76"])["latency"]
    assert (plain["max_ms"], plain["max_ms_source"]) == (30, "the checklist")


def test_an_extending_checklist_keeps_what_its_parent_wrote(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\nitems:\n  latency: {max_ms: 5}\n")
    child, boards = setup(tmp_path, "name: child\nextends: base.yaml\nitems:\n  latency: {metric: p50}\n")
    assert child.items["latency"]["max_ms"] == 5 and ("latency", "max_ms") in child.explicit
    assert limits_for(child, boards["plain-a76"])["latency"]["max_ms"] == 5


FLAGS = ["foreign load before: 2 other runnable tasks for 1 usable cores",
         "below max frequency: the fastest usable core, cpu0, at 600 of 1800 MHz (governor powersave)"]


def test_a_flagged_board_state_is_an_error_a_warning_or_ignored_as_the_checklist_says(tmp_path):
    flagged = measured(4.0)
    flagged.board_state = {"before": {}, "after": {}, "flags": FLAGS}
    verdicts = {}
    for rule in ("error", "warn", "ignore"):
        checklist, boards = setup(tmp_path, f"name: s\nitems:\n  latency: {{board_state: {rule}}}\n")
        verdicts[rule] = _latency(flagged, limits_for(checklist, boards["plain-a76"])["latency"])
    assert verdicts["error"].status == "error" and verdicts["error"].value == 4.0
    assert "unfit to be timed" in verdicts["error"].why and FLAGS[1] in verdicts["error"].why
    assert verdicts["warn"].status == "pass" and verdicts["warn"].why.endswith("; warning: " + "; ".join(FLAGS))
    assert verdicts["ignore"].status == "pass" and "warning" not in verdicts["ignore"].why
    clean = _latency(measured(4.0), limits_for(checklist, boards["plain-a76"])["latency"])
    assert clean == verdicts["ignore"]


def test_an_unknown_board_state_rule_names_the_line_and_the_choices(tmp_path):
    with pytest.raises(ChecklistError) as caught:
        setup(tmp_path, "name: s\nitems:\n  latency:\n    board_state: panic\n")
    assert "c.yaml:4" in str(caught.value) and "board_state" in str(caught.value) and "warn, error, ignore" in str(
        caught.value)
