"""A packed-head detector and a time-first CTC recognizer through `farm run` on a real stand-in."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from detmodels import ctc_features, ctc_recognizer, detector_images, face_images, packed_detector, two_output_detector
from helpers import farm

# a minute or more of real stand-ins: the default run skips it, CI runs it (-m slow locally)
pytestmark = pytest.mark.slow


def run(lab, cwd: Path, model: Path, data: Path, spec: str) -> tuple:
    lab_obj, _ = lab
    (cwd / "model.farm.yaml").write_text(spec)
    proc = farm("run", "--model", model, "--data", data, "--spec", cwd / "model.farm.yaml", "--inventory",
                lab_obj.dir / "inventory.yaml", "--board", "t3", "--runs", "20", "--variants", "fp32,int8_static",
                cwd=cwd)
    results = json.loads((cwd / "results" / "latest" / "results.json").read_text())
    board = results["boards"][0]
    assert board["status"] == "ok", board["error"]
    return proc, results, {v: {c["item"]: c for c in found["checks"]} for v, found in board["variants"].items()}


def test_a_packed_detector_losing_its_detections_in_static_int8_fails_detection_on_the_board(lab, tmp_path):
    images, _ = detector_images(160)
    np.savez(tmp_path / "det.npz", calibration=images[:120], evaluation=images[120:])
    spec = ("outputs:\n  output0: {metric: detection, boxes: 0-3, scores: 4-, box_format: cxcywh, anchors_axis: last,"
            " score_threshold: 0.25, max_loss_pct: 10}\n")
    proc, results, checks = run(lab, tmp_path, packed_detector(tmp_path / "det.onnx"), tmp_path / "det.npz", spec)
    assert checks["fp32"]["accuracy"]["status"] == "pass" and checks["fp32"]["accuracy"]["value"] == 0.0
    static = checks["int8_static"]["accuracy"]
    figures = results["boards"][0]["variants"]["int8_static"]["accuracy"]["outputs"]["output0"]
    assert static["status"] == "fail" and figures["recall"] < 0.25 and proc.returncode == 1
    assert "detections lost or added against FP32 (recall" in static["why"]


def test_a_two_output_detector_whose_static_int8_keeps_its_faces_passes_detection_on_the_board(lab, tmp_path):
    images = face_images(150)
    np.savez(tmp_path / "faces.npz", calibration=images[:110], evaluation=images[110:])
    spec = ("outputs:\n  classificators: {metric: detection, boxes: regressors, decode: blazeface, "
            "score_threshold: 0.5, nms_iou: 0.3, max_loss_pct: 10}\n")
    _, results, checks = run(lab, tmp_path, two_output_detector(tmp_path / "faces.onnx", -8.0), tmp_path / "faces.npz",
                             spec)
    figures = results["boards"][0]["variants"]["int8_static"]["accuracy"]["outputs"]["classificators"]
    assert checks["int8_static"]["accuracy"]["status"] == "pass" and figures["fp32_detections"] >= 40
    assert figures["recall"] == 1.0 and figures["precision"] == 1.0


def test_a_time_first_ctc_recognizer_is_judged_by_its_decoded_strings_on_the_board(lab, tmp_path):
    features, _ = ctc_features(160)
    np.savez(tmp_path / "ctc.npz", calibration=features[:120], evaluation=features[120:])
    model = ctc_recognizer(tmp_path / "ctc.onnx")
    spec = "outputs:\n  logits: {metric: ctc, batch_axis: 1, blank: 0, charset: abcde, max_loss_pct: 50}\n"
    proc, results, checks = run(lab, tmp_path, model, tmp_path / "ctc.npz", spec)
    assert "the model declares [1, 'seqlen'] but returns [20, 1, 6]" in proc.stderr + proc.stdout
    assert checks["fp32"]["accuracy"]["status"] == "pass" and checks["fp32"]["accuracy"]["value"] == 0.0
    figures = results["boards"][0]["variants"]["int8_static"]["accuracy"]["outputs"]["logits"]
    built = json.loads((tmp_path / "results" / "latest" / "manifest.json").read_text())["variants"]["int8_static"]
    int8 = ort.InferenceSession(str(next(tmp_path.rglob(built["file"]))), providers=["CPUExecutionProvider"])
    fp32 = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    decode = lambda s, x: [c for c, _ in  # noqa: E731
                           itertools.groupby(s.run(None, {"features": x[None]})[0][:, 0].argmax(-1)) if c != 0]
    same = sum(decode(int8, x) == decode(fp32, x) for x in features[120:])
    assert figures["n"] == 40 and figures["string_match"] == pytest.approx(same / 40)
    assert checks["int8_static"]["accuracy"]["value"] == pytest.approx(round(100 * (1 - same / 40), 4))
