"""What a judged output's figures mean: its loss against FP32 (or labels), and its quality score.

The agent reports raw figures per output (agreement, top-1 on labels, IoU, NME,
MAE, ...); the metric named in the model spec decides which figure is the loss
and in which unit. The checklist's accuracy item, the recipe search, the
regression item and the report all read them through here.
"""

from __future__ import annotations

from farm.statuses import BuildStatus, CheckStatus

# the figure that says "how good", higher is better, per metric: (with labels, against FP32)
QUALITY = {"top1": ("top1", "agreement"), "binary": ("accuracy", "agreement"), "iou": (None, "iou"),
           "sequence": (None, "timestep_agreement"), "cosine": (None, "cosine"), "detection": ("map50", "recall"),
           "ctc": ("label_match", "string_match")}


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
    if metric == "detection":
        return _detection_loss(output, figures, fp32)
    if metric == "ctc":
        if output.get("labels") and "label_cer" in figures and fp32 and "label_cer" in fp32:
            return ((figures["label_cer"] - fp32["label_cer"]) * 100.0, "%",
                    f"CER rise on labels against FP32 (CER {figures['label_cer']:.2%}, FP32 {fp32['label_cer']:.2%})")
        if "string_match" not in figures:
            return None, "%", "no labels and no FP32 reference"
        return ((1.0 - figures["string_match"]) * 100.0, "%",
                f"decoded strings that differ from FP32 (CER against FP32 {figures['cer']:.2%})")
    return figures["snr_db"], "dB", "signal-to-noise against FP32"


def _detection_loss(output: dict, figures: dict, fp32: dict | None) -> tuple[float | None, str, str]:
    if output.get("labels") and "map50" in figures and fp32 and "map50" in fp32:
        return ((fp32["map50"] - figures["map50"]) * 100.0, "%",
                f"mAP@0.5 drop on labels against FP32 (mAP {figures['map50']:.4f}, FP32 {fp32['map50']:.4f})")
    if "recall" not in figures:
        return (None, "%", f"FP32 finds no detection above score_threshold {output.get('score_threshold', 0.25)}: "
                "nothing to match (lower it, or check boxes / scores / anchors_axis)")
    return ((1.0 - min(figures["recall"], figures["precision"])) * 100.0, "%",
            f"detections lost or added against FP32 (recall {figures['recall']:.2%}, precision "
            f"{figures['precision']:.2%}, {figures['fp32_detections']} FP32 detections)")


def agreement(output: dict, figures: dict | None) -> float | None:
    """How often a labelled output's decisions are FP32's (0..1): what a label score can hide."""
    if not figures:
        return None
    if output["metric"] == "detection":
        return min(figures["recall"], figures["precision"]) if "recall" in figures else None
    return figures.get("string_match" if output["metric"] == "ctc" else "agreement")


def output_rows(output: dict, figures: dict | None, fp32: dict | None, default_limit: float) -> list[dict]:
    """One output's judged rows: its loss, and for a labelled figure its agreement with FP32 beside it
    (decisions that flip against FP32 fail even when the label score holds)."""
    value, unit, what = output_loss(output, figures, fp32)
    key = "min_db" if output["metric"] == "snr_db" else "max_loss" if output["metric"] == "mae" else "max_loss_pct"
    limit = float(output[key]) if output.get(key) is not None else default_limit
    rows = [_row(output, output["metric"], value, limit, unit, what)]
    if "on labels" in what:
        agreed = agreement(output, figures)
        flip_limit = output.get("max_disagreement_pct")
        flip_limit = flip_limit if flip_limit is not None else default_limit
        if agreed is None:
            rows.append(_row(output, "agreement", None, flip_limit, "%", "no agreement with FP32 measured"))
        else:
            rows.append(_row(output, "agreement", (1.0 - agreed) * 100.0, flip_limit, "%",
                             "decisions that differ from FP32's"))
    return rows


def _row(output: dict, metric: str, value: float | None, limit: float, unit: str, what: str) -> dict:
    verdict = (None if value is None
               else CheckStatus.PASS if passes({"metric": metric}, value, limit) else CheckStatus.FAIL)
    return {"output": output["name"], "metric": metric, "value": value, "limit": limit, "unit": unit, "what": what,
            "verdict": verdict}


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


SELF_TOLERANCE = {"%": 1e-3, "": 1e-4}  # FP32 against itself: threads may move the last float bits, no more


def fp32_self_loss(rows: list[dict]) -> str | None:
    """FP32 against its own reference is 0 by construction: a loss there is a feeding or layout bug."""
    for row in rows:
        value, unit = row["loss"], row["unit"]
        if value is None:
            continue
        if unit == "dB" and value < 80 or unit in SELF_TOLERANCE and abs(value) > SELF_TOLERANCE[unit]:
            return (f"FP32 against its own reference on the host: {row['output']} {row['metric']} {value:.4g} "
                    f"{unit}".rstrip() + " where 0 is by construction: the evaluation set is not fed, or the output "
                    "not read, as the reference was (check batch_axis against the shape the output returns)")
    return None


def build_failures(variants: dict[str, dict], requested: list[str]) -> list[str]:
    """Why `farm quantize` exits 1: a variant that failed to build, or a host loss past its limit.

    A no-op (quantized nothing) is reported, not a failure, unless it is the only INT8 variant asked for.
    """
    int8 = [v for v in requested if v != "fp32"]
    found = []
    problem = fp32_self_loss(((variants.get("fp32") or {}).get("host") or {}).get("losses") or [])
    if problem:
        found.append(f"fp32: {problem}")
    for name, entry in variants.items():
        if entry["status"] == BuildStatus.FAILED or entry["status"] == BuildStatus.NO_OP and int8 == [name]:
            found.append(f"{name}: {entry['status']} ({entry['reason']})")
        if entry["status"] == BuildStatus.NO_OP:
            continue
        for row in (entry.get("host") or {}).get("losses", []):
            if row["ok"] is False:
                found.append(f"{name}: {row['output']} {row['metric']} loss {row['loss']:.4g} {row['unit']} is past "
                             f"its limit {row['limit']}".replace("  ", " "))
        if (entry.get("host") or {}).get("error"):
            found.append(f"{name}: not measured on the host ({entry['host']['error']})")
    return found
