"""Data files (.npz) from anyone: sized and typed from their headers before anything is decompressed."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from helpers import farm


def _npz(path, members: dict[str, bytes], compress: bool = True):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as archive:
        for name, payload in members.items():
            archive.writestr(f"{name}.npy", payload)
    return path


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


@pytest.fixture
def digits_arrays(digits_data):
    with np.load(digits_data) as data:
        return {key: data[key] for key in data.files}


def quantize(tmp_path, model, data, **env):
    return farm("quantize", model, "--data", data, "--out", tmp_path / "out", "--variants", "fp32", cwd=tmp_path,
                env=env, timeout=300)


@pytest.mark.real  # starts a process
def test_a_zip_bomb_npz_exits_2_naming_the_array_and_its_size_before_inflating_it(tmp_path, digits_model,
                                                                                   digits_arrays):
    bomb = np.zeros((100 * 2 ** 20 // (32 * 32 * 4), 1, 32, 32), np.float32)  # 100 MB of zeros: 100 KB deflated
    path = _npz(tmp_path / "bomb.npz", {"calibration": _npy(digits_arrays["calibration"]), "evaluation": _npy(bomb),
                                        "labels": _npy(digits_arrays["labels"])})
    assert path.stat().st_size < 2 * 2 ** 20
    done = quantize(tmp_path, digits_model, path, FARM_MAX_ARRAY_MB="64")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"{path}: array 'evaluation' is 100 MB uncompressed, over the 64 MB farm decompresses per array " \
           "(FARM_MAX_ARRAY_MB)" in done.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.real  # starts a process
def test_an_npy_header_claiming_terabytes_is_refused_by_its_header_alone(tmp_path, digits_model, digits_arrays):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (2 ** 38, 1, 32, 32)})
    path = _npz(tmp_path / "liar.npz", {"calibration": header.getvalue() + bytes(4096),
                                        "evaluation": _npy(digits_arrays["evaluation"])}, compress=False)
    done = quantize(tmp_path, digits_model, path)  # the default bound: 4,096 MB per array
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "array 'calibration' is 1,073,741,824 MB uncompressed, over the 4,096 MB" in done.stderr


@pytest.mark.real  # starts a process
def test_an_npz_with_object_arrays_exits_2_with_one_line_not_a_traceback(tmp_path, digits_model, digits_arrays):
    hostile = np.array([{"pickled": "payload"}] * 300, dtype=object)
    path = tmp_path / "objects.npz"
    np.savez(path, calibration=hostile, evaluation=digits_arrays["evaluation"], labels=digits_arrays["labels"])
    done = quantize(tmp_path, digits_model, path)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "ValueError" not in done.stderr
    (line,) = [s for s in done.stderr.splitlines() if s.startswith("farm: error:")]
    assert f"{path}: array 'calibration' holds Python objects (dtype object)" in line and "never pickles" in line


@pytest.mark.real  # starts a process
def test_a_data_file_within_the_bounds_still_quantizes(tmp_path, digits_model, digits_data):
    done = quantize(tmp_path, digits_model, digits_data, FARM_MAX_ARRAY_MB="2")  # digits: 1.2 MB + 1.8 MB
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out" / "manifest.json").exists()
    bad = quantize(tmp_path, digits_model, digits_data, FARM_MAX_ARRAY_MB="lots")
    assert bad.returncode == 2 and "FARM_MAX_ARRAY_MB='lots': expected a whole number" in bad.stderr
