"""A model, its data and its spec, loaded once and checked against each other."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from farm.board.agent import library
from farm.build.datafile import DataSet, load_data
from farm.build.modelfile import ModelInfo, inspect_model
from farm.build.spec import ModelSpec, check_names, load_spec_file, resolve_spec, spec_beside
from farm.errors import ModelError

log = logging.getLogger(__name__)


def _kind(dtype: str) -> str:
    return np.dtype(dtype).kind.replace("u", "i")  # integers are integers, signed or not


def check_dtypes(data: DataSet, spec: ModelSpec) -> None:
    """Data of another kind than the model takes (float for an int64 input) is refused, never cast silently."""
    for section, arrays in (("calibration", data.calibration), ("evaluation", data.evaluation)):
        for name in spec.data_inputs:
            given = arrays.get(name)
            wanted = next(i.dtype for i in spec.inputs if i.name == name)
            if given is not None and _kind(given.dtype.name) != _kind(wanted):
                raise ModelError(f"{data.path}: {section} input {name!r}: the model takes {wanted}, the data is "
                                 f"{given.dtype.name}; convert it (e.g. np.asarray(x, '{wanted}')) where you know "
                                 "what the values mean")


def check_labels(data: DataSet, spec: ModelSpec) -> None:
    """Labels a detector or recognizer is judged on must be what its metric reads: boxes, or strings / indices."""
    for output in spec.outputs:
        found = data.labels.get(output.name, data.labels.get("")) if output.labels else None
        if found is None:
            continue
        key = f"labels:{output.name}" if output.name in data.labels else "labels"
        if output.metric == "detection" and (found.ndim != 3 or found.shape[-1] != 5):
            raise ModelError(f"{data.path}: {key} has shape {list(found.shape)}; detection labels are boxes, "
                             "[N, boxes, 5] rows (class, x1, y1, x2, y2; class -1 pads): give boxes, or "
                             f"labels: false for output {output.name!r} in the model spec")
        if output.metric == "ctc" and found.dtype.kind in "US" and not output.settings.get("charset"):
            raise ModelError(f"{data.path}: {key} holds strings; output {output.name!r} needs its charset (the "
                             "characters of the classes in order, the blank left out) in the model spec to read them")


def returned_shapes(info: ModelInfo, rows: dict[str, np.ndarray], inputs: list[Any],
                    batch: int) -> dict[str, list[int]]:
    """Each output's shape as the model returns it on the first deployment batch (declared shapes lie);
    none where it cannot run here."""
    import onnxruntime as ort

    spec = {"batch": batch, "inputs": [i.to_json() for i in inputs]}
    feeder = library.Feeder(np, spec, {i.name: rows[i.name] for i in inputs if i.source == "data"})
    if not list(feeder.steps()):
        return {}
    try:
        session = ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        values = session.run(names, feeder.feed(0))
    except Exception:  # a model that cannot run is each board's model-error, with onnxruntime's words
        return {}
    return {name: list(value.shape) for name, value in zip(names, values)}


def load_model_and_data(model_path: str | Path, data_path: str | Path,
                        spec_path: str | Path | None) -> tuple[ModelInfo, DataSet, ModelSpec]:
    info = inspect_model(model_path)
    if spec_path is None and (spec_path := spec_beside(model_path)) is not None:
        log.info(f"model spec: {spec_path}, found beside the model (--spec chooses another)")
    doc = load_spec_file(spec_path)[0] if spec_path else None
    if doc is not None:
        check_names(info, doc, str(spec_path))
    declared = (doc or {}).get("inputs") or {}
    from_data = [t.name for t in info.inputs
                 if not {"value", "from_output"} & set(declared.get(t.name) or {})]
    data = load_data(data_path, from_data)
    rows = data.evaluation or data.calibration
    samples = {name: list(array.shape[1:]) for name, array in rows.items()}
    spec = resolve_spec(info, samples, doc, str(spec_path) if spec_path else str(data.path),
                        data.label_output, set(data.labels), returned=lambda inputs, batch: returned_shapes(
                            info, rows, inputs, batch))
    for warning in spec.warnings:
        log.warning(f"warning: {warning}")
    if spec_path is None:
        spec.source = "inferred"
        log.info(f"no model spec given; inferred (write it down as a spec to change it): {'; '.join(spec.describe())}")
    check_dtypes(data, spec)
    check_labels(data, spec)
    return info, data, spec
