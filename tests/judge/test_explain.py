"""A failing INT8 accuracy item explained: its sensitive layers beside the board's op time, int8_mixed's gain."""

from __future__ import annotations

from farm.judge.explain import explain
from farm.results import (
    BoardResult,
    BoardStatus,
    Check,
    CheckStatus,
    LayerSensitivity,
    MixedPrecision,
    ModelResult,
    RunResult,
    Sensitivity,
    VariantBuild,
    VariantResult,
)
from farm.ui.report import explanation_section


def variant(name: str, p50: float, accuracy: CheckStatus, profile: dict | None = None) -> VariantResult:
    return VariantResult(name, latency_ms={"p50": p50}, profile={"op_share_pct": profile} if profile else None,
                         checks=[Check("accuracy", accuracy, 12.0, 10.0, "%", "classificators iou: 12 %")])


MODEL = ModelResult(
    sensitivity=Sensitivity([LayerSensitivity(f"conv{i}", [f"conv{i}", f"relu{i}"], ["Conv", "Relu"], sqnr_db=20.0 - i,
                                              alone={"losses": [{"output": "classificators", "loss": 30.0 - i,
                                                                 "unit": "%"}]})
                             for i in range(7)]),
    variants={"int8_mixed": VariantBuild(mixed=MixedPrecision(True, ["conv0", "conv1"]))})
BOARD = BoardResult("b1", BoardStatus.OK, None, variants={
    "fp32": variant("fp32", 30.0, CheckStatus.PASS),
    "int8_static": variant("int8_static", 10.0, CheckStatus.FAIL, {"QLinearConv": 50.0, "FusedConv": 10.0,
                                                                     "Relu": 5.0, "QuantizeLinear": 9.0}),
    "int8_mixed": variant("int8_mixed", 15.0, CheckStatus.PASS)})


def test_a_failing_int8_accuracy_gets_its_five_most_sensitive_layers_beside_the_boards_op_time():
    [found] = explain(BOARD, MODEL)
    assert found.variant == "int8_static" and found.why == "classificators iou: 12 %"
    assert [x.layer for x in found.layers] == ["conv0", "conv1", "conv2", "conv3", "conv4"]
    # Conv (run as QLinearConv quantized, FusedConv in float) + Relu in the failing variant's profile
    assert found.layers[0].board_share_pct == 65.0
    assert found.layers[1].alone_losses == [{"output": "classificators", "loss": 29.0, "unit": "%"}]


def test_the_explanation_says_what_int8_mixed_kept_in_float_and_gained_on_the_same_board():
    [found] = explain(BOARD, MODEL)
    assert found.kept_in_float == ["conv0", "conv1"] and found.mixed_accuracy == "pass"
    assert found.speedup_vs_fp32 == 2.0 and found.speedup_vs_variant == round(10.0 / 15.0, 3)
    html = explanation_section(RunResult("r", "t", model=MODEL, boards=[BOARD], explanations=[found]))
    assert "Why INT8 lost accuracy" in html and "conv4" in html and "conv5" not in html
    assert "int8_mixed kept 2 layer(s) in float (conv0, conv1)" in html and "2.00x against FP32" in html
    assert RunResult.from_json(RunResult("r", "t", explanations=[found]).to_json()).explanations == [found]


def test_passing_variants_and_fp32_are_not_explained():
    passing = BoardResult("b2", BoardStatus.OK, None, variants={"fp32": variant("fp32", 30.0, CheckStatus.FAIL),
                                                                 "int8_static": variant("int8_static", 10.0,
                                                                                        CheckStatus.PASS)})
    assert explain(passing, MODEL) == []
