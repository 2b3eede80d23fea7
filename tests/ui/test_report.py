"""The report's trend plot: each variant's line, and a dashed mark where its level moved."""

from __future__ import annotations

from farm.ui.report import trend_figure, trend_plot

WOBBLE = [1.0, 1.03, 0.97, 1.02, 0.98, 1.01, 0.99, 1.04, 0.96, 1.0]


def points(values: list[float]) -> list[tuple]:
    return [(f"run-{i:02d}", f"2026-02-{i + 1:02d}T02:00:00", v) for i, v in enumerate(values)]


def dashed_at(axis) -> list[float]:
    """x of each vertical dashed line (axvline: two points at the same x)."""
    return [line.get_xdata()[0] for line in axis.lines
            if line.get_linestyle() == "--" and line.get_xdata()[0] == line.get_xdata()[1]]


def test_a_change_point_is_marked_at_the_run_where_the_level_moved_and_only_there():
    stepped = [w * (1.3 if i >= 10 else 1.0) for i, w in enumerate(WOBBLE * 2)]
    figure = trend_figure({"rpi4-01": {"fp32": points(stepped), "int8_static": points(WOBBLE * 2)}})
    (axis,) = figure.axes
    assert dashed_at(axis) == [11]  # the 11th run, oldest first: fp32's step; int8_static is flat
    marked = next(line for line in axis.lines if line.get_linestyle() == "--")
    fp32 = next(line for line in axis.lines if line.get_label() == "fp32")
    assert marked.get_color() == fp32.get_color()


def test_no_plot_without_two_runs_of_a_board():
    assert trend_plot({"rpi4-01": {"fp32": points([1.0])}}) is None
    assert trend_plot({"rpi4-01": {"fp32": points(WOBBLE)}}).startswith('<img alt="plot" src="data:image/png;base64,')
