"""Checklist items and their evaluation into verdicts, per board and variant.

The library judges; the pytest suite only reports what was judged, so a
verdict is the same in results.json, the JUnit file and the HTML report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import yaml

from farm.errors import ChecklistError
from farm.inventory import Board
from farm.stats import accuracy_loss_pct, latency_change, parse_rule, round_spread

ITEMS: dict[str, dict] = {  # item -> its settings and their defaults
    "opset": {"min": 10},
    "calibration": {"min": 100, "max": 1000},
    "accuracy": {"max_loss_pct": 1.0},
    "latency": {"metric": "p95", "max_ms": 50.0},
    "memory": {"max_mb": 500.0},
    "speedup": {"min_ratio": 1.0, "tolerance_pct": 10.0},
    "regression": {"rule": "p95:10%", "alpha": 0.01, "max_accuracy_drop_points": 0.5,
                   "max_memory_increase_pct": 10.0},
}
LATENCY_METRICS = ("mean", "p50", "p90", "p95", "p99", "max")


@dataclass(frozen=True)
class Verdict:
    item: str
    status: str  # pass | fail | error | skip
    value: float | None = None
    limit: float | str | None = None
    unit: str = ""
    why: str = ""
    details: tuple = ()  # per-figure comparisons of the regression item

    def to_json(self) -> dict:
        doc = asdict(self)
        doc["details"] = list(self.details)
        return doc

    def message(self, board: str, variant: str) -> str:
        shown = f"{self.value:.4g}" if isinstance(self.value, (int, float)) else self.value
        text = f"{board} {variant} {self.item}: {shown} {self.unit} (limit {self.limit} {self.unit})".replace("  ", " ")
        return f"{text}: {self.why}" if self.why else text


@dataclass(frozen=True)
class Checklist:
    name: str
    path: str
    items: dict[str, dict]

    def limits_for(self, board: Board) -> dict[str, dict]:
        """Item settings with the board's (or its class's) budgets applied."""
        items = {k: dict(v) for k, v in self.items.items()}
        if "latency" in items and board.latency_budget_ms is not None:
            items["latency"]["max_ms"] = board.latency_budget_ms
        if "memory" in items and board.memory_budget_mb is not None:
            items["memory"]["max_mb"] = board.memory_budget_mb
        if "regression" in items and board.regression_rule is not None:
            items["regression"]["rule"] = board.regression_rule
        return items

    def describe(self) -> dict:
        return {"name": self.name, "file": self.path, "items": self.items}


def load_checklist(path: str | Path) -> Checklist:
    path = Path(path)
    if not path.is_file():
        raise ChecklistError(f"{path}: checklist file not found")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ChecklistError(f"{path}: YAML syntax: {exc}") from exc
    unknown = set(doc) - {"name", "description", "items", "extends"}
    if unknown or not isinstance(doc.get("items"), dict):
        raise ChecklistError(f"{path}: expected 'name', 'description', 'extends' and an 'items' mapping"
                             + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else ""))
    items = dict(load_checklist(path.parent / doc["extends"]).items) if doc.get("extends") else {}
    for item, settings in doc["items"].items():
        if item not in ITEMS:
            raise ChecklistError(f"{path}: item {item!r}: unknown item; known items: {', '.join(ITEMS)}")
        settings = settings or {}
        bad = set(settings) - set(ITEMS[item])
        if bad:
            raise ChecklistError(f"{path}: item {item!r}: unknown setting(s) {', '.join(sorted(bad))}; "
                                 f"settings: {', '.join(ITEMS[item])}")
        items[item] = {**ITEMS[item], **settings}
    if "regression" in items:
        try:
            parse_rule(items["regression"]["rule"])
        except ValueError as exc:
            raise ChecklistError(f"{path}: item 'regression': {exc}") from exc
    if items.get("latency", {}).get("metric", "p95") not in LATENCY_METRICS:
        raise ChecklistError(f"{path}: item 'latency': metric must be one of {', '.join(LATENCY_METRICS)}")
    return Checklist(str(doc.get("name") or path.stem), str(path), items)


def _agent_errors(doc: dict) -> str:
    return "; ".join(f"{e['stage']}: {e['message']}" for e in doc.get("errors") or []) or "not measured"


def _opset(doc: dict, limits: dict, **_) -> Verdict:
    opset = (doc.get("model") or {}).get("opset")
    if opset is None:
        return Verdict("opset", "error", None, limits["min"], "", f"the agent did not report the opset: {_agent_errors(doc)}")
    return Verdict("opset", "pass" if opset >= limits["min"] else "fail", opset, limits["min"], "",
                   "" if opset >= limits["min"] else f"opset {opset} is below {limits['min']}")


def _calibration(doc: dict, limits: dict, variant: str, manifest: dict, **_) -> Verdict:
    if variant != "int8_static":
        return Verdict("calibration", "skip", why="applies to static INT8 only")
    count = manifest["data"].get("calibration_samples")
    limit = f"{limits['min']}-{limits['max']}"
    if count is None:
        return Verdict("calibration", "error", None, limit, "samples", "the manifest records no calibration")
    ok = limits["min"] <= count <= limits["max"]
    return Verdict("calibration", "pass" if ok else "fail", count, limit, "samples",
                   "" if ok else f"{count} calibration samples is outside {limit}")


def _accuracy(doc: dict, limits: dict, variant: str, manifest: dict, fp32_doc: dict | None, **_) -> Verdict:
    limit = limits["max_loss_pct"]
    if not manifest["data"].get("evaluation_samples"):
        return Verdict("accuracy", "skip", why="the data file has no evaluation set")
    if not doc.get("accuracy"):
        return Verdict("accuracy", "error", None, limit, "%", _agent_errors(doc))
    host_fp32 = (manifest["variants"].get("fp32", {}).get("host") or {}).get("accuracy")
    reference = host_fp32 if variant == "fp32" else ((fp32_doc or {}).get("accuracy") or host_fp32)
    loss = accuracy_loss_pct(doc["accuracy"], reference, manifest["model"].get("task", "classification"))
    if loss is None:
        return Verdict("accuracy", "error", None, limit, "%", "no labels and no FP32 reference to compare with")
    against = "the host's FP32" if variant == "fp32" or reference is host_fp32 else "FP32 on this board"
    ok = loss < limit
    return Verdict("accuracy", "pass" if ok else "fail", round(loss, 4), limit, "%",
                   f"loss against {against}" + ("" if ok else f" is not below {limit} %"))


def _latency(doc: dict, limits: dict, **_) -> Verdict:
    metric, limit = limits["metric"], limits["max_ms"]
    stats = doc.get("latency_ms")
    if not stats:
        return Verdict("latency", "error", None, limit, "ms", _agent_errors(doc))
    value = stats[metric]
    ok = value <= limit
    return Verdict("latency", "pass" if ok else "fail", round(value, 4), limit, "ms",
                   f"{metric} over {stats['n']} runs" + ("" if ok else f" exceeds the {limit} ms budget"))


def _memory(doc: dict, limits: dict, **_) -> Verdict:
    limit, peak = limits["max_mb"], doc.get("peak_rss_mb")
    if peak is None:
        return Verdict("memory", "error", None, limit, "MB", _agent_errors(doc))
    ok = peak < limit
    return Verdict("memory", "pass" if ok else "fail", peak, limit, "MB",
                   "peak RSS (VmHWM)" + ("" if ok else f" is not below {limit} MB"))


def _speedup(doc: dict, limits: dict, variant: str, manifest: dict, fp32_doc: dict | None, **_) -> Verdict:
    if variant == "fp32":
        return Verdict("speedup", "skip", why="compares INT8 variants with FP32")
    if not fp32_doc or not fp32_doc.get("latency_ms"):
        return Verdict("speedup", "skip", why="FP32 was not measured on this board")
    if not doc.get("latency_ms"):
        return Verdict("speedup", "error", None, limits["min_ratio"], "x", _agent_errors(doc))
    ratio = fp32_doc["latency_ms"]["p50"] / doc["latency_ms"]["p50"]
    floor = limits["min_ratio"] * (1 - limits["tolerance_pct"] / 100)
    if ratio >= floor:
        return Verdict("speedup", "pass", round(ratio, 3), limits["min_ratio"], "x", "FP32 p50 / INT8 p50")
    left = manifest["variants"].get(variant, {}).get("float_op_types") or {}
    if left:
        why = "latency not reduced: operators not quantized: " + ", ".join(f"{op} x{n}" for op, n in left.items())
    else:
        why = ("latency not reduced although every compute operator is quantized: the quantize / dequantize "
               "overhead outweighs the INT8 gain at this model size and thread count")
    return Verdict("speedup", "fail", round(ratio, 3), limits["min_ratio"], "x", why)


def _accuracy_figure(accuracy: dict | None) -> float | None:
    accuracy = accuracy or {}
    return accuracy.get("top1", accuracy.get("agreement_with_reference"))


def _regression(doc: dict, limits: dict, baseline: dict | None, **_) -> Verdict:
    """Against the baseline run: latency (threshold and significance), accuracy, memory."""
    if baseline is None:
        return Verdict("regression", "skip", why="no baseline yet for this board, model and variant")
    if not doc.get("samples_ms") or not baseline.get("samples_ms"):
        return Verdict("regression", "error", None, limits["rule"], "", _agent_errors(doc))
    details = []
    for figure, threshold in parse_rule(limits["rule"]):
        # The threshold grows to the noise seen between agent processes (rounds) of either run.
        spreads = [x for x in (round_spread(baseline.get("rounds"), figure), round_spread(doc.get("rounds"), figure))
                   if x is not None]
        effective = max([threshold, *spreads])
        change = latency_change(baseline["samples_ms"], doc["samples_ms"], figure, effective, limits["alpha"])
        details.append({**change, "unit": "ms", "limit": f"+{effective:.1f} %",
                        "noise_pct": max(spreads) if spreads else None})
    base_acc, new_acc = _accuracy_figure(baseline.get("accuracy")), _accuracy_figure(doc.get("accuracy"))
    if base_acc is not None and new_acc is not None:
        drop = (base_acc - new_acc) * 100
        details.append({"figure": "accuracy", "baseline": base_acc, "new": new_acc, "change_pct": -drop,
                        "unit": "points", "limit": f"-{limits['max_accuracy_drop_points']} points",
                        "verdict": "regression" if drop > limits["max_accuracy_drop_points"] else
                        "improvement" if drop < -limits["max_accuracy_drop_points"] else "same"})
    if baseline.get("peak_rss_mb") and doc.get("peak_rss_mb"):
        growth = (doc["peak_rss_mb"] - baseline["peak_rss_mb"]) / baseline["peak_rss_mb"] * 100
        details.append({"figure": "peak_rss_mb", "baseline": baseline["peak_rss_mb"], "new": doc["peak_rss_mb"],
                        "change_pct": growth, "unit": "MB", "limit": f"+{limits['max_memory_increase_pct']} %",
                        "verdict": "regression" if growth > limits["max_memory_increase_pct"] else "same"})
    worse = [d for d in details if d["verdict"] == "regression"]
    better = [d for d in details if d["verdict"] == "improvement"]
    describe = lambda d: (f"{d['figure']} {d['baseline']:.4g} -> {d['new']:.4g} {d['unit']} "  # noqa: E731
                          f"({d['change_pct']:+.1f} %{', p=%.2g' % d['p_value'] if 'p_value' in d else ''})")
    against = f"against run {baseline['run_id']}{' (pinned)' if baseline.get('pinned') else ''}"
    worst = max((d["change_pct"] for d in details if d["unit"] == "ms"), default=None)
    if worse:
        return Verdict("regression", "fail", round(worst, 2) if worst is not None else None, limits["rule"], "%",
                       f"regressed {against}: " + "; ".join(describe(d) for d in worse), tuple(details))
    note = f"no regression {against}" + (f"; improved: {'; '.join(describe(d) for d in better)}" if better else "")
    return Verdict("regression", "pass", round(worst, 2) if worst is not None else None, limits["rule"], "%", note,
                   tuple(details))


EVALUATORS = {"opset": _opset, "calibration": _calibration, "accuracy": _accuracy, "latency": _latency,
              "memory": _memory, "speedup": _speedup, "regression": _regression}


TIMING_ITEMS = ("latency", "speedup", "regression")


def _informational(verdict: Verdict, qemu_cpu: str) -> Verdict:
    """Emulated timing is not silicon timing: keep the figure, judge nothing."""
    if verdict.item not in TIMING_ITEMS or verdict.status not in ("pass", "fail"):
        return verdict
    return replace(verdict, status="skip",
                   why=f"informational: emulated board (QEMU {qemu_cpu}), not silicon timing; "
                       f"measured {verdict.value} {verdict.unit} against {verdict.limit} {verdict.unit}")


def evaluate(checklist: Checklist, board: Board, variants: dict[str, dict], manifest: dict,
             baselines: dict[str, dict] | None = None) -> dict[str, list[Verdict]]:
    """Verdicts for every measured variant of one board (baselines: per variant, from the history)."""
    limits = checklist.limits_for(board)
    fp32_doc = variants.get("fp32")
    verdicts = {variant: [EVALUATORS[item](doc, limits[item], variant=variant, manifest=manifest, fp32_doc=fp32_doc,
                                           baseline=(baselines or {}).get(variant))
                          for item in checklist.items]
                for variant, doc in variants.items()}
    if board.emulated_cpu:
        verdicts = {v: [_informational(c, board.emulated_cpu) for c in checks] for v, checks in verdicts.items()}
    return verdicts
