"""The data file (.npz) that goes with a model: calibration, evaluation, labels.

Format: for a single-input model the arrays `calibration` and `evaluation`; for
several inputs one array per input, `calibration:<input>` and
`evaluation:<input>`. One sample per row: [N, *sample shape], the sample shape
being the model input's shape without its batch axis. Optional: `labels` (one
per evaluation sample, for the label output) and `labels:<output>` (for any
judged output), and `label_output` (which output `labels` belongs to; default
the first). Only the inputs that come from data are here: constants and state
come from the model spec.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from farm.errors import ConfigError, FarmError, ModelError
from farm.util import file_sha256

SECTIONS = ("calibration", "evaluation")
# The largest array farm decompresses from a data file: a .npz is a zip, and a few MB of it once
# could ask for any amount of memory. A lab with larger evaluation sets sets FARM_MAX_ARRAY_MB.
MAX_ARRAY_MB = 4096


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
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # output name ("" for plain `labels`) -> labels
    label_output: str | None = None
    sha256: str = ""

    @property
    def calibration_count(self) -> int:
        return len(next(iter(self.calibration.values()))) if self.calibration else 0

    @property
    def evaluation_count(self) -> int:
        return len(next(iter(self.evaluation.values()))) if self.evaluation else 0


def _section(path: Path, data, names: list[str], section: str) -> dict[str, np.ndarray]:
    arrays = {}
    for name in names:
        key = f"{section}:{name}"
        if key in data.files:
            arrays[name] = data[key]
        elif len(names) == 1 and section in data.files:
            arrays[name] = data[section]
    counts = {len(a) if a.ndim else 0 for a in arrays.values()}
    if len(counts) > 1:
        raise ModelError(f"{path}: {section} inputs have different sample counts {sorted(counts)}")
    return arrays


def max_array_bytes() -> int:
    given = os.environ.get("FARM_MAX_ARRAY_MB", "")
    if not given:
        return MAX_ARRAY_MB * 2 ** 20
    if not given.isdigit() or int(given) == 0:
        raise ConfigError(f"FARM_MAX_ARRAY_MB={given!r}: expected a whole number of MB above 0 "
                          f"(the largest array farm loads from a data file; default {MAX_ARRAY_MB})")
    return int(given) * 2 ** 20


def _check_members(path: Path, data) -> None:
    """Every array's size and type from the zip's and the .npy headers, before any is decompressed."""
    limit, total = max_array_bytes(), 0
    budget = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    for key in data.files:
        member = key + ".npy" if key + ".npy" in data.zip.namelist() else key
        size = data.zip.getinfo(member).file_size  # zipfile never inflates a member past it
        with data.zip.open(member) as stream:
            try:
                version = np.lib.format.read_magic(stream)
            except ValueError:
                version = None  # not an array: its bytes, read as they are
            if version is not None:
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(stream)
                if dtype.hasobject:
                    raise ModelError(f"{path}: array {key!r} holds Python objects (dtype {dtype}): farm loads only "
                                     "numbers and text, never pickles; save it with a numeric dtype "
                                     "(np.asarray(x, dtype=np.float32))")
                size = max(size, math.prod(shape) * dtype.itemsize)  # what loading it would allocate
        total += size
        if size > limit or total > budget:
            raise ModelError(f"{path}: array {key!r} is {_mb(size)} MB uncompressed, over the "
                             f"{_mb(limit if size > limit else budget)} MB farm decompresses "
                             f"{'per array (FARM_MAX_ARRAY_MB)' if size > limit else 'in all (half the memory)'}: "
                             "a zip bomb, or a data set to sample down")


def _mb(size: int) -> str:
    return f"{size / 2 ** 20:,.0f}" if size >= 10 * 2 ** 20 else f"{size / 2 ** 20:.1f}"


def load_data(path: str | Path, names: list[str]) -> DataSet:
    """The arrays of the inputs fed from data (`names`), per section, and the labels."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: data file not found")
    try:
        data = np.load(path)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable .npz file ({exc})") from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ModelError(f"{path}: a single array, not an .npz of named arrays (np.savez)")
    with data:
        try:
            _check_members(path, data)
        except FarmError:
            raise
        except Exception as exc:
            raise ModelError(f"{path}: not a readable .npz file ({exc})") from exc
        sections = {s: _section(path, data, names, s) for s in SECTIONS}
        plain = [s for s in SECTIONS if s in data.files]
        if len(names) > 1 and plain and not any(sections.values()):
            raise ModelError(f"{path}: {plain[0]!r} holds one input's samples, but {len(names)} inputs would come "
                             f"from data ({', '.join(names)}): name the arrays '{plain[0]}:<input>', or give a model "
                             "spec (--spec) saying which inputs are constants (value:) or state (from_output:)")
        if names and not any(sections.values()):
            raise ModelError(f"{path}: no 'calibration' or 'evaluation' arrays (found: {', '.join(data.files)})")
        for section, arrays in sections.items():
            missing = [n for n in names if arrays and n not in arrays]
            if missing:
                raise ModelError(f"{path}: {section} has no data for input {missing[0]!r} (keys: {section!r} for one "
                                 f"input, {section + ':' + missing[0]!r} for several)")
        labels = {key.partition(":")[2]: data[key] for key in data.files if key == "labels" or
                  key.startswith("labels:")}
        label_output = str(np.asarray(data["label_output"]).reshape(-1)[0]) if "label_output" in data.files else None
    dataset = DataSet(path, sections["calibration"], sections["evaluation"], labels, label_output, file_sha256(path))
    for output, found in labels.items():
        if len(found) != dataset.evaluation_count:
            key = f"labels:{output}" if output else "labels"
            raise ModelError(f"{path}: {len(found)} {key} for {dataset.evaluation_count} evaluation samples")
    return dataset
