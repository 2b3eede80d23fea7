"""Figures computed from raw measurements: latency statistics, accuracy loss, significance of a change."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from farm.statuses import Change

PERCENTILES = (50, 90, 95, 99)


def latency_summary(samples_ms: Sequence[float]) -> dict:
    """n, mean, std, min, max, percentiles and CV, from the raw samples."""
    values = np.asarray(samples_ms, dtype=float)
    if values.size == 0:
        raise ValueError("no latency samples")
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    summary = {"n": int(values.size), "mean": mean, "std": std,
               "min": float(values.min()), "max": float(values.max())}
    summary.update({f"p{q}": float(np.percentile(values, q)) for q in PERCENTILES})
    summary["cv"] = std / mean if mean else None
    return summary


def percentile_of(metric: str) -> float | None:
    """0.95 for "p95"; None for a figure that is not a percentile (mean, max)."""
    return int(metric[1:]) / 100 if metric.startswith("p") and metric[1:].isdigit() else None


def runs_needed(q: float, confidence: float) -> int:
    """The fewest samples whose largest is an upper bound of the q-quantile at this confidence: 1 - q^n >= c."""
    return int(np.ceil(np.log(1 - confidence) / np.log(q) - 1e-9))


def quantile_bounds(samples_ms: Sequence[float], q: float, confidence: float) -> dict:
    """Distribution-free bounds of the q-quantile from order statistics (the binomial count below it).

    `upper`: one-sided, the smallest X(u) with P(X(u) >= quantile) >= confidence, i.e. the u-th
    order statistic where BinomCDF(u - 1; n, q) >= confidence. `low`/`high`: the two-sided interval
    at the same confidence (alpha split between both tails). None where n is too small for a bound.
    """
    from scipy.stats import binom

    values = np.sort(np.asarray(samples_ms, dtype=float))
    n = values.size
    alpha = 1 - confidence

    def rank_at_least(p: float) -> int | None:  # 0-based index of X(u), u - 1 = the smallest k with cdf(k) >= p
        k = int(binom.ppf(p, n, q))
        return k if k < n and binom.cdf(k, n, q) >= p else None

    below = binom.cdf(np.arange(n), n, q) <= alpha / 2  # l - 1 = the largest k with cdf(k) <= alpha/2
    low_index = int(np.nonzero(below)[0][-1]) if below.any() else None
    high_index, upper_index = rank_at_least(1 - alpha / 2), rank_at_least(confidence)
    pick = lambda i: float(values[i]) if i is not None else None  # noqa: E731
    return {"n": int(n), "q": q, "confidence": confidence, "low": pick(low_index), "high": pick(high_index),
            "upper": pick(upper_index), "ranks": [None if i is None else i + 1 for i in (low_index, high_index,
                                                                                        upper_index)]}


def percentile_intervals(samples_ms: Sequence[float], confidence: float = 0.95) -> dict:
    """Each reported percentile's order-statistic bounds: what a p95 from n runs can and cannot say."""
    return {f"p{q}": {k: v for k, v in quantile_bounds(samples_ms, q / 100, confidence).items() if k != "q"}
            for q in PERCENTILES}


def latency_change(baseline_ms: Sequence[float], new_ms: Sequence[float], figure: str, threshold_pct: float,
                   alpha: float) -> dict:
    """Did `figure` move by more than the threshold, and is the shift real (Mann-Whitney U)?

    A change counts only when both hold: larger than the threshold and significant
    on the raw samples, so noise does not cry wolf and a real shift is not missed
    because of one lucky percentile.
    """
    from scipy.stats import mannwhitneyu

    base = latency_summary(baseline_ms)[figure]
    new = latency_summary(new_ms)[figure]
    change = (new - base) / base * 100.0
    slower = mannwhitneyu(new_ms, baseline_ms, alternative="greater").pvalue
    faster = mannwhitneyu(new_ms, baseline_ms, alternative="less").pvalue
    if change > threshold_pct and slower < alpha:
        verdict = Change.REGRESSION
    elif change < -threshold_pct and faster < alpha:
        verdict = Change.IMPROVEMENT
    else:
        verdict = Change.SAME
    return {"figure": figure, "baseline": base, "new": new, "change_pct": change,
            "p_value": min(slower, faster), "verdict": verdict}


def round_spread(rounds: Sequence[dict] | None, figure: str) -> float | None:
    """Between-process noise: (max - min) / median of a figure over the agent's rounds, in percent."""
    values = sorted(r[figure] for r in rounds or [] if r.get(figure) is not None)
    if len(values) < 2:
        return None
    return (values[-1] - values[0]) / float(np.median(values)) * 100.0
