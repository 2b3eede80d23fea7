"""What a judged output's figures mean: its loss against FP32 (or labels), and its quality score.

The agent reports raw figures per output (agreement, top-1 on labels, IoU, NME,
MAE, ...); the metric named in the model spec decides which figure is the loss
and in which unit. The checklist's accuracy item, the recipe search, the
regression item and the report all read them through here.
"""

from __future__ import annotations

# the figure that says "how good", higher is better, per metric: (with labels, against FP32)
QUALITY = {"top1": ("top1", "agreement"), "binary": ("accuracy", "agreement"), "iou": (None, "iou"),
           "sequence": (None, "timestep_agreement"), "cosine": (None, "cosine")}


def output_loss(output: dict, figures: dict | None, fp32: dict | None) -> tuple[float | None, str, str]:
    """(value, unit, what it is) of one output's loss; lower is better, but for snr_db (higher is better)."""
    if not figures:
        return None, "", "not measured"
    metric = output["metric"]
    if metric in ("top1", "binary"):
        labelled, agreed = QUALITY[metric]
        if output.get("labels") and labelled in figures and fp32 and labelled in fp32:
            return (fp32[labelled] - figures[labelled]) * 100.0, "%", f"{labelled} drop on labels against FP32"
        if "agreement" in figures:
            return (1.0 - figures["agreement"]) * 100.0, "%", "decisions that differ from FP32"
        return None, "%", "no labels and no FP32 reference"
    if metric == "iou":
        return (1.0 - figures["iou"]) * 100.0, "%", "1 - IoU of the thresholded maps with FP32's"
    if metric == "nme":
        if "nme_labels" in figures and fp32 and "nme_labels" in fp32:
            return (figures["nme_labels"] - fp32["nme_labels"]) * 100.0, "%", "NME rise against ground truth"
        return figures["nme"] * 100.0, "%", "NME against FP32 (bounding-box diagonal)"
    if metric == "mae":
        return figures["mae"], "", "mean absolute error against FP32, in the output's units"
    if metric == "sequence":
        return ((1.0 - figures["timestep_agreement"]) * 100.0, "%",
                f"timesteps that differ from FP32 (whole sequences equal: {figures['sequence_match']:.1%})")
    if metric == "cosine":
        return (1.0 - figures["cosine"]) * 100.0, "%", "1 - cosine similarity with FP32"
    return figures["snr_db"], "dB", "signal-to-noise against FP32"


def passes(output: dict, value: float, limit: float) -> bool:
    return value >= limit if output["metric"] == "snr_db" else value < limit


def quality(output: dict, figures: dict | None) -> float | None:
    """A 0..1 score (higher is better) the regression item compares across runs; None for unit metrics."""
    if not figures or output["metric"] not in QUALITY:
        return None
    labelled, agreed = QUALITY[output["metric"]]
    if labelled and labelled in figures:
        return figures[labelled]
    return figures.get(agreed)


def summary(spec_outputs: list[dict], accuracy: dict | None) -> str:
    """One line for people: each judged output's main figure."""
    outputs = (accuracy or {}).get("outputs") or {}
    parts = []
    for output in spec_outputs:
        figures = outputs.get(output["name"])
        if not figures:
            continue
        score = quality(output, figures)
        if score is not None:
            parts.append(f"{output['name']} {output['metric']} {score:.4f}")
        else:
            key = {"nme": "nme", "mae": "mae", "snr_db": "snr_db"}[output["metric"]]
            parts.append(f"{output['name']} {key} {figures[key]:.4g}")
    return "; ".join(parts) or "-"
