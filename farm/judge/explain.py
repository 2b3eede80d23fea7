"""Why an INT8 variant failed its accuracy item: the layers that lose it, beside what the board spends.

Pure: reads the judged board, the model's sensitivity analysis and int8_mixed's
build. Each failing INT8 variant gets the TOP most sensitive layers (their SQNR,
what each alone does to the judged outputs), the share of the board's time its
op types take in that variant's profile, and what int8_mixed kept in float and
gained on the same board (its accuracy verdict, its speedup against FP32 and
against the failing variant).
"""

from __future__ import annotations

from farm.judge.items import speedup_ratio
from farm.results import BoardResult, CheckStatus, ExplainedLayer, Explanation, ModelResult

TOP = 5


def _share(op_types: list[str], profile: dict | None) -> float | None:
    """The share of the board's time in kernels of these op types: as onnxruntime runs them, a quantized
    Conv is a QLinearConv, a float Conv with its Relu a FusedConv."""
    shares = (profile or {}).get("op_share_pct") or {}
    if not shares:
        return None
    kernels = {name for op in op_types for name in (op, f"QLinear{op}", f"Fused{op}", f"{op}Integer")}
    return round(sum(shares.get(name, 0.0) for name in kernels), 2)


def explain(board: BoardResult, model: ModelResult) -> list[Explanation]:
    """One explanation per INT8 variant of this board whose accuracy check failed."""
    found = []
    mixed_build = model.variants.get("int8_mixed")
    mixed = board.variants.get("int8_mixed")
    fp32 = board.variants.get("fp32")
    for name, variant in board.variants.items():
        check = variant.check("accuracy")
        if name == "fp32" or check is None or check.status != CheckStatus.FAIL:
            continue
        layers = [ExplainedLayer(layer.layer, list(layer.op_types), layer.sqnr_db, layer.added_db,
                                 [{k: r.get(k) for k in ("output", "loss", "unit")}
                                  for r in (layer.alone or {}).get("losses", [])],
                                 _share(layer.op_types, variant.profile))
                  for layer in (model.sensitivity.layers[:TOP] if model.sensitivity else [])]
        entry = Explanation(board.name, name, check.why, layers)
        if mixed_build is not None and name != "int8_mixed":
            entry.mixed_status, entry.mixed_reason = mixed_build.status, mixed_build.reason
            entry.kept_in_float = list(mixed_build.mixed.kept_in_float) if mixed_build.mixed else []
            mixed_check = mixed.check("accuracy") if mixed else None
            if mixed_check is not None:
                entry.mixed_accuracy, entry.mixed_value = mixed_check.status.value, mixed_check.value
            ratio = speedup_ratio(fp32, mixed)
            entry.speedup_vs_fp32 = round(ratio, 3) if ratio else None
            ratio = speedup_ratio(variant, mixed)
            entry.speedup_vs_variant = round(ratio, 3) if ratio else None
        found.append(entry)
    return found
