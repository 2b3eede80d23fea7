"""Checklist items and their evaluation into checks, per board and variant.

The one place a verdict is derived: results.json, the JUnit file, the HTML
report, `farm compare`, the nightly and the sign-off all show what these
functions return. Pure: results and settings in, checks out.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from farm.config.checklist import Checklist, parse_rule
from farm.config.inventory import Board
from farm.config.settings import STATIC_VARIANTS
from farm.judge.accuracy import fp32_self_loss, output_rows, quality
from farm.judge.changes import recent_change
from farm.judge.stats import latency_change, percentile_of, quantile_bounds, round_spread, runs_needed
from farm.results import Baseline, BuildStatus, Check, CheckStatus, ModelResult, VariantResult
from farm.statuses import Change

PASS, FAIL, ERROR, SKIP = CheckStatus.PASS, CheckStatus.FAIL, CheckStatus.ERROR, CheckStatus.SKIP
TIMING_ITEMS = ("latency", "speedup", "regression")
FOREIGN_LOAD = "foreign load"  # the agent's flag of other runnable tasks (agents/farm_agent.py, state_flags)


BUDGETS = {"latency": ("max_ms", "latency_budget_ms"), "memory": ("max_mb", "memory_budget_mb")}


def limits_for(checklist: Checklist, board: Board) -> dict[str, dict]:
    """Item settings for one board, each budget with where it came from (`<setting>_source`).

    Precedence: the board's own inventory entry > the checklist (what it wrote down) > the board
    class's default budget > farm's default. With `limits: stricter` the item takes the strictest of
    them instead. A tighter checklist is never replaced silently by a class's looser default.
    """
    items = {k: dict(v) for k, v in checklist.items.items()}
    for item, (setting, field) in BUDGETS.items():
        if item not in items:
            continue
        budget = getattr(board, field)
        found = []  # (value, source), highest precedence first
        if budget is not None and field not in board.from_class:
            found.append((budget, f"board {board.name}'s inventory entry"))
        if (item, setting) in checklist.explicit:
            found.append((items[item][setting], "the checklist"))
        if budget is not None and field in board.from_class:
            found.append((budget, f"class {board.board_class}'s default"))
        if not found:
            found.append((items[item][setting], "farm's default"))
        value, source = min(found, key=lambda f: f[0]) if items[item].get("limits") == "stricter" else found[0]
        items[item][setting], items[item][f"{setting}_source"] = float(value), source
    if "regression" in items and board.regression_rule is not None:
        items["regression"]["rule"] = board.regression_rule
    if board.standin:  # its cores are the controller's: farm's own work for the other boards loads them
        for item in TIMING_ITEMS:  # farm's default rule only: a checklist that writes `board_state: error` means it
            if items.get(item, {}).get("board_state") == "error" and (item, "board_state") not in checklist.explicit:
                items[item]["foreign_load"] = "warn"
    return items


OVERHEAD_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Cast")


def _no_op(variant: VariantResult, model: ModelResult) -> str | None:
    """Why a variant is not judged as INT8: it quantized nothing."""
    build = model.variants.get(variant.name)
    if build is not None and build.status == BuildStatus.NO_OP:
        return f"{variant.name} quantized nothing (no-op): {build.reason}; not judged as INT8"
    return None


def speedup_ratio(fp32: VariantResult | None, int8: VariantResult | None) -> float | None:
    """FP32 p50 / INT8 p50 on the same board."""
    if not fp32 or not int8 or not fp32.latency_ms or not int8.latency_ms:
        return None
    return fp32.latency_ms["p50"] / int8.latency_ms["p50"]


def speedup_floor(settings: dict) -> float:
    """The lowest ratio that still passes: the minimum less the noise tolerance."""
    return settings["min_ratio"] * (1 - settings["tolerance_pct"] / 100)


def _opset(variant: VariantResult, limits: dict, **_) -> Check:
    if variant.opset is None:
        return Check("opset", ERROR, None, limits["min"], "", f"the agent did not report the opset: "
                     f"{variant.errors_text()}")
    ok = variant.opset >= limits["min"]
    return Check("opset", PASS if ok else FAIL, variant.opset, limits["min"], "",
                 "" if ok else f"opset {variant.opset} is below {limits['min']}")


def _calibration(variant: VariantResult, limits: dict, model: ModelResult, **_) -> Check:
    build = model.variants.get(variant.name)
    calibrated = (variant.name in STATIC_VARIANTS
                  or build is not None and "calibration_samples" in build.recipe)
    if not calibrated:  # static INT8, and the toolchains' calibrated variants (int8_qnn...) record their count
        return Check("calibration", SKIP, why="applies to statically calibrated INT8 only")
    count = model.calibration_samples
    limit = f"{limits['min']}-{limits['max']}"
    if count is None:
        return Check("calibration", ERROR, None, limit, "samples", "the manifest records no calibration")
    ok = limits["min"] <= count <= limits["max"]
    return Check("calibration", PASS if ok else FAIL, count, limit, "samples",
                 "" if ok else f"{count} calibration samples is outside {limit}")


def accuracy_rows(variant: VariantResult, model: ModelResult, reference: dict | None,
                  default_limit: float) -> list[dict]:
    """Each judged output's loss against FP32 (or labels) and its agreement with FP32, limits and verdicts."""
    return [row for output in model.spec.get("outputs", [])
            for row in output_rows(output, (variant.accuracy or {}).get("outputs", {}).get(output["name"]),
                                   (reference or {}).get("outputs", {}).get(output["name"]), default_limit)]


def _accuracy(variant: VariantResult, limits: dict, model: ModelResult, fp32: VariantResult | None, **_) -> Check:
    limit = limits["max_loss_pct"]
    if not model.evaluation_samples:
        return Check("accuracy", SKIP, why="the data file has no evaluation set")
    if (no_op := _no_op(variant, model)) is not None:
        return Check("accuracy", SKIP, why=no_op)
    if not variant.accuracy:
        return Check("accuracy", ERROR, None, limit, "%", variant.errors_text())
    host_build = model.variants.get("fp32")
    host_fp32 = host_build.host.get("accuracy") if host_build else None
    if (problem := fp32_self_loss(host_build.host.get("losses") or [] if host_build else [])) is not None:
        return Check("accuracy", ERROR, None, limit, "%", problem)
    reference = host_fp32 if variant.name == "fp32" else ((fp32.accuracy if fp32 else None) or host_fp32)
    against = "the host's FP32" if variant.name == "fp32" or reference is host_fp32 else "FP32 on this board"
    rows = accuracy_rows(variant, model, reference, limit)
    unjudged = [r for r in rows if r["verdict"] is None]
    if unjudged:
        return Check("accuracy", ERROR, None, limit, "%", f"output {unjudged[0]['output']}: {unjudged[0]['what']}",
                     tuple(rows))
    # The check shows the output nearest its limit (or furthest past it); every output is in the details.
    worst = max(rows, key=lambda r: (r["verdict"] == FAIL, _closeness(r)))
    failed = [r for r in rows if r["verdict"] == FAIL]
    text = "; ".join(f"{r['output']} {r['metric']}: {r['value']:.4g} {r['unit']} ({r['what']}, limit {r['limit']})"
                     .replace("  ", " ") for r in (failed or rows))
    return Check("accuracy", FAIL if failed else PASS, round(worst["value"], 4), worst["limit"], worst["unit"],
                 f"against {against}: {text}", tuple(rows))


def _closeness(row: dict) -> float:
    """How near its limit an output is (1: at it); snr_db is better the higher it is."""
    value, limit = row["value"], row["limit"]
    if row["metric"] == "snr_db":
        return limit / value if value else float("inf")
    return value / limit if limit else float("inf")


def _latency(variant: VariantResult, limits: dict, **_) -> Check:
    """The percentile's bound judged, then what the board's state says of it (the checklist's `board_state`)."""
    return _under_board_state(_latency_figure(variant, limits), (variant.board_state or {}).get("flags") or [],
                              limits, "warn")


def _latency_figure(variant: VariantResult, limits: dict) -> Check:
    """The percentile's upper bound at the checklist's confidence is judged; the point estimate shown beside it."""
    metric, limit = limits["metric"], limits["max_ms"]
    source = f" (limit from {limits.get('max_ms_source', 'the checklist')})"
    stats = variant.latency_ms
    if not stats:
        return Check("latency", ERROR, None, limit, "ms", variant.errors_text())
    point, q, confidence = stats[metric], percentile_of(metric), limits.get("confidence", 0)
    if q is None or not confidence:
        ok = point <= limit
        return Check("latency", PASS if ok else FAIL, round(point, 4), limit, "ms", f"{metric} over {stats['n']} runs"
                     + ("" if ok else f" exceeds the {limit} ms budget") + " (point estimate)" + source)
    bounds = quantile_bounds(variant.samples_ms, q, confidence)
    level = f"{confidence * 100:g} %"
    if bounds["upper"] is None:
        return Check("latency", ERROR, round(point, 4), limit, "ms",
                     f"{bounds['n']} runs cannot bound the {metric} at {level} confidence: it takes at least "
                     f"{runs_needed(q, confidence)} (--runs), or confidence: 0 in the checklist to judge the point "
                     "estimate", details=(bounds,))
    ok = bounds["upper"] <= limit
    interval = f"[{bounds['low']:.4g}, {bounds['high']:.4g}]" if bounds["high"] is not None else "(too few runs)"
    return Check("latency", PASS if ok else FAIL, round(bounds["upper"], 4), limit, "ms",
                 f"{metric} upper bound at {level} confidence over {bounds['n']} runs (point {point:.4g} ms, "
                 f"{level} interval {interval})" + ("" if ok else f" exceeds the {limit} ms budget") + source,
                 details=(bounds,))


def _memory(variant: VariantResult, limits: dict, **_) -> Check:
    limit, peak = limits["max_mb"], variant.peak_rss_mb
    if peak is None:
        return Check("memory", ERROR, None, limit, "MB", variant.errors_text())
    ok = peak < limit
    return Check("memory", PASS if ok else FAIL, peak, limit, "MB",
                 "peak RSS (VmHWM)" + ("" if ok else f" is not below {limit} MB")
                 + f" (limit from {limits.get('max_mb_source', 'the checklist')})")


def _speedup(variant: VariantResult, limits: dict, model: ModelResult, fp32: VariantResult | None, **_) -> Check:
    if variant.name == "fp32":
        return Check("speedup", SKIP, why="compares INT8 variants with FP32")
    if (no_op := _no_op(variant, model)) is not None:
        return Check("speedup", SKIP, why=no_op)
    if not fp32 or not fp32.latency_ms:
        return Check("speedup", SKIP, why="FP32 was not measured on this board")
    ratio = speedup_ratio(fp32, variant)
    if ratio is None:
        return Check("speedup", ERROR, None, limits["min_ratio"], "x", variant.errors_text())
    if ratio >= speedup_floor(limits):
        check = Check("speedup", PASS, round(ratio, 3), limits["min_ratio"], "x", "FP32 p50 / INT8 p50")
    else:
        check = Check("speedup", FAIL, round(ratio, 3), limits["min_ratio"], "x", slow_int8_advice(variant, model))
    flags = [f"{name}: {flag}" for name, run in (("fp32", fp32), (variant.name, variant))
             for flag in (run.board_state or {}).get("flags") or []]
    return _under_board_state(check, flags, limits, "error")


def _under_board_state(check: Check, flags: list[str], limits: dict, default: str) -> Check:
    """A timing verdict as the checklist's `board_state` rule has it: an error, a warning or as if clean.

    On a stand-in (`foreign_load: warn`, set by `limits_for`) a flag of foreign load alone is a warning:
    the other runnable tasks are farm's own work for the other stand-ins on the same cores.
    """
    rule = limits.get("board_state", default)
    if not flags or rule == "ignore" or check.status not in (PASS, FAIL):
        return check
    said = "; ".join(flags)
    if rule == "error" and limits.get("foreign_load") == "warn" and all(FOREIGN_LOAD in f for f in flags):
        return replace(check, why=f"{check.why}; warning: {said} (a stand-in shares the controller's cores with "
                                  f"farm's own work for the other boards)")
    if rule == "error":
        return replace(check, status=ERROR, why=f"measured on a board unfit to be timed ({said}): re-run when it is "
                       f"quiet and at full clock, or set board_state: warn in the checklist; figures: {check.why}")
    return replace(check, why=f"{check.why}; warning: {said}")


def slow_int8_advice(variant: VariantResult, model: ModelResult) -> str:
    """What the profile shows an INT8 variant spending its time on, and which ops stayed in float."""
    build = model.variants.get(variant.name)
    left = build.float_op_types if build else {}
    parts = []
    shares = (variant.profile or {}).get("op_share_pct") or {}
    if shares:
        top = ", ".join(f"{op} {pct:.0f} %" for op, pct in list(shares.items())[:4])
        parts.append(f"the profile shows {top} of run time")
        overhead = sum(pct for op, pct in shares.items() if op in OVERHEAD_OPS)
        if overhead >= 10:
            parts.append(f"quantize / dequantize / cast overhead is {overhead:.0f} % of it")
    if left:
        parts.append("ops left in float: " + ", ".join(f"{op} x{n}" for op, n in left.items()))
    if not parts:
        parts.append("every compute op is quantized and no profile was taken")
    return "latency not reduced: " + "; ".join(parts)


def _offload(variant: VariantResult, limits: dict, **_) -> Check:
    """The share of nodes on the accelerator; a load with CPU fallback disabled is its proof."""
    limit, found = limits["min_node_pct"], variant.offload
    if found is None:
        return Check("offload", SKIP, why=f"no accelerator: the {variant.toolchain or 'cpu'} toolchain runs on the CPU")
    if found.get("node_pct") is None:
        return Check("offload", ERROR, None, limit, "%", found.get("refused") or variant.errors_text())
    share = f"{found['on_accelerator']}/{found['nodes']} nodes on {found['provider']}"
    timed = f", {found['time_pct']:g} % of the profiled time" if found.get("time_pct") is not None else ""
    if found["node_pct"] >= limit and found.get("fallback_disabled"):
        return Check("offload", PASS, found["node_pct"], limit, "%",
                     f"{share}{timed} (loaded with CPU fallback disabled)")
    ops = ", ".join(f"{op} x{n}" for op, n in (found.get("fallen_back") or {}).items()) or "none named"
    free = f"; free dimensions: {', '.join(found['free_dims'])}" if found.get("free_dims") else ""
    refused = f"; with CPU fallback disabled: {found['refused']}" if found.get("refused") else ""
    ok = found["node_pct"] >= limit
    return Check("offload", PASS if ok else FAIL, found["node_pct"], limit, "%",
                 f"{share}{timed}; fell back to the CPU: {ops}{free}{refused}")


def _describe(d: dict) -> str:
    p_value = f", p={d['p_value']:.2g}" if "p_value" in d else ""
    name = f"{d['metric']} level since run {d['began']}" if "began" in d else d["figure"]
    return f"{name} {d['baseline']:.4g} -> {d['new']:.4g} {d['unit']} ({d['change_pct']:+.1f} %{p_value})"


def memory_change(baseline_mb: float | None, new_mb: float | None, max_increase_pct: float) -> dict | None:
    if not baseline_mb or not new_mb:
        return None
    growth = (new_mb - baseline_mb) / baseline_mb * 100
    return {"figure": "peak_rss_mb", "baseline": baseline_mb, "new": new_mb, "change_pct": growth, "unit": "MB",
            "limit": f"+{max_increase_pct} %",
            "verdict": Change.REGRESSION if growth > max_increase_pct else Change.SAME}


def _regression(variant: VariantResult, limits: dict, baseline: Baseline | None, model: ModelResult | None = None,
                **_) -> Check:
    """Against the baseline run: latency (threshold and significance), accuracy, memory."""
    if baseline is None:
        return Check("regression", SKIP, why="no baseline yet for this board, model and variant")
    base = baseline.variant
    outputs = model.spec.get("outputs", []) if model else []
    if not variant.samples_ms or not base.samples_ms:
        return Check("regression", ERROR, None, limits["rule"], "", variant.errors_text())
    details = []
    for figure, threshold in parse_rule(limits["rule"]):
        # The threshold grows to the noise seen between agent processes (rounds) of either run.
        spreads = [x for x in (round_spread(base.rounds, figure), round_spread(variant.rounds, figure))
                   if x is not None]
        effective = max([threshold, *spreads])
        change = latency_change(base.samples_ms, variant.samples_ms, figure, effective, limits["alpha"])
        details.append({**change, "unit": "ms", "limit": f"+{effective:.1f} %",
                        "noise_pct": max(spreads) if spreads else None})
    for output in outputs:
        base_acc = quality(output, ((base.accuracy or {}).get("outputs") or {}).get(output["name"]))
        new_acc = quality(output, ((variant.accuracy or {}).get("outputs") or {}).get(output["name"]))
        if base_acc is None or new_acc is None:
            continue
        drop = (base_acc - new_acc) * 100
        details.append({"figure": f"accuracy {output['name']}", "baseline": base_acc, "new": new_acc,
                        "change_pct": -drop, "unit": "points", "limit": f"-{limits['max_accuracy_drop_points']} points",
                        "verdict": Change.REGRESSION if drop > limits["max_accuracy_drop_points"] else
                        Change.IMPROVEMENT if drop < -limits["max_accuracy_drop_points"] else Change.SAME})
    if limits.get("changes"):
        details += _changes_since(baseline, variant, limits)
    memory = memory_change(base.peak_rss_mb, variant.peak_rss_mb, limits["max_memory_increase_pct"])
    if memory:
        details.append(memory)
    worse = [d for d in details if d["verdict"] == Change.REGRESSION]
    better = [d for d in details if d["verdict"] == Change.IMPROVEMENT]
    against = f"against run {baseline.run_id}{' (pinned)' if baseline.pinned else ''}"
    worst = max((d["change_pct"] for d in details if d["unit"] == "ms"), default=None)
    value = round(worst, 2) if worst is not None else None
    if worse:
        return Check("regression", FAIL, value, limits["rule"], "%",
                     f"regressed {against}: " + "; ".join(_describe(d) for d in worse), tuple(details))
    note = f"no regression {against}" + (f"; improved: {'; '.join(_describe(d) for d in better)}" if better else "")
    return Check("regression", PASS, value, limits["rule"], "%", note, tuple(details))


def _changes_since(baseline: Baseline, variant: VariantResult, limits: dict) -> list[dict]:
    """For each rule figure: a lasting slowdown over the history that began at or after the baseline run."""
    runs = [entry["run_id"] for entry in baseline.series]
    if baseline.run_id not in runs or not variant.latency_ms:
        return []
    found = []
    for figure, _ in parse_rule(limits["rule"]):
        values = [entry.get(figure) for entry in baseline.series] + [variant.latency_ms.get(figure)]
        if any(v is None for v in values):
            continue
        change = recent_change(values, runs.index(baseline.run_id), alpha=limits["change_alpha"],
                               min_change_pct=limits["change_min_pct"])
        if change is not None:
            began = runs[change.index] if change.index < len(runs) else "this run"
            found.append({"figure": "change since baseline", "metric": figure, "baseline": change.before,
                          "new": change.after, "change_pct": change.change_pct, "p_value": change.p_value,
                          "began": began, "unit": "ms", "limit": f"+{limits['change_min_pct']:g} %, "
                          f"p <= {limits['change_alpha']:g}", "verdict": Change.REGRESSION})
    return found


EVALUATORS: dict[str, Callable[..., Check]] = {
    "opset": _opset, "calibration": _calibration, "accuracy": _accuracy, "latency": _latency, "memory": _memory,
    "speedup": _speedup, "regression": _regression, "offload": _offload}


def _informational(check: Check, emulation: str) -> Check:
    """Emulated or simulated timing is not silicon timing: keep the figure, judge nothing."""
    if check.item not in TIMING_ITEMS or check.status not in (PASS, FAIL):
        return check
    return replace(check, status=SKIP,
                   why=f"informational: {emulation}, not silicon timing; "
                       f"measured {check.value} {check.unit} against {check.limit} {check.unit}")


def untimed(emulated_cpu: str | None, variant: VariantResult) -> str | None:
    """Why a variant's timing is no silicon timing (an emulated CPU, a simulated accelerator); None when it is."""
    return f"emulated board (QEMU {emulated_cpu})" if emulated_cpu else variant.simulated


def judge(limits: dict[str, dict], emulated_cpu: str | None, variants: dict[str, VariantResult], model: ModelResult,
          baselines: dict[str, Baseline] | None = None) -> dict[str, list[Check]]:
    """Checks from a board's limits (item -> settings, in checklist order) and its raw figures.

    What the run did, and what a sign-off does again from the recorded figures.
    """
    fp32 = variants.get("fp32")
    checks = {}
    for name, variant in variants.items():  # an emulated CPU times nothing; a simulated accelerator times its variant
        emulation = untimed(emulated_cpu, variant)
        # timing that is not judged is not judged under its board's state either (an emulated speedup was an error)
        settings_of = {item: {**settings, "board_state": "ignore"} if emulation and item in TIMING_ITEMS else settings
                       for item, settings in limits.items()}
        found = [EVALUATORS[item](variant, settings, model=model, fp32=fp32, baseline=(baselines or {}).get(name))
                 for item, settings in settings_of.items()]
        checks[name] = [_informational(c, emulation) for c in found] if emulation else found
    return checks


def unavailable(checks: dict[str, list[Check]], item: str, why: str) -> dict[str, list[Check]]:
    """The same checks with `item` turned into an error: what could not be judged, and why."""
    return {v: [replace(c, status=ERROR, why=why) if c.item == item else c for c in found]
            for v, found in checks.items()}
