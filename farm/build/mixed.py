"""`int8_mixed`: static INT8 with its most sensitive layers kept in float, as few as the limits allow.

Greedy over the per-layer sensitivity ranking (farm/build/sensitivity.py): keep the
top k layers in float (`nodes_to_exclude`), the fewest k whose every judged output's
host loss is within its limit (k doubled until one is, then bisected: a few builds,
not one per layer), so as much of the graph as possible stays INT8. Each mix is a
real static build on the full calibration set, measured on the host by the spec's
metric. When no mix of up to MAX_FLOAT_SHARE of the layers meets the limits, the
nearest one is still measured, its reason saying so with the best loss reached,
and the boards fail its accuracy item: never a silent pass. The manifest records
which layers stayed in float and why (their sensitivity figures) and every mix tried.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from farm.build.datafile import DataSet
from farm.build.modelfile import ModelInfo
from farm.build.quantizers import Recipe, _build_variant, _host_figures, host_losses
from farm.build.sensitivity import analyse, worst_ratio
from farm.build.spec import ModelSpec
from farm.statuses import BuildStatus

log = logging.getLogger(__name__)

# layers kept in float, at most this share of them: past it the variant is no longer an INT8 model
MAX_FLOAT_SHARE = 0.5


def _losses_text(losses: list[dict]) -> str:
    return ", ".join(f"{r['output']} {r['loss']:.3g}{(' ' + r['unit']) if r['unit'] else ''}" for r in losses
                     if r["loss"] is not None) or "not measured"


def _why(kept: list[dict]) -> dict:
    """Each layer kept in float with the sensitivity figures that put it there."""
    return {layer["layer"]: {k: layer.get(k) for k in ("nodes", "op_types", "sqnr_db", "added_db", "alone")}
            for layer in kept}


def build_mixed(info: ModelInfo, data: DataSet, spec: ModelSpec, recipe: Recipe, count: int, out_dir: Path,
                files: dict, fp32_accuracy: dict | None) -> tuple[dict, dict]:
    """(the int8_mixed manifest entry, the sensitivity analysis it rests on)."""
    if fp32_accuracy is None:  # the reference the losses are taken against, when fp32 itself is not built
        fp32_accuracy = _host_figures(out_dir / f"{info.name}.fp32.onnx", out_dir, files, timing=False).get("accuracy")
    sensitivity = analyse(info, data, spec, recipe, count, out_dir, files, fp32_accuracy)
    ranked = [layer for layer in sensitivity["layers"] if "alone" in layer]  # measured on the judged outputs
    ranked += [layer for layer in sensitivity["layers"] if "alone" not in layer]
    cap = max(1, int(len(ranked) * MAX_FLOAT_SHARE))
    rows: dict[int, dict] = {}
    entries: dict[int, dict] = {}

    def attempt(k: int) -> bool:
        kept = ranked[:k]
        mix = replace(recipe, exclude_nodes=tuple(sorted({*recipe.exclude_nodes,
                                                          *(n for layer in kept for n in layer["nodes"])})))
        log.info(f"build: int8_mixed: {k} of {len(ranked)} layer(s) in float "
                 f"({', '.join(x['layer'] for x in kept[:4])}{', ...' if k > 4 else ''})")
        entries[k] = _build_variant(info, data, spec, "int8_mixed", mix, count, out_dir)
        row = {"float_layers": k, "kept_in_float": [layer["layer"] for layer in kept], "status": entries[k]["status"]}
        if entries[k]["status"] == BuildStatus.OK:
            host = _host_figures(out_dir / entries[k]["file"], out_dir, files, timing=False)
            row["losses"] = host_losses(spec, host, fp32_accuracy)
            row["worst_ratio"] = round(worst_ratio(row["losses"], spec), 4)
            row["within"] = row["worst_ratio"] < 1.0
        rows[k] = row
        return bool(row.get("within"))

    # doubling finds a mix within the limits, bisection the fewest layers in float that still is
    failing, passing, k = 0, None, 1
    while k <= cap:
        if attempt(k):
            passing = k
            break
        failing, k = k, (cap if k < cap < 2 * k else 2 * k)
    while passing is not None and passing - failing > 1:
        middle = (failing + passing) // 2
        if attempt(middle):
            passing = middle
        else:
            failing = middle
    tried = [rows[k] for k in sorted(rows)]
    chosen = (entries[passing], ranked[:passing]) if passing is not None else None
    if chosen is None:
        best = min((r for r in tried if r.get("losses")), default=None, key=lambda r: r["worst_ratio"])
        if best is None:
            entry = {"status": BuildStatus.FAILED, "recipe": recipe.for_variant("int8_mixed"), "notes": [],
                     "reason": f"no mix could be built ({tried[0]['status'] if tried else 'no quantized layer'})"}
            entry["mixed"] = {"within": False, "kept_in_float": [], "tried": tried, "best": None}
            return entry, sensitivity
        # the nearest mix goes to the boards all the same: they measure what it gains and fail its accuracy
        entry, kept = entries[best["float_layers"]], ranked[:best["float_layers"]]
        entry["reason"] = (f"no mix of up to {cap} of {len(ranked)} layers kept in float keeps every judged output "
                           f"within its limit; best: {_losses_text(best['losses'])} with {best['float_layers']} "
                           "layer(s) in float (measured on the boards as it is: its accuracy item fails)")
        entry["mixed"] = {"within": False, "kept_in_float": [layer["layer"] for layer in kept], "why": _why(kept),
                          "tried": tried, "best": best}
        return entry, sensitivity
    entry, kept = chosen
    assert passing is not None  # chosen is set only with a passing mix
    entry["mixed"] = {"within": True, "kept_in_float": [layer["layer"] for layer in kept], "why": _why(kept),
                      "tried": tried, "best": rows[passing]}
    return entry, sensitivity
