"""Which layers lose a model's accuracy in static INT8: per-layer sensitivity, on the controller.

Two measures, both on the real calibration data fed as the spec says:

- every quantized node's activation error against FP32, from onnxruntime's own
  debugger (`qdq_loss_debug`): SQNR in dB of its output in the QDQ model against the
  FP32 model's (`xmodel_err`), and how much of it the node adds to what its inputs
  already carried (`added_db`: a late layer inherits the error of all before it);
- for the nodes that add the most, one layer at a time: a model with only that node
  quantized, its judged outputs measured by the spec's metric on the evaluation set
  (the agent run on the controller) against the host's FP32. A metric such as IoU of
  the firing anchors needs the whole output; an SQNR does not say it.

Bounded: the activation matching holds every intermediate tensor of every sample
it feeds, so it feeds at most SAMPLE_CAP samples and no more than fit in
ACTIVATION_BUDGET_MB; one-at-a-time tries at most GROUP_CAP nodes (one quantization
and one accuracy pass each). What it cost (seconds, peak RSS) is recorded with it.
"""

from __future__ import annotations

import logging
import math
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization.qdq_loss_debug import (
    collect_activations,
    compute_activation_error,
    create_activation_matching,
    modify_model_output_intermediate_tensors,
)

from farm.build.datafile import DataSet
from farm.build.modelfile import LAYOUT_OPS, ModelInfo
from farm.build.quantizers import Recipe, _build_static, _Calibration, _ensure_names, _host_figures, host_losses
from farm.build.spec import ModelSpec
from farm.config.checklist import ITEMS

SAMPLE_CAP = 32            # calibration samples fed to the activation matching (and its quantization)
ACTIVATION_BUDGET_MB = 512   # both models' intermediate tensors over those samples, at most
GROUP_CAP = 8              # layers quantized one at a time, the ones adding the most activation error first
MAX_LAYER_NODES = 8        # float nodes between two quantized activations counted as one layer, at most
TOP = 5                    # layers a report names

log = logging.getLogger(__name__)


def _sqnr_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 2)


def _samples_that_fit(fp32: Path, spec: ModelSpec, data: DataSet, count: int) -> int:
    """As many samples as the budget holds: one sample's intermediate tensors, measured, times two models."""
    with tempfile.TemporaryDirectory(prefix="farm-sens-") as tmp:
        augmented = Path(tmp) / "augmented.onnx"
        modify_model_output_intermediate_tensors(str(fp32), str(augmented))
        session = ort.InferenceSession(str(augmented), providers=["CPUExecutionProvider"])
        feeds = _Calibration(fp32, spec.to_json(), data.calibration, 1).get_next()
        per_sample = sum(np.asarray(a).nbytes for a in session.run(None, feeds))
    fit = int(ACTIVATION_BUDGET_MB * 2**20 // max(1, 2 * per_sample))
    return max(1, min(SAMPLE_CAP, count, fit))


def activation_errors(fp32: Path, qdq: Path, spec: ModelSpec, data: DataSet, samples: int) -> dict[str, dict]:
    """Each activation's SQNR (dB) in the QDQ model against FP32 (`xmodel_err`) and across its own QDQ pair."""
    with tempfile.TemporaryDirectory(prefix="farm-sens-") as tmp:
        found = {}
        for name, model in (("float", fp32), ("qdq", qdq)):
            augmented = Path(tmp) / f"{name}.onnx"
            modify_model_output_intermediate_tensors(str(model), str(augmented))
            reader = _Calibration(fp32, spec.to_json(), data.calibration, samples)
            found[name] = collect_activations(str(augmented), iter(reader.get_next, None),
                                              execution_providers=["CPUExecutionProvider"])
        matching = create_activation_matching(found["qdq"], found["float"])
        return compute_activation_error(matching)


def _layers(model: onnx.ModelProto, errors: dict[str, dict]) -> list[dict]:
    """Quantized layers: each quantized activation with the nodes that compute it from the quantized
    activations before it (a Conv and its fused Relu are one layer: QDQ sits around both, not between).

    Each with its output's SQNR and what it adds to the worst of its inputs' (`added_db`)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    order = {id(n): i for i, n in enumerate(model.graph.node)}
    sources = {i.name for i in model.graph.initializer} | {i.name for i in model.graph.input}
    layers = []
    for node in model.graph.node:
        quantized = [o for o in node.output if o in errors and "xmodel_err" in errors[o]]
        if not quantized or node.op_type in LAYOUT_OPS:
            continue
        members, boundary, stack = [node], [], list(node.input)
        while stack and len(members) < MAX_LAYER_NODES:
            tensor = stack.pop()
            if tensor in errors:
                boundary.append(tensor)
            elif tensor and tensor not in sources and tensor in producer and producer[tensor] not in members:
                members.append(producer[tensor])
                stack.extend(producer[tensor].input)
        out = errors[quantized[0]]["xmodel_err"]
        inputs = [errors[t]["xmodel_err"] for t in boundary if "xmodel_err" in errors[t]]
        worst_in = min(inputs) if inputs else None
        added = worst_in - out if worst_in is not None and math.isfinite(worst_in) and math.isfinite(out) else None
        members.sort(key=lambda m: order[id(m)])  # graph order: the layer is named by its first op (a Conv, say)
        layers.append({"layer": members[0].name, "nodes": [m.name for m in members],
                       "op_types": [m.op_type for m in members], "output": quantized[0],
                       "sqnr_db": _sqnr_or_none(out), "added_db": _sqnr_or_none(added),
                       "qdq_sqnr_db": _sqnr_or_none(errors[quantized[0]].get("qdq_err"))})
    return layers


def _ranked_by_activation(rows: list[dict]) -> list[dict]:
    """Most error added first; a node without an input figure ranks by its own output's SQNR."""
    def key(row):
        if row["added_db"] is not None:
            return -row["added_db"]
        return -(100.0 - row["sqnr_db"]) if row["sqnr_db"] is not None else 0.0
    return sorted(rows, key=key)


def judged_limits(spec: ModelSpec) -> dict[str, float]:
    """Each judged output's limit: its own, else the default checklist's accuracy limit (the build sees no
    checklist; the boards' verdict uses the run's)."""
    return {o.name: o.limit if o.limit is not None else ITEMS["accuracy"]["max_loss_pct"] for o in spec.outputs}


def worst_ratio(losses: list[dict], spec: ModelSpec) -> float:
    """How far past its limit the worst judged output is (1: at it; inf: not measured): what orders layers
    by their effect, and mixes by how near they came. snr_db is better the higher it is."""
    limits = judged_limits(spec)
    metric = {o.name: o.metric for o in spec.outputs}
    ratios = []
    for row in losses:
        if row["loss"] is None:
            return math.inf
        # a labelled output has two rows (its loss and its agreement with FP32), each with its own limit
        limit = row.get("limit") or limits[row["output"]]
        kind = row.get("metric") or metric[row["output"]]
        ratios.append(limit / row["loss"] if kind == "snr_db" else row["loss"] / limit)
    return max(ratios, default=0.0)


def analyse(info: ModelInfo, data: DataSet, spec: ModelSpec, recipe: Recipe, count: int, out_dir: Path, files: dict,
            fp32_accuracy: dict | None) -> dict:
    """The sensitivity document the manifest keeps: every quantized node ranked, what it cost, its caps."""
    started = time.monotonic()
    fp32 = out_dir / f"{info.name}.fp32.onnx"
    samples = _samples_that_fit(fp32, spec, data, count)
    log.info(f"build: sensitivity: activation error per node on {samples} calibration sample(s)")
    named = _ensure_names(onnx.ModelProto.FromString(info.proto.SerializeToString()))
    with tempfile.TemporaryDirectory(prefix="farm-sens-") as tmp:
        source = Path(tmp) / "named.onnx"
        onnx.save(named, str(source))
        qdq = Path(tmp) / "qdq.onnx"
        named_info = replace(info, proto=named, path=source)
        _build_static(named_info, data, spec.to_json(), recipe, samples, source, qdq, [], keep_names=True)
        rows = _ranked_by_activation(_layers(named, activation_errors(source, qdq, spec, data, samples)))
        every = [n.name for n in named.graph.node]
        for index, row in enumerate(rows[:GROUP_CAP], 1):
            log.info(f"build: sensitivity: {index}/{min(GROUP_CAP, len(rows))} only {row['layer']} quantized")
            alone = Path(tmp) / f"alone-{index}.onnx"
            others = tuple(n for n in every if n not in row["nodes"])
            _build_static(named_info, data, spec.to_json(), replace(recipe, exclude_nodes=others), samples, source,
                          alone, [])
            host = _host_figures(alone, out_dir, files, timing=False)
            row["alone"] = {"losses": host_losses(spec, host, fp32_accuracy), "error": host.get("error")}
            row["alone"]["worst_ratio"] = round(worst_ratio(row["alone"]["losses"], spec), 4)
    tried, rest = rows[:GROUP_CAP], rows[GROUP_CAP:]
    tried.sort(key=lambda r: -r["alone"]["worst_ratio"])  # by their effect on the judged outputs
    return {"layers": tried + rest, "samples": samples, "group_cap": GROUP_CAP, "sample_cap": SAMPLE_CAP,
            "activation_budget_mb": ACTIVATION_BUDGET_MB, "seconds": round(time.monotonic() - started, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "method": "onnxruntime qdq_loss_debug (SQNR vs FP32), then one layer at a time on the judged outputs"}
