"""The data file (.npz) that goes with a model: calibration, evaluation, labels.

Format: for a single-input model the arrays `calibration` and `evaluation`; for a
multi-input model one array per input, `calibration:<input>` and
`evaluation:<input>`. Optional: `labels` (int, one per evaluation sample) and
`label_output` (the name of the output that labels and agreement judge; default
the first output).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from farm.errors import ModelError
from farm.util import file_sha256

SECTIONS = ("calibration", "evaluation")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # ints for fixed dims, strings or None for free ones
    dtype: str


@dataclass
class DataSet:
    path: Path
    calibration: dict[str, np.ndarray]
    evaluation: dict[str, np.ndarray]
    labels: np.ndarray | None
    label_output: str | None
    sha256: str

    @property
    def calibration_count(self) -> int:
        return len(next(iter(self.calibration.values()))) if self.calibration else 0

    @property
    def evaluation_count(self) -> int:
        return len(next(iter(self.evaluation.values()))) if self.evaluation else 0


def section_arrays(data, inputs: list[TensorSpec], section: str) -> dict[str, np.ndarray]:
    arrays = {}
    for spec in inputs:
        key = f"{section}:{spec.name}"
        if key in data:
            arrays[spec.name] = data[key]
        elif len(inputs) == 1 and section in data:
            arrays[spec.name] = data[section]
    return arrays


def check_fits(path: Path, section: str, arrays: dict[str, np.ndarray], inputs: list[TensorSpec]) -> None:
    """Every input present, every fixed dimension (but the batch) matching."""
    counts = set()
    for spec in inputs:
        if spec.name not in arrays:
            raise ModelError(f"{path}: {section} has no data for input {spec.name!r} "
                             f"(keys: {section!r} for one input, {section + ':' + spec.name!r} for several)")
        given = arrays[spec.name].shape
        counts.add(given[0] if given else 0)
        fits = len(given) == len(spec.shape) and all(
            i == 0 or not isinstance(want, int) or want <= 0 or got == want
            for i, (got, want) in enumerate(zip(given, spec.shape)))
        if not fits:
            raise ModelError(f"{path}: {section} input {spec.name!r} expects shape {list(spec.shape)}, "
                             f"the data has {list(given)}")
    if len(counts) > 1:
        raise ModelError(f"{path}: {section} inputs have different sample counts {sorted(counts)}")


def load_data(path: str | Path, inputs: list[TensorSpec]) -> DataSet:
    """Load and validate a data file against the model's inputs."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: data file not found")
    try:
        data = np.load(path)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable .npz file ({exc})") from exc
    with data:
        sections = {s: section_arrays(data, inputs, s) for s in SECTIONS}
        if not any(sections.values()):
            raise ModelError(f"{path}: no 'calibration' or 'evaluation' arrays (found: {', '.join(data.files)})")
        for section, arrays in sections.items():
            if arrays:
                check_fits(path, section, arrays, inputs)
        labels = data["labels"] if "labels" in data.files else None
        label_output = str(data["label_output"]) if "label_output" in data.files else None
    dataset = DataSet(path, sections["calibration"], sections["evaluation"], labels, label_output, file_sha256(path))
    if labels is not None and len(labels) != dataset.evaluation_count:
        raise ModelError(f"{path}: {len(labels)} labels for {dataset.evaluation_count} evaluation samples")
    return dataset
