"""The detection and ctc metrics on small real models, quantized for real and measured by the agent on the host."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from detmodels import ctc_features, ctc_recognizer, detector_images, face_images, packed_detector, two_output_detector

from farm.build.variants import build
from farm.errors import ModelError

PACKED = "outputs:\n  output0: {metric: detection, boxes: 0-3, scores: 4-, box_format: cxcywh, anchors_axis: last, " \
         "score_threshold: 0.25, max_loss_pct: 10}\n"


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("detector")
    images, boxes = detector_images(160)
    np.savez(folder / "det.npz", calibration=images[:120], evaluation=images[120:])
    return packed_detector(folder / "det.onnx"), folder / "det.npz"


def built(tmp_path: Path, model: Path, data: Path, spec_text: str, variants=("fp32", "int8_static")) -> dict:
    spec = tmp_path / "model.farm.yaml"
    spec.write_text(spec_text)
    return build(model, data, tmp_path / "out", spec_path=spec, variants=list(variants))["variants"]


@pytest.mark.real  # starts a process
def test_a_packed_detector_whose_static_int8_loses_its_detections_fails_detection(tmp_path, detector):
    found = built(tmp_path, *detector, PACKED)
    fp32 = found["fp32"]["host"]["accuracy"]["outputs"]["output0"]
    assert fp32["fp32_detections"] >= 60 and fp32["recall"] == 1.0 and fp32["precision"] == 1.0
    static = found["int8_static"]["host"]
    figures = static["accuracy"]["outputs"]["output0"]
    assert figures["recall"] < 0.25  # one uint8 scale for box rows up to 320 and scores below 1
    [row] = static["losses"]
    assert row["metric"] == "detection" and row["ok"] is False and row["loss"] > 75


@pytest.mark.real  # starts a process
def test_a_packed_detector_that_keeps_its_detections_passes_detection(tmp_path, detector):
    found = built(tmp_path, *detector, PACKED + "quantize:\n  exclude_nodes: [pack]\n")  # the Concat kept in float
    figures = found["int8_static"]["host"]["accuracy"]["outputs"]["output0"]
    assert figures["recall"] >= 0.95 and figures["precision"] >= 0.95
    assert all(row["ok"] for row in found["int8_static"]["host"]["losses"])


@pytest.mark.real  # starts a process
def test_labelled_boxes_give_map_and_the_agreement_with_fp32_beside_it(tmp_path, detector):
    model, _ = detector
    images, boxes = detector_images(160)
    np.savez(tmp_path / "labelled.npz", calibration=images[:120], evaluation=images[120:],
             **{"labels:output0": boxes[120:]})
    found = built(tmp_path, model, tmp_path / "labelled.npz", PACKED)
    assert found["fp32"]["host"]["accuracy"]["outputs"]["output0"]["map50"] == pytest.approx(1.0)
    rows = {row["metric"]: row for row in found["int8_static"]["host"]["losses"]}
    assert set(rows) == {"detection", "agreement"}  # the mAP drop, and the decisions that flip against FP32
    assert rows["detection"]["ok"] is False and rows["agreement"]["ok"] is False and rows["agreement"]["loss"] > 75


TWO_OUTPUTS = ("outputs:\n  classificators: {metric: detection, boxes: regressors, decode: blazeface, "
               "score_threshold: 0.5, nms_iou: 0.3, max_loss_pct: 10}\n")


@pytest.mark.parametrize("background, kept", [(-2000.0, False), (-8.0, True)])
@pytest.mark.real  # starts a process
def test_a_blazeface_style_detector_with_two_outputs_is_judged_by_the_faces_it_keeps(tmp_path, background, kept):
    images = face_images(150)
    np.savez(tmp_path / "faces.npz", calibration=images[:110], evaluation=images[110:])
    model = two_output_detector(tmp_path / "faces.onnx", background)
    found = built(tmp_path, model, tmp_path / "faces.npz", TWO_OUTPUTS)
    assert found["fp32"]["host"]["accuracy"]["outputs"]["classificators"]["fp32_detections"] >= 40
    figures = found["int8_static"]["host"]["accuracy"]["outputs"]["classificators"]
    [row] = found["int8_static"]["host"]["losses"]
    if kept:  # a logit head calibrated to -8..2 keeps its faces
        assert figures["recall"] == 1.0 and figures["precision"] == 1.0 and row["ok"] is True
    else:  # one calibrated to -2000..2, as BlazeFace's own, loses them all
        assert figures["recall"] == 0.0 and row["ok"] is False


def greedy(logits: np.ndarray) -> list[int]:
    return [int(c) for c, _ in itertools.groupby(logits.argmax(-1)) if c != 0]


def levenshtein(a: list, b: list) -> int:
    table = np.arange(len(b) + 1)
    for i, x in enumerate(a, 1):
        row = [i]
        for j, y in enumerate(b, 1):
            row.append(min(table[j] + 1, row[j - 1] + 1, table[j - 1] + (x != y)))
        table = np.array(row)
    return int(table[-1])


@pytest.mark.real  # starts a process
def test_a_time_first_ctc_recognizer_is_0_against_itself_and_int8_equals_an_independent_decode(tmp_path, capsys):
    features, texts = ctc_features(160)
    np.savez(tmp_path / "ctc.npz", calibration=features[:120], evaluation=features[120:])
    model = ctc_recognizer(tmp_path / "ctc.onnx")
    spec = "outputs:\n  logits: {metric: ctc, batch_axis: 1, blank: 0, charset: abcde}\n"
    found = built(tmp_path, model, tmp_path / "ctc.npz", spec, ("fp32", "int8_static"))
    fp32 = found["fp32"]["host"]
    assert fp32["accuracy"]["outputs"]["logits"]["string_match"] == 1.0 and fp32["losses"][0]["loss"] == 0.0
    figures = found["int8_static"]["host"]["accuracy"]["outputs"]["logits"]
    reference = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    int8 = ort.InferenceSession(str(tmp_path / "out" / found["int8_static"]["file"]),
                                providers=["CPUExecutionProvider"])
    same, edits, chars = 0, 0, 0
    for sample in features[120:]:
        want = greedy(reference.run(None, {"features": sample[None]})[0][:, 0])
        got = greedy(int8.run(None, {"features": sample[None]})[0][:, 0])
        same, edits, chars = same + (got == want), edits + levenshtein(got, want), chars + len(want)
    assert same < 40  # INT8 changes some strings here: the figures below are not all trivially 1 and 0
    assert figures["string_match"] == pytest.approx(same / 40) and figures["cer"] == pytest.approx(edits / chars)
    assert found["int8_static"]["host"]["losses"][0]["loss"] == pytest.approx(100 * (1 - same / 40))


def test_a_layout_that_cannot_be_judged_is_refused_naming_the_output_and_its_real_shape(tmp_path):
    features, _ = ctc_features(120)
    np.savez(tmp_path / "ctc.npz", calibration=features)
    model = ctc_recognizer(tmp_path / "ctc.onnx")
    with pytest.raises(ModelError, match=r"ctc needs steps x classes per sample.*'logits' returns \[20, 1, 6\]"):
        built(tmp_path, model, tmp_path / "ctc.npz", "outputs:\n  logits: {metric: ctc, batch_axis: 0}\n")


def test_labels_that_are_not_boxes_are_refused_for_detection_naming_the_fix(tmp_path, detector):
    from farm.build.loading import load_model_and_data

    model, _ = detector
    images, _ = detector_images(130)
    np.savez(tmp_path / "flags.npz", calibration=images[:110], evaluation=images[110:],
             **{"labels:output0": np.ones(20)})
    (tmp_path / "model.farm.yaml").write_text(PACKED)
    with pytest.raises(ModelError,
                       match=r"labels:output0 has shape \[20\]; detection labels are boxes, \[N, boxes, 5\]"):
        load_model_and_data(model, tmp_path / "flags.npz", tmp_path / "model.farm.yaml")
