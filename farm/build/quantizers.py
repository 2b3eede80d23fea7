"""One variant of a model built from a recipe, cached by what it depends on, and measured on the host.

Variants: `fp32` (the model as given), `int8_dynamic` (weights INT8, activations
quantized at run time; by default only MatMul/Gemm, because dynamically quantized
convolutions run several times slower than FP32 on x86), `int8_static` (QDQ,
calibrated on real samples), and a toolchain's own (farm/build/toolchains/). A variant
that quantized nothing is recorded `no-op` with the reason, never passed off as INT8;
its entry counts the ops of each type it quantized.

Calibration is fed exactly as the model spec feeds the model (deployment batch,
constants, the state a stream really carries, through the FP32 model) and is
collected by onnxruntime chunk by chunk (`CalibStridedMinMax`), so memory is
bounded by a chunk, not the calibration set. Every built file is keyed by what it
depends on, so an unchanged rebuild reuses it. Below `variants` (the set a run asks
for and its manifest), `sensitivity` and `mixed`, which all build here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import onnx
import onnxruntime as ort

from farm.board.agent import AgentFiles, library, run_agent_here
from farm.build.datafile import DataSet
from farm.build.modelfile import LAYOUT_OPS, ModelInfo, default_opset, graphs, quantization_census
from farm.build.spec import ModelSpec
from farm.build.toolchains import builder, built_for
from farm.config.checklist import ITEMS
from farm.config.settings import FLOAT_VARIANTS, STATIC_VARIANTS, Measurement
from farm.errors import AgentError
from farm.judge.accuracy import output_rows
from farm.statuses import BuildStatus, CheckStatus
from farm.util import file_sha256

PER_CHANNEL_MIN_OPSET = 13  # DequantizeLinear has no `axis` before opset 13
CONVERT_TO_OPSET = 17
CALIBRATION_CHUNK = 8  # steps onnxruntime collects before merging: 149 MB a 640x640 sample for entropy
# Pseudo op type for recipes: Conv nodes with group > 1 (depthwise), which quantize badly.
DEPTHWISE = "DepthwiseConv"
HOST_MEASUREMENT = Measurement(warmup=10, runs=50, threads=1)

log = logging.getLogger(__name__)


def calibrated(variant: str) -> bool:
    """Built from the data file's calibration set: farm's static INT8 variants and the toolchains' own
    (int8_qnn, int8_trt...). What needs a calibration count in range, and what its cache key depends on."""
    return variant in STATIC_VARIANTS or variant in getattr(builder(variant), "calibrated", ())


@dataclass(frozen=True)
class Recipe:
    """How the INT8 variants are built; recorded in full in the manifest."""

    per_channel: bool = True
    calibration_method: str = "minmax"
    calibration_samples: int | None = None  # None: every calibration sample in the data file
    exclude_op_types: tuple[str, ...] = ()
    exclude_nodes: tuple[str, ...] = ()
    dynamic_op_types: tuple[str, ...] = ("MatMul", "Gemm")

    def for_variant(self, variant: str) -> dict:
        if variant == "int8_dynamic":
            return {"weight_type": "QInt8", "op_types": list(self.dynamic_op_types), "subgraphs": True,
                    "constants_folded": True}
        if variant in STATIC_VARIANTS:
            return {"format": "QDQ", "weight_type": "QInt8", "activation_type": "QUInt8",
                    "per_channel": self.per_channel, "calibration_method": self.calibration_method,
                    "calibration_samples": self.calibration_samples,
                    "exclude_op_types": list(self.exclude_op_types), "exclude_nodes": list(self.exclude_nodes)}
        found = builder(variant)
        return found.recipe(variant) if found else {}


def op_counts(path: Path) -> dict[str, int]:
    """Every op type in a model, subgraphs included."""
    counts: dict[str, int] = {}
    for graph in graphs(onnx.load(str(path), load_external_data=False).graph):
        for node in graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def _no_op_reason(variant: str, recipe: Recipe, source: Path) -> str:
    ops = op_counts(source)
    compute = {op: n for op, n in ops.items() if op not in LAYOUT_OPS}
    listed = ", ".join(f"{op} x{n}" for op, n in compute.items()) or "none"
    if variant == "int8_dynamic":
        wanted = [op for op in recipe.dynamic_op_types if op in ops]
        if not wanted:
            return (f"the model has no {' or '.join(recipe.dynamic_op_types)} (its compute ops: {listed}); dynamic "
                    "INT8 quantizes only those (dynamically quantized Conv ran 4.7x slower than FP32 here)")
        return (f"its {', '.join(f'{op} x{ops[op]}' for op in wanted)} take no constant weights onnxruntime can "
                "quantize (weights computed at run time)")
    return f"no op took quantize / dequantize pairs (compute ops: {listed})"


def _excluded_nodes(model: onnx.ModelProto, op_types: Iterable[str]) -> list[str]:
    wanted = set(op_types)
    names = []
    for node in model.graph.node:
        depthwise = node.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in node.attribute)
        if node.op_type in wanted or (DEPTHWISE in wanted and depthwise):
            names.append(node.name)
    return names


class _Calibration:
    """onnxruntime's CalibrationDataReader over the real calibration samples, fed as the spec says.

    One deployment batch per step, with the state a stream really carries (run
    through the FP32 model). `set_range` lets onnxruntime collect chunk by chunk
    (CalibStridedMinMax): memory stays bounded by a chunk, whatever the count.
    """

    def __init__(self, fp32: Path, spec: dict, arrays: dict[str, np.ndarray], count: int | None):  # None: all
        self.feeder = library.Feeder(np, spec, {name: a[:count] for name, a in arrays.items()})
        stateful = any(i["source"] == "state" for i in spec["inputs"])
        self.session = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]) if stateful else None
        self.names = [o.name for o in self.session.get_outputs()] if self.session else []
        self.starts = list(self.feeder.steps())
        self.position, self.end = 0, len(self.starts)

    def __len__(self) -> int:
        return len(self.starts)

    def _next_feeds(self) -> dict:
        feeds = dict(self.feeder.feed(self.starts[self.position]))
        if self.session is not None:
            self.feeder.carry(dict(zip(self.names, self.session.run(self.names, feeds))))
        self.position += 1
        return feeds

    def set_range(self, start_index: int, end_index: int) -> None:
        if start_index < self.position:  # a stream restarts from its first step
            self.feeder.reset()
            self.position = 0
        while self.position < start_index:
            self._next_feeds()
        self.end = end_index

    def get_next(self):
        return self._next_feeds() if self.position < min(self.end, len(self.starts)) else None


def _chunk(steps: int) -> int:
    """The largest chunk of at most CALIBRATION_CHUNK steps that divides the steps evenly."""
    return max(c for c in range(1, min(CALIBRATION_CHUNK, steps) + 1) if steps % c == 0)


def _ensure_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every node a name: exclusions and reports refer to nodes by name."""
    for index, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{index}"
    return model


def _build_static(info: ModelInfo, data: DataSet, spec: dict, recipe: Recipe, count: int | None, fp32: Path,
                  target: Path, notes: list[str], keep_names: bool = False) -> None:
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
        try:  # with nodes excluded by name, no optimization may rename them
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True,
                              skip_optimization=bool(recipe.exclude_nodes) or keep_names)
        except Exception as exc:  # seen on real exports; quantizing the raw model still works
            notes.append(f"quant_pre_process failed ({exc}); quantized the model without it")
            shutil.copy(source, prepared)
        methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                   "percentile": CalibrationMethod.Percentile}
        reader = _Calibration(fp32, spec, data.calibration, count)
        quantize_static(str(prepared), str(target), reader, quant_format=QuantFormat.QDQ,
                        per_channel=recipe.per_channel, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=methods[recipe.calibration_method],
                        nodes_to_exclude=sorted({*_excluded_nodes(model, recipe.exclude_op_types),
                                                 *recipe.exclude_nodes}),
                        extra_options={"CalibStridedMinMax": _chunk(len(reader))})


def fold_constants(model: onnx.ModelProto) -> int:
    """Constant nodes become initializers (in subgraphs too): quantizers only see initializer weights."""
    folded = 0
    for graph in graphs(model.graph):
        for node in [n for n in graph.node if n.op_type == "Constant"]:
            value = next((a for a in node.attribute if a.name == "value"), None)
            if value is None:
                continue
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value.t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            graph.node.remove(node)
            folded += 1
    return folded


def _build_dynamic(info: ModelInfo, recipe: Recipe, target: Path, notes: list[str]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.ModelProto.FromString(info.proto.SerializeToString())
    folded = fold_constants(model)
    if folded:
        notes.append(f"{folded} Constant node(s) folded into initializers before quantizing (weights the "
                     "quantizer would not see otherwise)")
    with tempfile.TemporaryDirectory(prefix="farm-quant-") as tmp:
        source = Path(tmp) / "source.onnx"
        onnx.save(model, str(source))
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                         op_types_to_quantize=list(recipe.dynamic_op_types) or None,
                         extra_options={"EnableSubgraph": True})


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _build_variant(info: ModelInfo, data: DataSet, spec: ModelSpec, variant: str, recipe: Recipe,
                   calibration_count: int | None, out_dir: Path) -> dict:
    """Build (or reuse) one variant; a failure is recorded, never raised."""
    entry: dict = {"status": BuildStatus.OK, "reason": None, "recipe": recipe.for_variant(variant), "notes": []}
    fp32 = out_dir / f"{info.name}.fp32.onnx"
    toolchain = builder(variant)
    if not fp32.exists() or file_sha256(fp32) != info.sha256:
        shutil.copy(info.path, fp32)
    if variant == "fp32":
        target = fp32
        entry["cached"] = False
    else:
        depends = (info.sha256, variant, recipe.for_variant(variant), ort.__version__,
                   (data.sha256, spec.to_json(), calibration_count) if calibrated(variant) else None)
        target = out_dir / f"{info.name}.{variant}.{_key(*depends)}.onnx"
        entry["cached"] = target.exists()
        if not target.exists():
            partial = target.with_suffix(".partial.onnx")
            try:
                if variant == "int8_dynamic":
                    _build_dynamic(info, recipe, partial, entry["notes"])
                elif toolchain is not None:
                    reader = (_Calibration(fp32, spec.to_json(), data.calibration, calibration_count)
                              if calibrated(variant) else None)
                    toolchain.build(variant, info, data, spec, calibration_count, partial, entry["notes"], reader)
                else:
                    _build_static(info, data, spec.to_json(), recipe, calibration_count, fp32, partial, entry["notes"])
                ort.InferenceSession(str(partial), providers=["CPUExecutionProvider"])
            except Exception as exc:
                partial.unlink(missing_ok=True)
                return {**entry, "status": BuildStatus.FAILED, "reason": f"{type(exc).__name__}: {exc}"}
            partial.replace(target)
    if toolchain is not None:
        entry["toolchains"] = built_for(variant)  # measured on their boards only
    census = quantization_census(target)
    quantized, left, between = census.quantized, census.left, census.between_qdq
    if toolchain is not None and variant not in FLOAT_VARIANTS:
        # An accelerator runs the QDQ groups itself: what sits between a pair is its integer work, whatever the
        # CPU provider would fuse (it has no 16-bit kernels: a16w8_qnn read as quantizing nothing).
        quantized = {op: quantized.get(op, 0) + between.get(op, 0) for op in sorted({*quantized, *between})}
        left = {op: n - between.get(op, 0) for op, n in left.items() if n > between.get(op, 0)}
        between = {}
    entry.update(file=target.name, sha256=file_sha256(target), size_bytes=target.stat().st_size,
                 opset=default_opset(onnx.load(str(target), load_external_data=False)),
                 float_op_types=left, quantized_op_types=quantized, float_between_qdq=between)
    if variant not in FLOAT_VARIANTS and not entry["quantized_op_types"]:
        entry.update(status=BuildStatus.NO_OP, reason=_no_op_reason(variant, recipe, info.path))
    return entry


def _host_figures(model: Path, out_dir: Path, files: dict, timing: bool = True) -> dict:
    """Host-side indication: the agent run on the controller, as on a board (never the verdict).

    `timing=False`: the accuracy pass only (what a search over candidates compares)."""
    path = lambda name: str(out_dir / files[name]["file"]) if name in files else None  # noqa: E731
    agent_files = AgentFiles(str(model), spec=path("spec"), feed=path("feed"), data=path("data"),
                             reference=path("reference"))
    try:
        latency = run_agent_here(agent_files, HOST_MEASUREMENT, "latency") if timing else {
            "errors": [], "latency_ms": {"p50": None}, "peak_rss_mb": None}
        accuracy = run_agent_here(agent_files, HOST_MEASUREMENT, "accuracy") if "data" in files else {"errors": []}
    except AgentError as exc:
        return {"error": str(exc)}
    errors = latency["errors"] + accuracy["errors"]
    if errors:
        return {"error": "; ".join(e["message"] for e in errors)}
    return {"p50_ms": latency["latency_ms"]["p50"], "threads": HOST_MEASUREMENT.threads,
            "peak_rss_mb": latency["peak_rss_mb"], "accuracy": accuracy.get("accuracy")}


def host_losses(spec: ModelSpec, host: dict, fp32_accuracy: dict | None, target: float | None = None) -> list[dict]:
    """Each judged output's loss on the host against the host's FP32; `ok` against its limit (or `target` %).

    An output without a limit of its own is held to the checklist's default accuracy limit, as on a board."""
    rows = []
    for output in spec.outputs:
        doc = output.to_json()
        if target is not None:
            doc = {**doc, "max_loss_pct": target, "max_disagreement_pct": target}
        figures = ((host.get("accuracy") or {}).get("outputs") or {}).get(output.name)
        base = ((fp32_accuracy or {}).get("outputs") or {}).get(output.name)
        for row in output_rows(doc, figures, base, ITEMS["accuracy"]["max_loss_pct"]):
            ok = None if row["verdict"] is None else row["verdict"] == CheckStatus.PASS
            rows.append({"output": output.name, "metric": row["metric"], "loss": row["value"], "unit": row["unit"],
                         "limit": row["limit"], "ok": ok})
    return rows
