"""Figures computed from raw measurements: latency statistics, accuracy loss, significance of a change."""

from __future__ import annotations

from typing import Sequence

import numpy as np

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
        verdict = "regression"
    elif change < -threshold_pct and faster < alpha:
        verdict = "improvement"
    else:
        verdict = "same"
    return {"figure": figure, "baseline": base, "new": new, "change_pct": change,
            "p_value": min(slower, faster), "verdict": verdict}


def round_spread(rounds: Sequence[dict] | None, figure: str) -> float | None:
    """Between-process noise: (max - min) / median of a figure over the agent's rounds, in percent."""
    values = sorted(r[figure] for r in rounds or [] if r.get(figure) is not None)
    if len(values) < 2:
        return None
    return (values[-1] - values[0]) / float(np.median(values)) * 100.0
