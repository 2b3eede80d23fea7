"""Real models of the classes a DMS team ships, through real stand-ins, each judged by its spec's metrics.

A detector (BlazeFace: which anchors fire, where the boxes are), a landmark
regressor (FaceMesh: NME) and a stateful stream (a GRU voice-activity detector with
a scalar input and its state carried). Every figure a check judges is recomputed
here from the raw figures in results.json, by the metric the spec names.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from helpers import farm

pytestmark = pytest.mark.real  # `farm` as a process, on real models

MODELS = Path(__file__).resolve().parents[2] / "models"


def checks_of(results: dict, variant: str) -> dict:
    return {c["item"]: c for c in results["boards"][0]["variants"][variant]["checks"]}


def figures_of(results: dict, variant: str) -> dict:
    return results["boards"][0]["variants"][variant]["accuracy"]["outputs"]


@pytest.fixture(scope="module")
def run_demo(lab, tmp_path_factory):
    """`farm run --spec models/<name>/<name>.farm.yaml` on one stand-in, once per demo."""
    lab_obj, _ = lab
    done: dict[str, tuple] = {}

    def run(name: str) -> tuple:
        if name not in done:
            cwd = tmp_path_factory.mktemp(name)
            proc = farm("run", "--spec", MODELS / name / f"{name}.farm.yaml", "--inventory",
                        lab_obj.dir / "inventory.yaml", "--board", "t3", "--runs", "20", cwd=cwd)
            done[name] = proc, json.loads((cwd / "results" / "latest" / "results.json").read_text())
        return done[name]

    return run


@pytest.mark.slow  # real models quantized and measured on stand-ins, half a minute (CI runs it)
def test_a_detector_is_judged_by_the_faces_it_finds_and_its_collapsed_static_int8_fails(run_demo):
    proc, results = run_demo("blazeface")
    assert results["boards"][0]["status"] == "ok", results["boards"][0]["error"]
    spec = results["model"]["spec"]
    assert spec["inputs"][0]["shape"] == [1, 3, 128, 128]  # the deployment shape, recorded
    [output] = spec["outputs"]
    assert (output["name"], output["metric"], output["boxes_output"], output["decode"]) == (
        "classificators", "detection", "regressors", "blazeface")
    fp32 = checks_of(results, "fp32")["accuracy"]
    assert fp32["status"] == "pass" and fp32["value"] == 0.0  # FP32 finds its own faces, all of them
    assert figures_of(results, "fp32")["classificators"]["fp32_detections"] >= 40
    dynamic = checks_of(results, "int8_dynamic")
    assert results["model"]["variants"]["int8_dynamic"]["status"] == "no-op"
    for item in ("accuracy", "speedup"):
        assert dynamic[item]["status"] == "skip" and "quantized nothing (no-op)" in dynamic[item]["why"]
    static = checks_of(results, "int8_static")["accuracy"]
    assert static["status"] == "fail" and proc.returncode == 1
    figures = figures_of(results, "int8_static")["classificators"]
    [row] = static["details"]
    assert figures["recall"] < 0.5 and "recall" in row["what"]
    assert row["value"] == pytest.approx((1 - min(figures["recall"], figures["precision"])) * 100)
    assert row["verdict"] == "fail" and row["limit"] == 10.0


@pytest.mark.slow  # real models quantized and measured on stand-ins, half a minute (CI runs it)
def test_landmarks_are_judged_by_nme_and_static_int8_keeps_them(run_demo):
    _, results = run_demo("facemesh")
    static = checks_of(results, "int8_static")["accuracy"]
    landmarks = next(d for d in static["details"] if d["output"] == "conv2d_20")
    assert landmarks["metric"] == "nme" and landmarks["verdict"] == "pass"
    assert landmarks["value"] == pytest.approx(figures_of(results, "int8_static")["conv2d_20"]["nme"] * 100)
    assert 0 < landmarks["value"] < 1.0
    speedup = checks_of(results, "int8_static")["speedup"]
    if speedup["status"] == "fail":  # PRelu stays in float: the advice names what the profile shows
        assert "the profile shows" in speedup["why"] and "PRelu" in speedup["why"]


def test_a_stream_carries_its_state_and_farms_figure_is_the_carried_runs(run_demo):
    _, results = run_demo("vad")
    data = np.load(MODELS / "vad" / "vad.npz")
    frames, labels = data["evaluation"], data["labels"]
    session = ort.InferenceSession(str(MODELS / "vad" / "vad.onnx"), providers=["CPUExecutionProvider"])
    sr = np.array(16000, dtype=np.int64)

    def decisions(carry: bool) -> np.ndarray:
        h, found = np.zeros((1, 1, 64), np.float32), []
        for frame in frames:
            speech, hn = session.run(None, {"audio": frame[None], "sr": sr, "h": h})
            h = hn if carry else np.zeros_like(hn)
            found.append(speech.item() > 0.5)
        return np.array(found)

    carried, zeros = decisions(True), decisions(False)
    assert (carried != zeros).sum() >= 5  # the state changes this model's decisions
    carried_accuracy, zeros_accuracy = (carried == labels).mean(), (zeros == labels).mean()
    assert carried_accuracy != zeros_accuracy
    assert figures_of(results, "fp32")["speech"]["accuracy"] == pytest.approx(carried_accuracy)
    assert checks_of(results, "fp32")["accuracy"]["status"] == "pass"
    static = checks_of(results, "int8_static")["accuracy"]  # quantized state arithmetic compounds over the stream
    assert static["status"] == "fail" and "accuracy drop on labels" in static["why"]


@pytest.mark.slow  # real models quantized and measured on stand-ins, half a minute (CI runs it)
def test_the_models_memory_does_not_grow_with_the_evaluation_set(lab, tmp_path):
    lab_obj, _ = lab
    data = dict(np.load(MODELS / "digits" / "digits.npz"))
    peaks = {}
    for count in (10, 300):
        path = tmp_path / f"digits-{count}.npz"
        np.savez(path, calibration=data["calibration"], evaluation=data["evaluation"][:count],
                 labels=data["labels"][:count])
        cwd = tmp_path / str(count)
        cwd.mkdir()
        proc = farm("run", "--model", MODELS / "digits" / "digits.onnx", "--data", path, "--variants", "fp32",
                    "--inventory", lab_obj.dir / "inventory.yaml", "--board", "t3", "--runs", "10", cwd=cwd)
        results = json.loads((cwd / "results" / "latest" / "results.json").read_text())
        variant = results["boards"][0]["variants"]["fp32"]
        assert variant["accuracy"]["n"] == count, proc.stderr[-2000:]
        peaks[count] = variant["peak_rss_mb"]
    assert abs(peaks[300] - peaks[10]) / peaks[10] < 0.10, peaks


@pytest.mark.slow  # real models quantized and measured on stand-ins, half a minute (CI runs it)
def test_reused_variants_are_checked_and_a_broken_int8_variant_fails_accuracy_by_its_metric(lab, tmp_path):
    """`farm run --variants-dir` takes what `farm quantize` built; a variant with wrecked weights is caught."""
    import onnx
    from onnx import numpy_helper

    from farm.util import file_sha256

    lab_obj, _ = lab
    built = tmp_path / "built"
    digits = MODELS / "digits"
    quantize = farm("quantize", digits / "digits.onnx", "--data", digits / "digits.npz", "--out", built,
                    "--variants", "fp32,int8_static", cwd=tmp_path)
    assert quantize.returncode == 0, quantize.stderr[-2000:]
    manifest_path = built / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    static = built / manifest["variants"]["int8_static"]["file"]
    model = onnx.load(str(static))
    for tensor in model.graph.initializer:  # every INT8 weight replaced by noise: a broken quantization
        if tensor.data_type == onnx.TensorProto.INT8 and len(tensor.dims) > 1:
            values = np.random.default_rng(0).integers(-127, 128, tuple(tensor.dims)).astype(np.int8)
            tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    onnx.save(model, str(static))
    run = ("run", "--model", digits / "digits.onnx", "--data", digits / "digits.npz", "--variants-dir", built,
           "--variants", "fp32,int8_static", "--inventory", lab_obj.dir / "inventory.yaml", "--board", "t3",
           "--runs", "10")
    refused = farm(*run, cwd=tmp_path)
    assert refused.returncode == 2 and "not the file the manifest recorded" in refused.stderr
    manifest["variants"]["int8_static"]["sha256"] = file_sha256(static)  # as if a broken recipe had built it
    manifest_path.write_text(json.dumps(manifest))
    proc = farm(*run, cwd=tmp_path)
    results = json.loads((tmp_path / "results" / "latest" / "results.json").read_text())
    assert proc.returncode == 1
    assert checks_of(results, "fp32")["accuracy"]["status"] == "pass"
    broken = checks_of(results, "int8_static")["accuracy"]
    figures = figures_of(results, "int8_static")["logits"]
    fp32 = figures_of(results, "fp32")["logits"]
    rows = {d["metric"]: d for d in broken["details"]}  # the drop on labels, and the decisions flipped beside it
    assert broken["status"] == "fail" and rows["top1"]["value"] == pytest.approx(
        (fp32["top1"] - figures["top1"]) * 100, abs=1e-3)
    assert rows["agreement"]["value"] == pytest.approx((1 - figures["agreement"]) * 100, abs=1e-3)
    assert broken["value"] == pytest.approx(max(rows["top1"]["value"], rows["agreement"]["value"]), abs=1e-3)
    assert "top1 drop on labels against FP32" in broken["why"]


def bad(tmp_path: Path, *args) -> str:
    """farm quantize with a mistake: exit 2, one line, no traceback; the line."""
    proc = farm("quantize", *args, "--out", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr.strip()


def spec_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "vad.farm.yaml"
    path.write_text(text)
    return path


VAD = MODELS / "vad"
VAD_INPUTS = "inputs:\n  sr: {value: 16000}\n  h: {from_output: hn, batch_axis: 1}\n"


def test_a_state_or_constant_input_without_a_spec_is_named(tmp_path):
    alone = tmp_path / "vad.onnx"  # no vad.farm.yaml beside this copy
    shutil.copy(VAD / "vad.onnx", alone)
    line = bad(tmp_path, alone, "--data", VAD / "vad.npz")
    assert "3 inputs would come from data (audio, sr, h)" in line and "(value:) or state (from_output:)" in line


@pytest.mark.parametrize("outputs, field, words", [
    ("outputs:\n  speach: {metric: binary}\n", "outputs", "the model has no output 'speach' (its outputs: speech, hn)"),
    ("outputs:\n  speech: {metric: top1, labels: true}\n", "metric", "top1 needs a class axis of 2 or more"),
    ("outputs:\n  speech: {metric: binary, max_loss: 2}\n", "max_loss", "max_loss does not apply to metric binary"),
    ("outputs:\n  speech: {metric: mae}\n", "max_loss", "metric mae needs its limit max_loss"),
    ("outputs:\n  speech: {metric: f1}\n", "metric", "unknown metric 'f1'"),
])
def test_a_bad_output_in_the_spec_is_exit_2_naming_file_line_and_field(tmp_path, outputs, field, words):
    spec = spec_file(tmp_path, "sequence: true\n" + VAD_INPUTS + outputs)
    line = bad(tmp_path, VAD / "vad.onnx", "--data", VAD / "vad.npz", "--spec", spec)
    assert line.startswith(f"farm: error: {spec}:") and f"field '{field}'" in line and words in line, line


def test_a_bad_input_in_the_spec_is_exit_2_naming_it(tmp_path):
    spec = spec_file(tmp_path, "sequence: true\ninputs:\n  sr: {value: 16000}\n  h: {from_output: hn, batch_axis: 7}\n")
    line = bad(tmp_path, VAD / "vad.onnx", "--data", VAD / "vad.npz", "--spec", spec)
    assert f"{spec}:4, input 'h', field 'batch_axis': expected an axis of [1, 1, 64] or null, got 7" in line
    spec = spec_file(tmp_path, "inputs:\n  audoi: {}\n")
    line = bad(tmp_path, VAD / "vad.onnx", "--data", VAD / "vad.npz", "--spec", spec)
    assert "the model has no input 'audoi' (its inputs: audio, sr, h)" in line


def test_float_data_for_an_integer_input_is_refused_not_cast(tmp_path):
    frames = np.load(VAD / "vad.npz")
    data = tmp_path / "vad-sr.npz"
    np.savez(data, **{"calibration:audio": frames["calibration"], "calibration:sr": np.full(640, 16000.0)})
    spec = spec_file(tmp_path, "sequence: true\ninputs:\n  h: {from_output: hn, batch_axis: 1}\n"
                               "outputs:\n  speech: {metric: binary}\n")
    line = bad(tmp_path, VAD / "vad.onnx", "--data", data, "--spec", spec, "--variants", "fp32")
    assert "calibration input 'sr': the model takes int64, the data is float64" in line
