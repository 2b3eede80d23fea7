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


def test_a_row_shows_the_toolchain_the_provider_used_the_offload_and_marks_simulated_timing():
    from farm.results import BoardResult, VariantResult
    from farm.ui.report import row_properties

    offloaded = VariantResult("int8_qnn", provider_used="QNNExecutionProvider", toolchain="qnn",
                              simulated="HTP simulated on x86_64",
                              latency_ms={"p50": 875.7, "p95": 898.2, "p99": 901.0},
                              offload={"provider": "QNNExecutionProvider", "fallback_disabled": True, "nodes": 44,
                                       "on_accelerator": 44, "node_pct": 100.0, "time_pct": 100.0, "fallen_back": {}})
    refused = VariantResult("int8_static", provider_used="CPUExecutionProvider", toolchain="qnn",
                            offload={"provider": "QNNExecutionProvider", "fallback_disabled": False, "nodes": 44,
                                     "on_accelerator": 0, "node_pct": 0.0, "time_pct": 0.0,
                                     "fallen_back": {"Conv": 3, "QuantizeLinear": 11}})
    board = BoardResult("qcs-sim", providers_requested=["QNNExecutionProvider", "CPUExecutionProvider"],
                        variants={"int8_qnn": offloaded, "int8_static": refused})
    row = row_properties(board, "int8_qnn", None, [])
    assert row["toolchain"] == "qnn" and row["provider"] == "QNN"
    assert row["offload"] == "100 % of nodes, 100 % of time; fallback disabled"
    assert row["p50 ms"] == "875.700 (simulated)" and row["p95 ms"] == "898.200 (simulated)"
    other = row_properties(board, "int8_static", None, [])
    assert other["provider"] == "CPU (asked QNN)" and other["p50 ms"] == "-"
    assert other["offload"] == "0 % of nodes, 0 % of time; fell back: Conv x3, QuantizeLinear x11"


def test_the_dashboards_lab_page_shows_each_boards_accelerator_offload_and_simulated_timing(tmp_path):
    from farm.record.history import History
    from farm.results import BoardResult, BoardStatus, ModelResult, RunResult, VariantResult
    from farm.ui.web import data
    from farm.ui.web.app import templates

    qnn = VariantResult("int8_static", provider_used="CPUExecutionProvider", toolchain="qnn",
                        simulated="HTP simulated on x86_64", latency_ms={"n": 5, "p50": 1.0, "p95": 1.1},
                        samples_ms=[1.0] * 5,
                        offload={"provider": "QNNExecutionProvider", "fallback_disabled": False, "nodes": 44,
                                 "on_accelerator": 0, "node_pct": 0.0, "time_pct": 0.0, "fallen_back": {"Conv": 3}})
    board = BoardResult("qcs-sim", BoardStatus.OK, None, board_class="qcs8255", standin=True,
                        providers_requested=["QNNExecutionProvider"], variants={"int8_static": qnn})
    run = RunResult("r1", "2026-12-03T10:00:00+00:00", "2026-12-03T10:05:00+00:00",
                    model=ModelResult(name="digits", sha256="ab" * 32), boards=[board])
    history = History(tmp_path / "history.sqlite")
    history.record(run)
    page = data.lab(data.Sources(history, tmp_path))
    (shown,) = page["boards"]
    assert shown["accelerator"] == [{"variant": "int8_static", "toolchain": "qnn", "provider": "CPU (asked QNN)",
                                     "offload": "0 % of nodes, 0 % of time; fell back: Conv x3",
                                     "simulated": "HTP simulated on x86_64"}]
    html = templates.get_template("lab.html").render(pages=[], current="lab", **page)
    assert "int8_static: qnn on CPU (asked QNN), offload 0 % of nodes" in html
    assert "HTP simulated on x86_64: timing simulated" in html
