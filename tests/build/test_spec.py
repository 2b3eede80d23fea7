"""A model spec checked against its model and data, in this process (tests/e2e/test_real_models.py: the same
mistakes through `farm quantize`): each is one error naming the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from farm.build.loading import load_model_and_data
from farm.build.spec import SpecError

VAD = Path(__file__).resolve().parents[2] / "models" / "vad"
VAD_INPUTS = "sequence: true\ninputs:\n  sr: {value: 16000}\n  h: {from_output: hn, batch_axis: 1}\n"


def error_of(tmp_path: Path, text: str) -> SpecError:
    spec = tmp_path / "vad.farm.yaml"
    spec.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_model_and_data(VAD / "vad.onnx", VAD / "vad.npz", spec)
    assert str(caught.value).startswith(f"{spec}:")
    return caught.value


@pytest.mark.parametrize(("outputs", "line", "field", "words"), [
    ("outputs:\n  speach: {metric: binary}\n", 6, "outputs",
     "the model has no output 'speach' (its outputs: speech, hn)"),
    ("outputs:\n  speech: {metric: top1, labels: true}\n", 6, "metric", "top1 needs a class axis of 2 or more"),
    ("outputs:\n  speech: {metric: binary, max_loss: 2}\n", 6, "max_loss", "max_loss does not apply to metric binary"),
    ("outputs:\n  speech: {metric: mae}\n", 6, "max_loss", "metric mae needs its limit max_loss"),
    ("outputs:\n  speech: {metric: f1}\n", 6, "metric", "unknown metric 'f1'"),
])
def test_a_bad_output_names_its_line_and_field(tmp_path, outputs, line, field, words):
    error = error_of(tmp_path, VAD_INPUTS + outputs)
    assert (error.line, error.field) == (line, field) and words in str(error), str(error)


def test_a_bad_state_axis_names_the_input_and_the_shapes(tmp_path):
    error = error_of(tmp_path, "sequence: true\ninputs:\n  sr: {value: 16000}\n  h: {from_output: hn, batch_axis: 7}\n")
    assert "vad.farm.yaml:4, input 'h', field 'batch_axis': expected an axis of [1, 1, 64] or null, got 7" in str(error)


def test_an_input_the_model_lacks_is_named_with_the_ones_it_has(tmp_path):
    error = error_of(tmp_path, "inputs:\n  audoi: {}\n")
    assert "the model has no input 'audoi' (its inputs: audio, sr, h)" in str(error)
