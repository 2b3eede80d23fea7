"""Figures computed from raw measurements: latency statistics and accuracy loss."""

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


def accuracy_loss_pct(accuracy: dict | None, fp32_accuracy: dict | None, task: str) -> float | None:
    """Loss of a variant against FP32, in percent, by the best evidence available.

    Labels: top-1 drop in percentage points. No labels, classification: share of
    samples whose top-1 disagrees with FP32. Regression (landmarks, boxes): mean
    relative error against the FP32 outputs.
    """
    if not accuracy:
        return None
    if accuracy.get("top1") is not None and fp32_accuracy and fp32_accuracy.get("top1") is not None:
        return (fp32_accuracy["top1"] - accuracy["top1"]) * 100.0
    if task == "regression" and accuracy.get("mean_rel_error") is not None:
        return accuracy["mean_rel_error"] * 100.0
    if accuracy.get("agreement_with_reference") is not None:
        return (1.0 - accuracy["agreement_with_reference"]) * 100.0
    return None
