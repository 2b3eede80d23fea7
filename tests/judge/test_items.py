"""Checklist items judged on the typed results: what passes, fails, errors or is informational."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from farm import resources
from farm.build.variants import model_result
from farm.config.checklist import load_checklist
from farm.config.inventory import Board
from farm.judge.items import _regression, judge, limits_for
from farm.results import Baseline, VariantResult

TOP1 = {"outputs": [{"name": "logits", "metric": "top1", "labels": True, "max_loss_pct": None}]}
ACCURATE = {"n": 10, "outputs": {"logits": {"metric": "top1", "top1": 0.98, "agreement": 1.0}}}


def evaluate(checklist, board: Board, variants: dict, model) -> dict:
    """The checks of one board's variants, judged as the job judges them: by the limits the board has."""
    return judge(limits_for(checklist, board), board.emulated_cpu, variants, model)


def agent_doc(name: str, p50: float) -> VariantResult:
    result = VariantResult.from_agent(name, {
        "model": {"opset": 17}, "latency_ms": {"n": 100, "p50": p50, "p95": p50 * 1.1},
        "samples_ms": [p50] * 90 + [p50 * 1.1] * 10,
        "peak_rss_mb": 100.0, "errors": []})
    result.add_accuracy({"accuracy": ACCURATE, "errors": []})
    return result


def test_emulated_timing_is_reported_not_judged():
    checklist = load_checklist(resources.checklist("dms"))
    manifest = {"model": {}, "spec": TOP1, "data": {"evaluation_samples": 10, "calibration_samples": 300},
                "variants": {"fp32": {"host": {"accuracy": ACCURATE}}, "int8_static": {"float_op_types": {}}}}
    # over budget, and slower
    variants = {"fp32": agent_doc("fp32", 80.0), "int8_static": agent_doc("int8_static", 200.0)}
    native = evaluate(checklist, Board(name="b", host="h"), variants, model_result(manifest))
    emulated = evaluate(checklist, Board(name="b", host="h", emulated_cpu="cortex-a72"), variants,
                        model_result(manifest))
    by_item = lambda checks: {c.item: c for c in checks}  # noqa: E731
    assert by_item(native["fp32"])["latency"].status == "fail"
    assert by_item(native["int8_static"])["speedup"].status == "fail"
    latency = by_item(emulated["fp32"])["latency"]
    assert latency.status == "skip" and latency.value == 88.0 and latency.limit == 50.0
    assert "emulated board (QEMU cortex-a72), not silicon timing" in latency.why
    assert by_item(emulated["int8_static"])["speedup"].status == "skip"
    assert by_item(emulated["fp32"])["accuracy"].status == "pass"  # correctness is still judged


def test_speedup_failure_says_what_to_fix():
    checklist = load_checklist(resources.checklist("dms"))
    manifest = {"model": {}, "spec": TOP1, "data": {"evaluation_samples": 10, "calibration_samples": 300},
                "variants": {"fp32": {}, "int8_dynamic": {"float_op_types": {"Conv": 5, "Relu": 6}},
                             "int8_static": {"float_op_types": {}}}}
    variants = {"fp32": agent_doc("fp32", 1.0), "int8_dynamic": agent_doc("int8_dynamic", 2.0),
                "int8_static": agent_doc("int8_static", 1.5)}
    verdicts = evaluate(checklist, Board(name="b", host="h"), variants, model_result(manifest))
    dynamic = next(c for c in verdicts["int8_dynamic"] if c.item == "speedup")
    static = next(c for c in verdicts["int8_static"] if c.item == "speedup")
    assert dynamic.status == "fail" and dynamic.value == 0.5
    assert dynamic.why == "latency not reduced: ops left in float: Conv x5, Relu x6"
    assert static.status == "fail" and static.why == ("latency not reduced: every compute op is quantized and no "
                                                      "profile was taken")
    variants["int8_static"].profile = {"runs": 20, "op_share_pct": {"DequantizeLinear": 30.0, "Conv": 25.0,
                                                                    "QuantizeLinear": 20.0, "Cast": 5.0}}
    static = next(c for c in evaluate(checklist, Board(name="b", host="h"), variants, model_result(manifest))
                  ["int8_static"] if c.item == "speedup")
    assert static.why == ("latency not reduced: the profile shows DequantizeLinear 30 %, Conv 25 %, QuantizeLinear "
                          "20 %, Cast 5 % of run time; quantize / dequantize / cast overhead is 55 % of it")


SPEEDUP_MANIFEST = {"model": {}, "spec": TOP1, "data": {"evaluation_samples": 10, "calibration_samples": 300},
                    "variants": {"fp32": {}, "int8_static": {"float_op_types": {}}}}
FOREIGN_FLAG = "foreign load after: 5 other runnable tasks for 2 usable cores"


def timed_pair(int8_p50: float, fp32_flag: str) -> dict:
    """FP32 at 1 ms, flagged; int8_static at `int8_p50` ms."""
    variants = {"fp32": agent_doc("fp32", 1.0), "int8_static": agent_doc("int8_static", int8_p50)}
    variants["fp32"].board_state = {"flags": [fp32_flag]}
    return variants


def speedup_of(board: Board, variants: dict, checklist=None):
    checklist = checklist or load_checklist(resources.checklist("dms"))
    return next(c for c in evaluate(checklist, board, variants, model_result(SPEEDUP_MANIFEST))["int8_static"]
                if c.item == "speedup")


def test_speedup_under_foreign_load_on_either_latency_run_is_an_error_with_the_reason():
    variants = timed_pair(1.2, FOREIGN_FLAG)  # slower: a fail...
    speedup = lambda: speedup_of(Board(name="b", host="h"), variants)  # noqa: E731
    check = speedup()  # ...unless FP32 was timed under another process's load
    assert check.status == "error" and check.value == 0.833
    assert f"fp32: {FOREIGN_FLAG}" in check.why
    variants["fp32"].board_state, variants["int8_static"].board_state = None, {"flags": ["below max frequency: x"]}
    assert speedup().status == "error" and "int8_static: below max frequency: x" in speedup().why
    variants["int8_static"].board_state = None
    assert speedup().status == "fail"


def test_an_emulated_boards_speedup_under_foreign_load_is_informational_not_an_error():
    check = speedup_of(Board(name="b", host="h", emulated_cpu="cortex-a72"), timed_pair(1.2, FOREIGN_FLAG))
    assert check.status == "skip" and "emulated board (QEMU cortex-a72)" in check.why and check.value == 0.833


def test_a_stand_ins_speedup_under_foreign_load_alone_is_a_warning_and_under_any_other_flag_an_error():
    variants = timed_pair(0.5, "foreign load after: 3 other runnable tasks for 1 usable cores")
    standin, real = Board(name="b", host="127.0.0.1", standin=True), Board(name="b", host="h")
    warned = speedup_of(standin, variants)  # the other runnable tasks are farm's own work for the other stand-ins
    assert warned.status == "pass" and warned.value == 2.0
    assert "warning: fp32: foreign load after: 3 other runnable tasks" in warned.why
    assert "a stand-in shares the controller's cores" in warned.why
    assert speedup_of(real, variants).status == "error"  # a real board under foreign load is unfit to be timed
    strict = load_checklist(resources.checklist("dms"))
    strict = dataclasses.replace(strict, explicit=strict.explicit | {("speedup", "board_state")})
    insisted = speedup_of(standin, variants, strict)
    assert insisted.status == "error"  # a checklist that writes board_state: error down means it, stand-in or not
    variants["int8_static"].board_state = {"flags": ["hot after: cpu-thermal at 86.0 C, passive trip 85.0 C"]}
    assert speedup_of(standin, variants).status == "error"  # heat is not farm's own work


def test_fp32_losing_against_itself_on_the_host_makes_every_accuracy_check_an_error():
    checklist = load_checklist(resources.checklist("dms"))
    losses = [{"output": "logits", "metric": "top1", "loss": 39.9, "unit": "%", "limit": 1.0, "ok": False}]
    manifest = {"model": {}, "spec": TOP1, "data": {"evaluation_samples": 10, "calibration_samples": 300},
                "variants": {"fp32": {"host": {"accuracy": ACCURATE, "losses": losses}},
                             "int8_static": {"float_op_types": {}}}}
    variants = {"fp32": agent_doc("fp32", 1.0), "int8_static": agent_doc("int8_static", 0.5)}
    for name, checks in evaluate(checklist, Board(name="b", host="h"), variants, model_result(manifest)).items():
        accuracy = next(c for c in checks if c.item == "accuracy")
        assert accuracy.status == "error", name
        assert accuracy.why.startswith("FP32 against its own reference on the host: logits top1 39.9 % where 0 is")
    losses[0]["loss"] = 0.0
    checks = evaluate(checklist, Board(name="b", host="h"), variants, model_result(manifest))
    assert next(c for c in checks["int8_static"] if c.item == "accuracy").status == "pass"


def test_a_labelled_figure_that_holds_while_decisions_flip_against_fp32_fails_on_its_agreement():
    checklist = load_checklist(resources.checklist("dms"))
    manifest = {"model": {}, "spec": TOP1, "data": {"evaluation_samples": 10, "calibration_samples": 300},
                "variants": {"fp32": {"host": {"accuracy": ACCURATE}}, "int8_static": {"float_op_types": {}}}}
    variants = {"fp32": agent_doc("fp32", 1.0), "int8_static": agent_doc("int8_static", 0.5)}
    variants["int8_static"].accuracy = {"n": 10, "outputs": {"logits": {"metric": "top1", "top1": 0.985,
                                                                        "agreement": 0.925}}}
    accuracy = next(c for c in evaluate(checklist, Board(name="b", host="h"), variants, model_result(manifest))
                    ["int8_static"] if c.item == "accuracy")
    rows = {row["metric"]: row for row in accuracy.details}
    assert rows["top1"]["verdict"] == "pass" and rows["top1"]["value"] == pytest.approx(-0.5)  # +0.5 on labels
    assert rows["agreement"]["verdict"] == "fail" and rows["agreement"]["value"] == pytest.approx(7.5)
    assert accuracy.status == "fail" and "logits agreement: 7.5 % (decisions that differ from FP32's" in accuracy.why


def timed(name: str, p50: float, n: int = 200, seed: int = 0, rounds: list | None = None) -> VariantResult:
    samples = list(np.random.default_rng(seed).normal(p50, p50 * 0.02, n))
    return VariantResult(name, latency_ms={"p50": p50, "p95": p50 * 1.05, "n": n}, samples_ms=samples,
                         rounds=rounds or [], peak_rss_mb=100.0, accuracy=ACCURATE)


NIGHTLY = {"rule": "p95:10%", "alpha": 0.01, "max_accuracy_drop_points": 0.5, "max_memory_increase_pct": 10.0}


def test_regression_needs_a_change_beyond_the_rule_and_significant():
    baseline = Baseline("night-1", timed("fp32", 1.0, seed=1))
    slower = _regression(timed("fp32", 1.3, seed=2), NIGHTLY, baseline)
    assert slower.status == "fail" and "regressed against run night-1" in slower.why
    p95 = next(d for d in slower.details if d["figure"] == "p95")
    assert 25 < p95["change_pct"] < 35 and p95["p_value"] < 0.01 and p95["verdict"] == "regression"
    same = _regression(timed("fp32", 1.0, seed=3), NIGHTLY, baseline)
    assert same.status == "pass" and same.why == "no regression against run night-1"
    assert _regression(timed("fp32", 1.0), NIGHTLY, None).status == "skip"


def test_regression_threshold_grows_to_the_spread_between_rounds():
    """A 15 % change is noise on a board whose rounds already moved 18 % ((1.2 - 1.0) / median 1.1)."""
    noisy = [{"p95": 1.0}, {"p95": 1.2}, {"p95": 1.1}]
    baseline = Baseline("night-1", timed("fp32", 1.0, seed=1, rounds=noisy))
    assert _regression(timed("fp32", 1.15, seed=2), NIGHTLY, Baseline("night-1", timed("fp32", 1.0, seed=1))
                       ).status == "fail"
    check = _regression(timed("fp32", 1.15, seed=2), NIGHTLY, baseline)
    assert check.status == "pass"
    p95 = next(d for d in check.details if d["figure"] == "p95")
    assert p95["limit"] == "+18.2 %" and round(p95["noise_pct"], 1) == 18.2


def test_regression_flags_memory_and_accuracy_by_the_checklist_rules():
    baseline = Baseline("night-1", timed("fp32", 1.0, seed=1))
    worse = timed("fp32", 1.0, seed=2)
    worse.peak_rss_mb = 115.0
    worse.accuracy = {"n": 10, "outputs": {"logits": {"metric": "top1", "top1": 0.97, "agreement": 0.99}}}
    model = model_result({"spec": TOP1})
    check = _regression(worse, NIGHTLY, baseline, model=model)
    verdicts = {d["figure"]: d["verdict"] for d in check.details}
    assert check.status == "fail" and verdicts["peak_rss_mb"] == "regression"
    assert verdicts["accuracy logits"] == "regression"
    assert _regression(worse, {**NIGHTLY, "max_memory_increase_pct": 20.0, "max_accuracy_drop_points": 2.0},
                       baseline, model=model).status == "pass"
