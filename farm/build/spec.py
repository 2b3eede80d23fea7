"""A model spec: how each input is fed, what each judged output means, the deployment shape.

Written beside the model (`dms.farm.yaml`, `--spec`), or inferred when there is
none (and the run says what it inferred):

    batch: 1                     # the deployment batch: latency and memory are measured at it
    sequence: false              # true: samples are consecutive steps of one stream (state carried)
    inputs:
      image: {shape: [1, 3, 128, 128]}            # from the data file; a fixed shape for free dims
      sr:    {value: 16000}                        # a constant input
      h0:    {from_output: hn, batch_axis: 1}      # state: the previous step's output `hn`
    outputs:
      scores: {metric: binary, threshold: 0.5, max_loss_pct: 1.0}
      boxes:  {metric: mae, max_loss: 2.0}         # in the output's own units
    quantize:
      exclude_nodes: [head_conv]                   # kept in float by static INT8
    variants:
      qat: dms.qat.onnx                            # a team's own variant, judged beside farm's

Every name is checked against the model, every metric against its output; a
mistake is a ModelError naming the file, the line and the field (exit 2).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farm.build.datafile import TensorSpec
from farm.build.modelfile import ModelInfo
from farm.config.yamlfile import LineMap, load_yaml
from farm.errors import LocatedError, ModelError

# metric -> (its settings, the limit key and unit): limits default to the checklist's accuracy item
METRICS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "top1": ((), "max_loss_pct", "%"),
    "binary": (("threshold",), "max_loss_pct", "%"),
    "iou": (("threshold",), "max_loss_pct", "%"),
    "nme": (("points",), "max_loss_pct", "%"),
    "mae": ((), "max_loss", ""),
    "sequence": ((), "max_loss_pct", "%"),
    "cosine": ((), "max_loss_pct", "%"),
    "snr_db": ((), "min_db", "dB"),
}
NEEDS_LIMIT = ("mae", "snr_db")  # their limits are in the output's own units: no sensible default
INPUT_KEYS = ("shape", "dtype", "batch_axis", "value", "from_output", "init")
OUTPUT_KEYS = ("metric", "batch_axis", "labels", "threshold", "points", "max_loss_pct", "max_loss", "min_db")
TOP_KEYS = ("model", "data", "batch", "sequence", "inputs", "outputs", "quantize", "variants", "description")
QUANTIZE_KEYS = ("exclude_nodes", "exclude_op_types")
FLOAT_DTYPES = ("float16", "float32", "float64")


class SpecError(LocatedError, ModelError):
    pass


@dataclass
class InputSpec:
    name: str
    source: str  # data | value | state
    dtype: str
    shape: list  # the deployment shape: every dim fixed
    batch_axis: int | None
    value: Any = None
    from_output: str | None = None
    init: float = 0.0

    def to_json(self) -> dict:
        doc = {"name": self.name, "source": self.source, "dtype": self.dtype, "shape": self.shape,
               "batch_axis": self.batch_axis}
        if self.source == "value":
            doc["value"] = self.value
        if self.source == "state":
            doc.update(from_output=self.from_output, init=self.init)
        return doc

    @property
    def sample_shape(self) -> list:
        return [d for i, d in enumerate(self.shape) if i != self.batch_axis]


@dataclass
class OutputSpec:
    name: str
    metric: str
    batch_axis: int | None
    limit: float | None  # None: the checklist's accuracy limit
    labels: bool = False  # judged against the data file's `labels` too
    settings: dict = field(default_factory=dict)  # threshold, points

    @property
    def limit_key(self) -> str:
        return METRICS[self.metric][1]

    @property
    def unit(self) -> str:
        return METRICS[self.metric][2]

    def to_json(self) -> dict:
        return {"name": self.name, "metric": self.metric, "batch_axis": self.batch_axis, "labels": self.labels,
                self.limit_key: self.limit, **self.settings}


@dataclass
class ModelSpec:
    batch: int
    sequence: bool
    inputs: list[InputSpec]
    outputs: list[OutputSpec]
    exclude_nodes: list[str] = field(default_factory=list)
    exclude_op_types: list[str] = field(default_factory=list)
    source: str = "inferred"  # the spec file, or "inferred"
    model: Path | None = None  # the spec's own `model:` and `data:`, relative to it
    data: Path | None = None
    user_variants: dict[str, Path] = field(default_factory=dict)  # `variants:`, relative to the spec

    @property
    def data_inputs(self) -> list[str]:
        return [i.name for i in self.inputs if i.source == "data"]

    def to_json(self) -> dict:
        """What the agent reads, and the manifest and results.json record."""
        return {"source": self.source, "batch": self.batch, "sequence": self.sequence,
                "inputs": [i.to_json() for i in self.inputs], "outputs": [o.to_json() for o in self.outputs],
                "exclude_nodes": self.exclude_nodes, "exclude_op_types": self.exclude_op_types}

    def describe(self) -> list[str]:
        """One line per input and judged output: what a run says it inferred (or read)."""
        lines = [f"deployment batch {self.batch}" + (", samples are steps of one stream" if self.sequence else "")]
        for i in self.inputs:
            how = {"data": "from the data file", "value": f"constant {i.value!r}",
                   "state": f"state from output {i.from_output!r}"}[i.source]
            lines.append(f"input {i.name}: {how}, {i.dtype} {i.shape}" +
                         (f", batch axis {i.batch_axis}" if i.batch_axis not in (0, None) else ""))
        for o in self.outputs:
            limit = f"{o.limit_key} {o.limit}" if o.limit is not None else "the checklist's accuracy limit"
            lines.append(f"output {o.name}: {o.metric}" + (" on labels and" if o.labels else "") +
                         f" against FP32, {limit}")
        return lines


def _near(word: str, choices) -> str:
    found = difflib.get_close_matches(str(word), list(choices), n=1)
    return f"did you mean {found[0]!r}?" if found else "valid: " + ", ".join(map(str, choices))


class _Resolver:
    """Turns a spec document (or nothing) into a ModelSpec for one model and its data."""

    def __init__(self, model: ModelInfo, path: str):
        self.model, self.path = model, path
        self.model_inputs = {t.name: t for t in model.inputs}
        self.model_outputs = {t.name: t for t in model.outputs}

    def fail(self, line: int | None, message: str, where: str | None = None, key: str | None = None,
             hint: str | None = None) -> SpecError:
        return SpecError(self.path, line, message, where=where, field=key, hint=hint)

    def check_keys(self, doc: dict, allowed, where: str | None) -> None:
        for key in doc:
            if key not in allowed:
                raise self.fail(_line(doc, key), "unknown key", where, str(key), _near(key, allowed))

    def name(self, doc: dict, name: str, known: dict, kind: str) -> TensorSpec:
        if name not in known:
            raise self.fail(_line(doc, name), f"the model has no {kind} {name!r}", None, f"{kind}s",
                            f"its {kind}s: {', '.join(known)}")
        return known[name]

    @staticmethod
    def default_batch_axis(shape: tuple, batch: int) -> int | None:
        if not shape:
            return None
        first = shape[0]
        return 0 if not isinstance(first, int) or first <= 0 or first == batch else None


def _line(doc: Any, key: str) -> int | None:
    return doc.line_of(key) if isinstance(doc, LineMap) else None


def _deployment_shape(tensor: TensorSpec, batch_axis: int | None, batch: int, sample: list | None) -> list | None:
    """The model's shape with its batch dim set and free dims taken from a data sample; None if still free."""
    shape = []
    others = iter(sample or [])
    for axis, dim in enumerate(tensor.shape):
        if axis == batch_axis:
            shape.append(batch)
            continue
        given = next(others, None)
        shape.append(dim if isinstance(dim, int) and dim > 0 else given)
    return None if any(not isinstance(d, int) for d in shape) else shape


def resolve_spec(model: ModelInfo, data_sample_shapes: dict[str, list], doc: dict | None = None,
                 path: str = "inferred", default_labels_output: str | None = None,
                 labelled: set[str] | None = None) -> ModelSpec:
    """A spec for `model`: from `doc` (a parsed spec file), else inferred from the model and its data.

    `data_sample_shapes`: each data input's sample shape in the data file (rows are samples);
    `labelled`: outputs with labels in the data file ("" for the plain `labels`).
    """
    resolver = _Resolver(model, path)
    doc = doc if doc is not None else {}
    labelled = labelled or set()
    resolver.check_keys(doc, TOP_KEYS, None)
    batch = doc.get("batch", 1)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise resolver.fail(_line(doc, "batch"), f"expected a whole number >= 1, got {batch!r}", None, "batch")
    sequence = bool(doc.get("sequence", False))
    if sequence and batch != 1:
        raise resolver.fail(_line(doc, "batch"), "a stream (sequence: true) is fed one step at a time: batch 1",
                            None, "batch")
    inputs = _resolve_inputs(resolver, doc.get("inputs") or {}, batch, data_sample_shapes)
    outputs = _resolve_outputs(resolver, doc.get("outputs"), batch, inputs, default_labels_output, labelled)
    quantize = doc.get("quantize") or {}
    resolver.check_keys(quantize, QUANTIZE_KEYS, "quantize")
    spec = ModelSpec(batch, sequence, inputs, outputs, list(quantize.get("exclude_nodes") or []),
                     list(quantize.get("exclude_op_types") or []), source=path,
                     user_variants=_user_variants(resolver, doc, path))
    nodes = {n.name for n in model.proto.graph.node}
    unknown = [n for n in spec.exclude_nodes if n not in nodes]
    if unknown:
        raise resolver.fail(_line(quantize, "exclude_nodes"), f"the model has no node {unknown[0]!r}", "quantize",
                            "exclude_nodes", _near(unknown[0], sorted(nodes)))
    return spec


def _resolve_inputs(resolver: _Resolver, doc: dict, batch: int, samples: dict[str, list]) -> list[InputSpec]:
    inputs = []
    for name in doc:
        resolver.name(doc, name, resolver.model_inputs, "input")
    for tensor in resolver.model.inputs:
        entry = doc.get(tensor.name) or LineMap()
        where = f"input {tensor.name!r}"
        resolver.check_keys(entry, INPUT_KEYS, where)
        source = "value" if "value" in entry else "state" if "from_output" in entry else "data"
        dtype = entry.get("dtype", tensor.dtype)
        if dtype != tensor.dtype:
            raise resolver.fail(_line(entry, "dtype"), f"the model takes {tensor.dtype}, the spec says {dtype}", where,
                                "dtype")
        default_axis = None if source == "value" else resolver.default_batch_axis(tensor.shape, batch)
        batch_axis = entry.get("batch_axis", default_axis)
        if batch_axis is not None and not (isinstance(batch_axis, int) and 0 <= batch_axis < len(tensor.shape)):
            raise resolver.fail(_line(entry, "batch_axis"), f"expected an axis of {list(tensor.shape)} or null, "
                                f"got {batch_axis!r}", where, "batch_axis")
        if source == "data" and tensor.name not in samples:
            raise resolver.fail(_line(doc, tensor.name), "the data file has no samples for this input; a constant or "
                                "state input needs `value:` or `from_output:` in the model spec", where, None,
                                "--spec SPEC.yaml; see the README's model spec")
        shape = entry.get("shape") or _deployment_shape(tensor, batch_axis, batch, samples.get(tensor.name))
        if shape is None:
            raise resolver.fail(_line(entry, "shape") or _line(doc, tensor.name),
                                f"free dimensions in {list(tensor.shape)}: give the deployment shape", where, "shape")
        _check_shape(resolver, entry, where, tensor, list(shape), batch_axis, batch)
        found = InputSpec(tensor.name, source, dtype, list(shape), batch_axis)
        if source == "value":
            found.value = entry["value"]
        if source == "state":
            found.from_output, found.init = entry["from_output"], float(entry.get("init", 0.0))
            resolver.name(entry, found.from_output, resolver.model_outputs, "output")
        if source == "data" and list(samples[tensor.name]) != found.sample_shape:
            raise resolver.fail(_line(doc, tensor.name), f"the data file's samples are {list(samples[tensor.name])}, "
                                f"the deployment shape {found.shape} needs {found.sample_shape} per sample", where,
                                "shape")
        inputs.append(found)
    return inputs


def _check_shape(resolver: _Resolver, entry: dict, where: str, tensor: TensorSpec, shape: list,
                 batch_axis: int | None, batch: int) -> None:
    ok = len(shape) == len(tensor.shape) and all(
        isinstance(got, int) and got > 0 and (not isinstance(want, int) or want <= 0 or want == got)
        for got, want in zip(shape, tensor.shape))
    if not ok:
        raise resolver.fail(_line(entry, "shape"), f"{shape} does not fit the model's {list(tensor.shape)}", where,
                            "shape")
    if batch_axis is not None and shape[batch_axis] != batch:
        raise resolver.fail(_line(entry, "shape"), f"the batch axis {batch_axis} of {shape} is not the deployment "
                            f"batch {batch}", where, "shape")


def _infer_metric(tensor: TensorSpec, batch_axis: int | None, labels: bool) -> str:
    """Conservative: top1 only for a class vector with labels; one value: binary; else cosine."""
    sample = [d for i, d in enumerate(tensor.shape) if i != batch_axis]
    fixed = [d for d in sample if isinstance(d, int) and d > 0]
    size = 1
    for d in fixed:
        size *= d
    if len(fixed) == len(sample) and size == 1:
        return "binary"
    if labels and len(fixed) == len(sample) and sample and size == sample[-1] and size >= 2:
        return "top1"
    return "cosine"


def _resolve_outputs(resolver: _Resolver, doc: dict | None, batch: int, inputs: list[InputSpec],
                     label_output: str | None, labelled: set[str]) -> list[OutputSpec]:
    model_outputs = resolver.model.outputs
    label_output = label_output or model_outputs[0].name
    if label_output not in resolver.model_outputs:
        raise resolver.fail(None, f"the data file's label_output {label_output!r} is not an output of the model",
                            None, "label_output", f"outputs: {', '.join(resolver.model_outputs)}")
    states = {i.from_output for i in inputs if i.source == "state"}
    if doc is None:  # inferred: every output but carried state, judged by a metric that fits its shape
        doc = {o.name: {} for o in model_outputs if o.name not in states}
    outputs = []
    for name, entry in doc.items():
        tensor = resolver.name(doc, name, resolver.model_outputs, "output")
        entry = entry or LineMap()
        where = f"output {name!r}"
        resolver.check_keys(entry, OUTPUT_KEYS, where)
        batch_axis = entry.get("batch_axis", resolver.default_batch_axis(tensor.shape, batch))
        has_labels = bool(entry.get("labels", name in labelled or ("" in labelled and name == label_output)))
        if has_labels and name not in labelled and "" not in labelled:
            raise resolver.fail(_line(entry, "labels"), "the data file has no labels for this output", where, "labels")
        metric = entry.get("metric") or _infer_metric(tensor, batch_axis, has_labels)
        if metric not in METRICS:
            raise resolver.fail(_line(entry, "metric"), f"unknown metric {metric!r}", where, "metric",
                                _near(metric, METRICS))
        allowed, limit_key, _ = METRICS[metric]
        for key in entry:
            if key in ("threshold", "points", "max_loss_pct", "max_loss", "min_db") and key not in (*allowed, limit_key):
                raise resolver.fail(_line(entry, key), f"{key} does not apply to metric {metric}", where, key,
                                    f"{metric} takes {', '.join((*allowed, limit_key))}")
        if metric in NEEDS_LIMIT and limit_key not in entry:
            raise resolver.fail(_line(entry, "metric"), f"metric {metric} needs its limit {limit_key} (in the "
                                "output's own units)", where, limit_key)
        _check_metric_fits(resolver, entry, where, tensor, batch_axis, metric, has_labels)
        settings = {k: entry[k] for k in allowed if k in entry}
        outputs.append(OutputSpec(name, metric, batch_axis, entry.get(limit_key), has_labels, settings))
    if not outputs:
        raise resolver.fail(None, "no output to judge", None, "outputs")
    return outputs


def _check_metric_fits(resolver: _Resolver, entry: dict, where: str, tensor: TensorSpec, batch_axis: int | None,
                       metric: str, labels: bool) -> None:
    """Refuse a metric that cannot mean what its name says for this output."""
    sample = [d for i, d in enumerate(tensor.shape) if i != batch_axis]
    known = all(isinstance(d, int) and d > 0 for d in sample)
    size = 1
    for d in sample:
        size = size * d if isinstance(d, int) and d > 0 else size
    line = _line(entry, "metric")
    if metric == "top1" and known:
        if not sample or sample[-1] < 2:
            raise resolver.fail(line, f"top1 needs a class axis of 2 or more; {tensor.name!r} has {sample or 'one value'} "
                                "per sample" + (" (labels on a one-column output are not top-1)" if labels else ""),
                                where, "metric", "use metric binary for one value per sample")
        if size != sample[-1]:
            raise resolver.fail(line, f"top1 judges one class vector per sample; {tensor.name!r} has {sample} per "
                                "sample", where, "metric", "use metric sequence (class axis last) or iou")
    if metric == "sequence" and known and (len([d for d in sample if d > 1]) < 2 or sample[-1] < 2):
        raise resolver.fail(line, f"sequence needs steps x classes per sample; {tensor.name!r} has {sample}", where,
                            "metric")
    if metric == "binary" and labels and known and size != 1:
        raise resolver.fail(line, f"labels judge one decision per sample; {tensor.name!r} has {size} values per "
                            "sample", where, "labels", "judge it against FP32 only (labels: false)")
    if metric == "nme" and known and size % int(entry.get("points", 2)):
        raise resolver.fail(line, f"{size} values per sample are not points of {entry.get('points', 2)} coordinates",
                            where, "points")


def _user_variants(resolver: _Resolver, doc: dict, path: str) -> dict[str, Path]:
    """The spec's `variants:` (name: file), each file relative to the spec."""
    section = doc.get("variants") or {}
    if not isinstance(section, dict) or not all(isinstance(v, str) for v in section.values()):
        raise resolver.fail(_line(doc, "variants"), "expected a mapping of variant names to ONNX files "
                            "(e.g. pruned: pruned.onnx)", None, "variants")
    return {str(name): Path(path).parent / file for name, file in section.items()}


def check_names(model: ModelInfo, doc: dict, path: str) -> None:
    """Every input and output the spec names is the model's: checked before the data is read."""
    resolver = _Resolver(model, path)
    for key, known, kind in (("inputs", resolver.model_inputs, "input"), ("outputs", resolver.model_outputs, "output")):
        section = doc.get(key) or {}
        if not isinstance(section, dict):
            raise resolver.fail(_line(doc, key), f"expected a mapping of {kind} names", None, key)
        for name in section:
            resolver.name(section, name, known, kind)


def load_spec_file(path: str | Path) -> tuple[dict, Path]:
    """The spec file's document (line-aware) and its folder."""
    path = Path(path)
    doc = load_yaml(path, lambda p, line, message: SpecError(p, line, message), "model spec")
    if not isinstance(doc, LineMap):
        raise SpecError(str(path), None, "expected a mapping with inputs and outputs (see the README's model spec)")
    return doc, path.parent
