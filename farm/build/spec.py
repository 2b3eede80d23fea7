"""A model spec: how each input is fed, what each judged output means, the deployment shape.

Written beside the model (`dms.onnx` -> `dms.farm.yaml`, found there when no `--spec`
is given, and said so), or inferred when there is none (and the run says what it inferred):

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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from farm.build.datafile import TensorSpec
from farm.build.modelfile import ModelInfo
from farm.config.yamlfile import LineMap, load_yaml
from farm.errors import LocatedError, ModelError
from farm.util import did_you_mean, is_number

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
    # docs/model-spec.md: where a detector's boxes and scores are, how they are decoded and matched
    "detection": (("boxes", "scores", "box_format", "anchors_axis", "decode", "input_size", "activation",
                   "score_threshold", "nms_iou", "match_iou"), "max_loss_pct", "%"),
    "ctc": (("blank", "charset"), "max_loss_pct", "%"),
}
NEEDS_LIMIT = ("mae", "snr_db")  # their limits are in the output's own units: no sensible default
LIMIT_KEYS = ("max_loss_pct", "max_loss", "min_db")
SETTING_KEYS = tuple(dict.fromkeys(k for settings, _, _ in METRICS.values() for k in settings))
AGREEMENT_KEY = "max_disagreement_pct"  # with labels: decisions that may flip against FP32
LABELLED_AGREEMENT = ("top1", "binary", "ctc", "detection")  # metrics whose labelled figure has an FP32 agreement
INPUT_KEYS = ("shape", "dtype", "batch_axis", "value", "from_output", "init")
OUTPUT_KEYS = ("metric", "batch_axis", "labels", *SETTING_KEYS, *LIMIT_KEYS, AGREEMENT_KEY)
CHOICES = {"box_format": ("cxcywh", "xyxy"), "anchors_axis": ("last", "middle"), "decode": ("blazeface",),
           "activation": ("none", "sigmoid")}
TOP_KEYS = ("model", "data", "batch", "sequence", "inputs", "outputs", "quantize", "variants", "description")
QUANTIZE_KEYS = ("exclude_nodes", "exclude_op_types")


class SpecError(LocatedError, ModelError):
    pass


Probe = Callable[[list, int], dict[str, list]]  # (resolved inputs, batch) -> each output's real shape


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
    warnings: list[str] = field(default_factory=list)  # outputs that return another shape than they declare
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
    return did_you_mean(word, choices, "valid: ")


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


def _returned_shapes(resolver: _Resolver, shapes: dict[str, list]) -> list[str]:
    """Judge outputs by the shapes they return: a warning for each that declares another."""
    warnings = []
    for name, real in shapes.items():
        declared = resolver.model_outputs[name]
        if len(real) != len(declared.shape) or any(isinstance(d, int) and d > 0 and d != r
                                                   for d, r in zip(declared.shape, real)):
            warnings.append(f"output {name!r}: the model declares {list(declared.shape)} but returns {list(real)} "
                            "on the first sample; judged by what it returns")
        resolver.model_outputs[name] = TensorSpec(name, tuple(real), declared.dtype)
    return warnings


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
                 labelled: set[str] | None = None, returned: Probe | None = None) -> ModelSpec:
    """A spec for `model`: from `doc` (a parsed spec file), else inferred from the model and its data.

    `data_sample_shapes`: each data input's sample shape in the data file (rows are samples);
    `labelled`: outputs with labels in the data file ("" for the plain `labels`); `returned`: the shape
    of each output the model really returns for the resolved inputs (many exports declare another).
    """
    resolver = _Resolver(model, path)
    doc = doc if doc is not None else {}
    labelled = labelled or set()
    resolver.check_keys(doc, TOP_KEYS, None)
    batch = doc.get("batch", 1)
    if not is_number(batch, whole=True) or batch < 1:
        raise resolver.fail(_line(doc, "batch"), f"expected a whole number >= 1, got {batch!r}", None, "batch")
    sequence = bool(doc.get("sequence", False))
    if sequence and batch != 1:
        raise resolver.fail(_line(doc, "batch"), "a stream (sequence: true) is fed one step at a time: batch 1",
                            None, "batch")
    inputs = _resolve_inputs(resolver, doc.get("inputs") or {}, batch, data_sample_shapes)
    warnings = _returned_shapes(resolver, returned(inputs, batch)) if returned else []
    outputs = _resolve_outputs(resolver, doc.get("outputs"), batch, inputs, default_labels_output, labelled)
    quantize = doc.get("quantize") or {}
    resolver.check_keys(quantize, QUANTIZE_KEYS, "quantize")
    spec = ModelSpec(batch, sequence, inputs, outputs, list(quantize.get("exclude_nodes") or []),
                     list(quantize.get("exclude_op_types") or []), source=path, warnings=warnings,
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
                                "--spec SPEC.yaml; see docs/model-spec.md")
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
            if key in (*SETTING_KEYS, *LIMIT_KEYS) and key not in (*allowed, limit_key) or (
                    key == AGREEMENT_KEY and not (has_labels and metric in LABELLED_AGREEMENT)):
                takes = (*allowed, limit_key, *([AGREEMENT_KEY] if has_labels and metric in LABELLED_AGREEMENT else []))
                raise resolver.fail(_line(entry, key), f"{key} does not apply to metric {metric}"
                                    + (" without labels" if key == AGREEMENT_KEY else ""), where, key,
                                    f"{metric} takes {', '.join(takes)}")
        if metric in NEEDS_LIMIT and limit_key not in entry:
            raise resolver.fail(_line(entry, "metric"), f"metric {metric} needs its limit {limit_key} (in the "
                                "output's own units)", where, limit_key)
        _check_metric_fits(resolver, entry, where, tensor, batch_axis, metric, has_labels)
        settings = {k: entry[k] for k in allowed if k in entry}
        if metric == "detection":
            settings = _detection_settings(resolver, entry, where, settings)
        if metric == "ctc":
            _check_ctc(resolver, entry, where, settings)
        if AGREEMENT_KEY in entry:
            settings[AGREEMENT_KEY] = _number(resolver, entry, where, AGREEMENT_KEY, 0, 100)
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
            raise resolver.fail(line, f"top1 needs a class axis of 2 or more; "
                                f"{tensor.name!r} has {sample or 'one value'} per sample"
                                + (" (labels on a one-column output are not top-1)" if labels else ""),
                                where, "metric", "use metric binary for one value per sample")
        if size != sample[-1]:
            raise resolver.fail(line, f"top1 judges one class vector per sample; {tensor.name!r} has {sample} per "
                                "sample", where, "metric", "use metric sequence (class axis last) or iou")
    if metric in ("sequence", "ctc") and known and (len([d for d in sample if d > 1]) < 2 or sample[-1] < 2):
        raise resolver.fail(line, f"{metric} needs steps x classes per sample (class axis last); {tensor.name!r} "
                            f"returns {list(tensor.shape)}, {sample} per sample with batch axis {batch_axis}", where,
                            "metric", "name the batch axis of the shape it returns (batch_axis)")
    if metric == "binary" and labels and known and size != 1:
        raise resolver.fail(line, f"labels judge one decision per sample; {tensor.name!r} has {size} values per "
                            "sample", where, "labels", "judge it against FP32 only (labels: false)")
    if metric == "nme" and known and size % int(entry.get("points", 2)):
        raise resolver.fail(line, f"{size} values per sample are not points of {entry.get('points', 2)} coordinates",
                            where, "points")


def _number(resolver: _Resolver, entry: dict, where: str, key: str, low: float, high: float) -> float:
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise resolver.fail(_line(entry, key), f"expected a number from {low:g} to {high:g}, got {value!r}", where, key)
    return float(value)


def _rows(resolver: _Resolver, entry: dict, where: str, key: str) -> str:
    value = str(entry[key])
    low, dash, high = value.partition("-")
    if not (low.isdigit() and dash and (not high or high.isdigit() and int(high) >= int(low))):
        raise resolver.fail(_line(entry, key), f"expected rows like 0-3 or 4- (from, to; open to the last), got "
                            f"{entry[key]!r}", where, key)
    return value


def _detection_settings(resolver: _Resolver, entry: dict, where: str, settings: dict) -> dict:
    """A detector's layout: a packed head (`boxes`/`scores` rows of this output) or a boxes output of its own."""
    for key, choices in CHOICES.items():
        if key in settings and settings[key] not in choices:
            raise resolver.fail(_line(entry, key), f"unknown {key} {settings[key]!r}", where, key, _near(settings[key],
                                                                                                         choices))
    for key in ("score_threshold", "nms_iou", "match_iou"):
        if key in settings:
            settings[key] = _number(resolver, entry, where, key, 0, 1)
    boxes = settings.get("boxes", "0-3")
    if str(boxes) in resolver.model_outputs:  # two outputs: this one the scores, that one the boxes
        settings["boxes_output"] = settings.pop("boxes")
        for key in ("scores", "anchors_axis"):
            if key in settings:
                raise resolver.fail(_line(entry, key), f"{key} describes a packed head; this output's boxes are "
                                    f"output {boxes!r}", where, key)
        return settings
    if "decode" in settings:
        raise resolver.fail(_line(entry, "decode"), "anchor decoding needs the boxes as an output of their own",
                            where, "boxes", f"boxes: <output name>; outputs: {', '.join(resolver.model_outputs)}")
    if "boxes" in settings:
        boxes = settings["boxes"] = _rows(resolver, entry, where, "boxes")
        if len(range(int(boxes.split("-")[0]), int(boxes.split("-")[1] or -1) + 1)) != 4:
            raise resolver.fail(_line(entry, "boxes"), f"boxes are 4 rows (x, y, w, h or x1, y1, x2, y2), got "
                                f"{boxes!r}", where, "boxes", f"or the name of the boxes output: "
                                f"{', '.join(resolver.model_outputs)}")
    if "scores" in settings:
        settings["scores"] = _rows(resolver, entry, where, "scores")
    return settings


def _check_ctc(resolver: _Resolver, entry: dict, where: str, settings: dict) -> None:
    blank = settings.get("blank", 0)
    if isinstance(blank, bool) or not isinstance(blank, int) or blank < 0:
        raise resolver.fail(_line(entry, "blank"), f"expected the blank's class index, got {blank!r}", where, "blank")
    if "charset" in settings and not isinstance(settings["charset"], str):
        raise resolver.fail(_line(entry, "charset"), "expected the characters of the classes in order, the blank "
                            "left out, as one string", where, "charset")


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


SPEC_SUFFIX = ".farm.yaml"


def spec_beside(model_path: str | Path) -> Path | None:
    """`<model>.farm.yaml` next to the model (vad.onnx: vad.farm.yaml): the spec written for it, if there is one."""
    path = Path(model_path).with_suffix(SPEC_SUFFIX)
    return path if path.is_file() else None


def load_spec_file(path: str | Path) -> tuple[dict, Path]:
    """The spec file's document (line-aware) and its folder."""
    path = Path(path)
    doc = load_yaml(path, lambda p, line, message: SpecError(p, line, message), "model spec")
    if not isinstance(doc, LineMap):
        raise SpecError(str(path), None, "expected a mapping with inputs and outputs (see docs/model-spec.md)")
    return doc, path.parent
