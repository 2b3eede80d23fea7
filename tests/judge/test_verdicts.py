"""One board's verdicts from gathered inputs (judge_board): no history, no board, only figures in and verdicts out."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from farm import resources
from farm.config.checklist import load_checklist
from farm.config.inventory import Board
from farm.judge.verdicts import judge_board
from farm.results import Baseline, ModelResult, VariantResult

ACCURATE = {"n": 10, "outputs": {"logits": {"metric": "top1", "top1": 0.98, "agreement": 1.0}}}
MODEL = ModelResult(name="m", spec={"outputs": [{"name": "logits", "metric": "top1", "labels": True}]})
NIGHTLY = load_checklist(resources.checklist("dms-nightly"))


def timed(name: str, p50: float, seed: int, n: int = 200) -> VariantResult:
    samples = [float(x) for x in np.random.default_rng(seed).normal(p50, p50 * 0.02, n)]
    return VariantResult(name, opset=17, latency_ms={"n": n, "p50": p50, "p95": float(np.percentile(samples, 95))},
                         samples_ms=samples, peak_rss_mb=100.0, accuracy=ACCURATE)


def series(values: list[float]) -> tuple:
    return tuple({"run_id": f"r{i:02d}", "p50": v / 1.05, "p95": v} for i, v in enumerate(values))


def by_item(checks) -> dict:
    return {c.item: c for c in checks}


def test_a_boards_own_budget_holds_and_each_variant_with_samples_gets_its_percentile_bounds():
    board = Board(name="b", host="h", latency_budget_ms=2.0)
    unsampled = replace(timed("int8_static", 1.0, seed=2), samples_ms=[])
    verdict = judge_board(NIGHTLY, board, {"fp32": timed("fp32", 3.0, seed=1), "int8_static": unsampled}, MODEL)
    assert verdict.limits["latency"]["max_ms"] == 2.0
    assert verdict.limits["latency"]["max_ms_source"] == "board b's inventory entry"
    fp32 = verdict.variants["fp32"]
    assert by_item(fp32.checks)["latency"].status == "fail"  # 3 ms against the board's 2, not the checklist's 50
    assert fp32.latency_intervals["p95"]["confidence"] == 0.95 and fp32.latency_intervals["p95"]["n"] == 200
    assert verdict.variants["int8_static"].latency_intervals is None  # nothing to bound, not bounds of nothing


def test_a_slowdown_against_the_history_baseline_fails_and_the_baseline_is_recorded_with_its_series():
    before = series([1.05] * 5)
    baseline = Baseline("r04", timed("fp32", 1.0, seed=1), pinned=True, series=before)
    verdict = judge_board(NIGHTLY, Board(name="b", host="h"), {"fp32": timed("fp32", 1.3, seed=2)}, MODEL,
                          {"fp32": baseline})
    regression = by_item(verdict.variants["fp32"].checks)["regression"]
    assert regression.status == "fail" and "regressed against run r04 (pinned)" in regression.why
    assert verdict.variants["fp32"].baseline == {"run_id": "r04", "pinned": True, "series": list(before)}


def test_a_lasting_slowdown_in_the_earlier_runs_names_the_run_where_it_began():
    rng = np.random.default_rng(3)
    values = [float(v) for v in 1.05 * np.exp(rng.normal(0, 0.01, 20))] + [1.4, 1.41]  # r20 and r21 slower
    baseline = Baseline("r10", timed("fp32", 1.0, seed=1), series=series(values))
    flat = replace(baseline, series=series(values[:20] + [1.05, 1.05]))
    now = timed("fp32", 1.35, seed=2)

    def changes(base: Baseline) -> list[dict]:
        verdict = judge_board(NIGHTLY, Board(name="b", host="h"), {"fp32": now}, MODEL, {"fp32": base})
        regression = by_item(verdict.variants["fp32"].checks)["regression"]
        return [d for d in regression.details if d["figure"] == "change since baseline"]
    (change,) = changes(baseline)
    assert change["began"] == "r20" and change["verdict"] == "regression" and change["p_value"] <= 0.02
    assert changes(flat) == []  # the same run against a history that stayed level: no change point


def test_without_a_baseline_the_regression_item_skips_and_nothing_is_recorded():
    verdict = judge_board(NIGHTLY, Board(name="b", host="h"), {"fp32": timed("fp32", 1.0, seed=1)}, MODEL, {})
    regression = by_item(verdict.variants["fp32"].checks)["regression"]
    assert regression.status == "skip" and regression.why == "no baseline yet for this board, model and variant"
    assert verdict.variants["fp32"].baseline is None


def test_an_unreadable_history_makes_only_the_regression_item_an_error_that_says_why():
    verdict = judge_board(NIGHTLY, Board(name="b", host="h"), {"fp32": timed("fp32", 1.0, seed=1)}, MODEL, None,
                          "history unavailable: database is locked")
    checks = by_item(verdict.variants["fp32"].checks)
    regression = checks["regression"]
    assert regression.status == "error" and regression.why == "history unavailable: database is locked"
    assert checks["latency"].status == "pass" and checks["opset"].status == "pass"
