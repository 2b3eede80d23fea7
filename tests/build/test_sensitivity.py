"""Per-layer sensitivity of static INT8 on the real digits demo: activation error, then one layer at a time."""

from __future__ import annotations

import onnx
import pytest

from farm import resources
from farm.build import sensitivity
from farm.build.loading import load_model_and_data
from farm.build.quantizers import Recipe
from farm.build.variants import build_variants


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("sens")
    info, data, spec = load_model_and_data(resources.demo_model(), resources.demo_data(), None)
    manifest = build_variants(info, data, spec, out, variants=["fp32"])
    return info, data, spec, out, manifest


@pytest.mark.real  # starts a process
def test_every_quantized_layer_gets_its_activation_error_and_the_worst_are_judged_alone_on_the_outputs(digits):
    info, data, spec, out, manifest = digits
    doc = sensitivity.analyse(info, data, spec, Recipe(), 300, out, manifest["files"],
                              manifest["variants"]["fp32"]["host"]["accuracy"])
    names = {n.name for n in onnx.load(str(resources.demo_model())).graph.node}
    layers = doc["layers"]
    assert {layer["layer"] for layer in layers} >= {n for n in names if n.endswith("Conv") or n.endswith("Gemm")}
    assert all(set(layer["nodes"]) <= names for layer in layers)
    tried = [layer for layer in layers if "alone" in layer]
    assert len(tried) == min(sensitivity.GROUP_CAP, len(layers))
    assert [t["alone"]["worst_ratio"] for t in tried] == sorted((t["alone"]["worst_ratio"] for t in tried),
                                                                reverse=True)
    for layer in tried:  # the judged output, by the spec's metric (top1 on labels: a drop in points)
        # top-1 on labels, and beside it the decisions that differ from FP32's
        assert [(r["output"], r["metric"]) for r in layer["alone"]["losses"]] == [("logits", "top1"),
                                                                                ("logits", "agreement")]
        assert layer["alone"]["losses"][0]["loss"] is not None and layer["alone"]["error"] is None
    assert all(layer["sqnr_db"] is not None for layer in layers)
    assert doc["samples"] == sensitivity.SAMPLE_CAP and doc["seconds"] > 0 and doc["peak_rss_mb"] > 0


def test_the_activation_matching_feeds_no_more_samples_than_its_memory_budget_holds(digits, monkeypatch):
    info, data, spec, out, _ = digits
    monkeypatch.setattr(sensitivity, "ACTIVATION_BUDGET_MB", 0.001)
    assert sensitivity._samples_that_fit(out / "digits.fp32.onnx", spec, data, 300) == 1
    monkeypatch.setattr(sensitivity, "ACTIVATION_BUDGET_MB", 10_000)
    assert sensitivity._samples_that_fit(out / "digits.fp32.onnx", spec, data, 300) == sensitivity.SAMPLE_CAP
    assert sensitivity._samples_that_fit(out / "digits.fp32.onnx", spec, data, 5) == 5
