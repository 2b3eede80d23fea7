"""The deployment checklist, one test per item per board x variant.

Limits come from the checklist YAML (--farm-checklist, default dms.yaml) with
per-board overrides from the inventory. A failing test says the measured value,
the limit and the board; a board that could not be measured gives errors.
Run it with `farm run`, or `pytest suites/ --farm-inventory ...`.
"""

import pytest


def judged(verdict, board, variant):
    assert verdict.status == "pass", verdict.message(board.name, variant)


@pytest.mark.farm_item("opset")
def test_opset(verdict, board, variant):
    judged(verdict, board, variant)


@pytest.mark.farm_item("calibration")
def test_calibration(verdict, board, variant):
    judged(verdict, board, variant)


@pytest.mark.farm_item("accuracy")
def test_accuracy(verdict, board, variant):
    judged(verdict, board, variant)


@pytest.mark.farm_item("latency")
def test_latency(verdict, board, variant):
    judged(verdict, board, variant)


@pytest.mark.farm_item("memory")
def test_memory(verdict, board, variant):
    judged(verdict, board, variant)


@pytest.mark.farm_item("speedup")
def test_speedup(verdict, board, variant):
    judged(verdict, board, variant)


@pytest.mark.farm_item("offload")
def test_offload(verdict, board, variant):
    """Every node on the board's accelerator (skipped where the toolchain has none)."""
    judged(verdict, board, variant)


@pytest.mark.farm_item("regression")
def test_regression(verdict, board, variant):
    """Against the board's baseline run (last all-passed run, or the pinned one) in the history."""
    judged(verdict, board, variant)
