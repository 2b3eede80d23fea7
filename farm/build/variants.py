"""Validate an FP32 ONNX model and build its deployment variants with a manifest.

Variants: `fp32` (the model as given), `int8_dynamic` (weights INT8, activations
quantized at run time; by default only MatMul/Gemm, because dynamically quantized
convolutions run several times slower than FP32 on x86), `int8_static` (QDQ,
calibrated on real samples from the data file). Every built file is keyed by
the model's sha256, the recipe and the data's sha256, so an unchanged rebuild
reuses it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import onnx
import onnxruntime as ort

from farm.board.agent import run_agent_here
from farm.build.datafile import DataSet, TensorSpec, load_data
from farm.build.modelfile import ModelInfo, default_opset, float_op_types, inspect_model
from farm.config.settings import CALIBRATION_METHODS, VARIANTS, Measurement
from farm.errors import AgentError, ModelError
from farm.judge.stats import accuracy_loss_pct
from farm.results import ModelResult, VariantBuild
from farm.util import file_sha256, write_json_atomic

CALIBRATION_RANGE = (100, 1000)
PER_CHANNEL_MIN_OPSET = 13  # DequantizeLinear has no `axis` before opset 13
CONVERT_TO_OPSET = 17
# Pseudo op type for recipes: Conv nodes with group > 1 (depthwise), which quantize badly.
DEPTHWISE = "DepthwiseConv"
SEARCH_EXCLUSIONS = ((), ("PRelu",), (DEPTHWISE,), ("PRelu", DEPTHWISE))
HOST_MEASUREMENT = Measurement(warmup=10, runs=50, threads=1)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Recipe:
    """How the INT8 variants are built; recorded in full in the manifest."""

    per_channel: bool = True
    calibration_method: str = "minmax"
    calibration_samples: int | None = None  # None: every calibration sample in the data file
    exclude_op_types: tuple[str, ...] = ()
    dynamic_op_types: tuple[str, ...] = ("MatMul", "Gemm")

    def for_variant(self, variant: str) -> dict:
        if variant == "int8_dynamic":
            return {"weight_type": "QInt8", "op_types": list(self.dynamic_op_types)}
        if variant == "int8_static":
            return {"format": "QDQ", "weight_type": "QInt8", "activation_type": "QUInt8",
                    "per_channel": self.per_channel, "calibration_method": self.calibration_method,
                    "calibration_samples": self.calibration_samples,
                    "exclude_op_types": list(self.exclude_op_types)}
        return {}


def _excluded_nodes(model: onnx.ModelProto, op_types: Iterable[str]) -> list[str]:
    wanted = set(op_types)
    names = []
    for node in model.graph.node:
        depthwise = node.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in node.attribute)
        if node.op_type in wanted or (DEPTHWISE in wanted and depthwise):
            names.append(node.name)
    return names


class _Calibration:
    """onnxruntime CalibrationDataReader over real samples, in small batches where allowed."""

    def __init__(self, arrays: dict[str, np.ndarray], inputs: list[TensorSpec], count: int):
        # Equal batches: the histogram calibrators (entropy, percentile) cannot stack a short last one.
        dynamic = all(not isinstance(s.shape[0], int) for s in inputs)
        batch = max(b for b in range(1, 17) if count % b == 0) if dynamic else 1
        self._batches = iter([{s.name: arrays[s.name][i:i + batch].astype(s.dtype) for s in inputs}
                              for i in range(0, count, batch)])

    def get_next(self):
        return next(self._batches, None)


def _ensure_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every node a name: exclusions and reports refer to nodes by name."""
    for index, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{index}"
    return model


def _build_static(info: ModelInfo, data: DataSet, recipe: Recipe, target: Path, notes: list[str]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = _ensure_names(onnx.ModelProto.FromString(info.proto.SerializeToString()))
    if recipe.per_channel and info.opset < PER_CHANNEL_MIN_OPSET:
        model = onnx.version_converter.convert_version(model, CONVERT_TO_OPSET)
        notes.append(f"converted from opset {info.opset} to {CONVERT_TO_OPSET}: per-channel QDQ needs "
                     f"opset >= {PER_CHANNEL_MIN_OPSET}")
    with tempfile.TemporaryDirectory(prefix="farm-quant-") as tmp:
        source, prepared = Path(tmp) / "source.onnx", Path(tmp) / "prepared.onnx"
        onnx.save(model, str(source))
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        except Exception as exc:  # seen on real exports; quantizing the raw model still works
            notes.append(f"quant_pre_process failed ({exc}); quantized the model without it")
            shutil.copy(source, prepared)
        methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                   "percentile": CalibrationMethod.Percentile}
        count = min(recipe.calibration_samples or data.calibration_count, data.calibration_count)
        quantize_static(str(prepared), str(target), _Calibration(data.calibration, info.inputs, count),
                        quant_format=QuantFormat.QDQ, per_channel=recipe.per_channel,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=methods[recipe.calibration_method],
                        nodes_to_exclude=_excluded_nodes(model, recipe.exclude_op_types))


def _build_dynamic(info: ModelInfo, recipe: Recipe, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(info.path), str(target), weight_type=QuantType.QInt8,
                     op_types_to_quantize=list(recipe.dynamic_op_types) or None)


def _cache_key(info: ModelInfo, variant: str, recipe: Recipe, data_sha: str) -> str:
    key = {"model": info.sha256, "variant": variant, "recipe": recipe.for_variant(variant),
           "data": data_sha if variant == "int8_static" else None, "onnxruntime": ort.__version__}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _build_variant(info: ModelInfo, data: DataSet, data_sha: str, variant: str, recipe: Recipe,
                   out_dir: Path) -> dict:
    """Build (or reuse) one variant; a failure is recorded, never raised."""
    entry: dict = {"status": "ok", "reason": None, "recipe": recipe.for_variant(variant), "notes": []}
    if variant == "fp32":
        target = out_dir / f"{info.name}.fp32.onnx"
        if not target.exists() or file_sha256(target) != info.sha256:
            shutil.copy(info.path, target)
        entry["cached"] = False
    else:
        target = out_dir / f"{info.name}.{variant}.{_cache_key(info, variant, recipe, data_sha)[:16]}.onnx"
        entry["cached"] = target.exists()
        if not target.exists():
            partial = target.with_suffix(".partial.onnx")
            try:
                if variant == "int8_dynamic":
                    _build_dynamic(info, recipe, partial)
                else:
                    _build_static(info, data, recipe, partial, entry["notes"])
                ort.InferenceSession(str(partial), providers=["CPUExecutionProvider"])
            except Exception as exc:
                partial.unlink(missing_ok=True)
                return {**entry, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
            partial.replace(target)
    entry.update(file=target.name, sha256=file_sha256(target), size_bytes=target.stat().st_size,
                 opset=default_opset(onnx.load(str(target), load_external_data=False)),
                 float_op_types=float_op_types(target))
    return entry


def write_reference(info: ModelInfo, data: DataSet, out_dir: Path) -> dict | None:
    """FP32 outputs on the evaluation set: what the agent's agreement check compares with."""
    if not data.evaluation:
        return None
    session = ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"])
    feeds = {s.name: data.evaluation[s.name].astype(s.dtype) for s in info.inputs}
    batched = all(not isinstance(s.shape[0], int) for s in info.inputs)
    step = 64 if batched else 1
    chunks = [session.run(None, {k: v[i:i + step] for k, v in feeds.items()})
              for i in range(0, data.evaluation_count, step)]
    outputs = {o.name: np.concatenate([c[i] for c in chunks]) for i, o in enumerate(session.get_outputs())}
    target = out_dir / f"{info.name}.reference.npz"
    np.savez(target, **outputs)
    return {"file": target.name, "sha256": file_sha256(target)}


def _host_figures(model: Path, data: DataSet, reference: Path | None) -> dict:
    """Host-side indication: the agent run on the controller (never the verdict)."""
    try:
        doc = run_agent_here(model, HOST_MEASUREMENT, data=data.path, reference=reference)
    except AgentError as exc:
        return {"error": str(exc)}
    if doc["errors"]:
        return {"error": "; ".join(e["message"] for e in doc["errors"])}
    return {"p50_ms": doc["latency_ms"]["p50"], "threads": HOST_MEASUREMENT.threads,
            "peak_rss_mb": doc["peak_rss_mb"], "accuracy": doc["accuracy"]}


def _check_calibration(data: DataSet, recipe: Recipe, allow: bool) -> int:
    count = min(recipe.calibration_samples or data.calibration_count, data.calibration_count)
    low, high = CALIBRATION_RANGE
    if not allow and not low <= count <= high:
        raise ModelError(f"{data.path}: static INT8 calibration would use {count} samples; the checklist asks "
                         f"for {low}-{high} real samples (use --calibration-samples, or "
                         f"--allow-calibration-count to build anyway)")
    return count


def _search_recipes(info: ModelInfo, data: DataSet, data_sha: str, base: Recipe, target_loss: float,
                    out_dir: Path, reference: Path | None, task: str, fp32_accuracy: dict | None,
                    progress: Progress) -> tuple[Recipe, list[dict]]:
    """Try static recipes; keep the fastest on the host whose loss stays within the target."""
    tried = []
    candidates = [replace(base, calibration_method=m, per_channel=pc, exclude_op_types=ex)
                  for m in CALIBRATION_METHODS for pc in (True, False) for ex in SEARCH_EXCLUSIONS
                  if not ex or _excluded_nodes(info.proto, ex)]
    for index, recipe in enumerate(candidates, 1):
        progress(f"recipe search {index}/{len(candidates)}: {recipe.for_variant('int8_static')}")
        entry = _build_variant(info, data, data_sha, "int8_static", recipe, out_dir)
        row = {"recipe": recipe.for_variant("int8_static"), "status": entry["status"], "reason": entry["reason"]}
        if entry["status"] == "ok":
            host = _host_figures(out_dir / entry["file"], data, reference)
            row.update(p50_ms=host.get("p50_ms"),
                       loss_pct=accuracy_loss_pct(host.get("accuracy"), fp32_accuracy, task))
        tried.append((recipe, row))
    within = [(r, row) for r, row in tried if row.get("loss_pct") is not None and row["loss_pct"] <= target_loss
              and row.get("p50_ms") is not None]
    if not within:
        raise ModelError(f"{info.path}: no static INT8 recipe stays within {target_loss} % loss "
                         f"({len(tried)} tried; see the manifest's recipe_search)")
    chosen, chosen_row = min(within, key=lambda pair: pair[1]["p50_ms"])
    chosen_row["chosen"] = True
    return chosen, [row for _, row in tried]


def check_variants(variants: Iterable[str]) -> list[str]:
    variants = list(variants)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ModelError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    return variants


def build_variants(info: ModelInfo, data: DataSet, out_dir: str | Path, *, variants: Iterable[str] = VARIANTS,
                   recipe: Recipe = Recipe(), task: str | None = None, allow_calibration_count: bool = False,
                   target_loss: float | None = None, host_figures: bool = True,
                   progress: Progress = lambda message: None) -> dict:
    """Build (or reuse) the variants of an inspected model into out_dir; return the manifest."""
    variants = check_variants(variants)
    if recipe.calibration_method not in CALIBRATION_METHODS:
        raise ModelError(f"unknown calibration method {recipe.calibration_method!r}; "
                         f"choose from {', '.join(CALIBRATION_METHODS)}")
    data_sha = data.sha256
    task = task or ("classification" if data.labels is not None else "regression")
    calibration_count = None
    if "int8_static" in variants:
        if not data.calibration:
            raise ModelError(f"{data.path}: static INT8 needs a 'calibration' set of real samples")
        calibration_count = _check_calibration(data, recipe, allow_calibration_count)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    progress(f"model {info.name}: opset {info.opset}, sha256 {info.sha256[:12]}")
    reference = write_reference(info, data, out_dir)
    reference_path = out_dir / reference["file"] if reference else None
    shutil.copy(data.path, out_dir / f"{info.name}.data.npz")

    manifest: dict = {
        "schema": "farm.manifest/1", "model": {**info.describe(), "task": task},
        "data": {"file": f"{info.name}.data.npz", "source": str(data.path), "sha256": data_sha,
                 "calibration_samples": calibration_count, "evaluation_samples": data.evaluation_count,
                 "labels": data.labels is not None},
        "reference": reference, "onnxruntime": ort.__version__, "variants": {},
    }
    fp32_accuracy = None
    for variant in sorted(variants, key=VARIANTS.index):
        variant_recipe = recipe
        if variant == "int8_static" and target_loss is not None:
            variant_recipe, manifest["recipe_search"] = _search_recipes(
                info, data, data_sha, recipe, target_loss, out_dir, reference_path, task, fp32_accuracy, progress)
        progress(f"building {variant}")
        entry = _build_variant(info, data, data_sha, variant, variant_recipe, out_dir)
        if variant == "int8_static":
            entry["recipe"]["calibration_samples"] = calibration_count
        if entry["status"] == "ok" and host_figures:
            entry["host"] = _host_figures(out_dir / entry["file"], data, reference_path)
            if variant == "fp32":
                fp32_accuracy = entry["host"].get("accuracy")
            entry["host"]["loss_pct"] = accuracy_loss_pct(entry["host"].get("accuracy"), fp32_accuracy, task)
        manifest["variants"][variant] = entry
        progress(f"{variant}: {entry['status']}" + (f" ({entry['reason']})" if entry["reason"] else ""))
    return manifest


def build(model_path: str | Path, data_path: str | Path, out_dir: str | Path, **options) -> dict:
    """`farm quantize`: validate, build the variants into out_dir and write out_dir/manifest.json."""
    info = inspect_model(model_path)
    manifest = build_variants(info, load_data(data_path, info.inputs), out_dir, **options)
    write_json_atomic(Path(out_dir) / "manifest.json", manifest)
    return manifest


def model_result(manifest: dict) -> ModelResult:
    """What a run's results say about the model, from its manifest."""
    model, data = manifest.get("model", {}), manifest.get("data", {})
    return ModelResult(
        name=model.get("name"), sha256=model.get("sha256"), task=model.get("task"), opset=model.get("opset"),
        calibration_samples=data.get("calibration_samples"), evaluation_samples=data.get("evaluation_samples"),
        labels=bool(data.get("labels")),
        variants={v: VariantBuild.from_json(e) for v, e in manifest.get("variants", {}).items()})
