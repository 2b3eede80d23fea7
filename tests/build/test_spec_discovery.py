"""A model spec written beside the model (`<model>.farm.yaml`) is used when no --spec is given, and said so."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import farm

from farm.build.loading import load_model_and_data
from farm.build.spec import spec_beside
from farm.errors import ModelError

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_the_spec_beside_a_model_is_its_name_with_farm_yaml(tmp_path):
    model = tmp_path / "dms.onnx"
    assert spec_beside(model) is None
    (tmp_path / "dms.farm.yaml").write_text("outputs: {}\n")
    (tmp_path / "other.farm.yaml").write_text("outputs: {}\n")
    assert spec_beside(model) == tmp_path / "dms.farm.yaml"


def said(caplog) -> list[str]:
    """What loading the model said (to the console, through logging)."""
    return [r.getMessage() for r in caplog.records if r.name == "farm.build.loading"]


@pytest.mark.parametrize(("name", "metrics"), [("vad", {"speech": "binary"}),
                                               ("blazeface", {"classificators": "detection"})])
@pytest.mark.real  # starts a process
def test_a_demo_with_no_spec_given_is_judged_by_the_spec_beside_it_and_says_so(name, metrics, caplog):
    _, _, spec = load_model_and_data(MODELS / name / f"{name}.onnx", MODELS / name / f"{name}.npz", None)
    path = MODELS / name / f"{name}.farm.yaml"
    assert spec.source == str(path)
    assert said(caplog) == [f"model spec: {path}, found beside the model (--spec chooses another)"]
    assert {o.name: o.metric for o in spec.outputs} == metrics  # not the inferred cosine


def test_a_spec_given_wins_over_the_one_beside_the_model(tmp_path, caplog):
    given = tmp_path / "mine.yaml"
    given.write_text("sequence: true\ninputs:\n  sr: {value: 16000}\n  h: {from_output: hn, batch_axis: 1}\n"
                     "outputs:\n  speech: {metric: binary, threshold: 0.3}\n")
    _, _, spec = load_model_and_data(MODELS / "vad" / "vad.onnx", MODELS / "vad" / "vad.npz", given)
    assert spec.source == str(given) and said(caplog) == []
    assert spec.outputs[0].settings["threshold"] == 0.3


def test_a_model_with_no_spec_beside_it_is_inferred_and_its_state_input_named(tmp_path):
    alone = tmp_path / "vad.onnx"
    shutil.copy(MODELS / "vad" / "vad.onnx", alone)
    with pytest.raises(ModelError, match=r"3 inputs would come from data \(audio, sr, h\)"):
        load_model_and_data(alone, MODELS / "vad" / "vad.npz", None)


@pytest.mark.real  # `farm quantize` as a process
@pytest.mark.parametrize(("name", "metrics"), [("vad", ["binary"]), ("blazeface", ["detection"])])
def test_farm_quantize_of_a_demo_needs_no_spec_option(tmp_path, name, metrics):
    folder = MODELS / name
    proc = farm("quantize", folder / f"{name}.onnx", "--data", folder / f"{name}.npz", "--variants", "fp32",
                "--out", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"model spec: {folder / name}.farm.yaml, found beside the model" in proc.stderr
    spec = json.loads((tmp_path / "out" / "manifest.json").read_text())["spec"]
    assert spec["source"] == str(folder / f"{name}.farm.yaml")
    assert [o["metric"] for o in spec["outputs"]] == metrics
