"""int8_mixed: the fewest most sensitive layers kept in float that meet every limit, or why none does."""

from __future__ import annotations

from pathlib import Path

import pytest

from farm.build import mixed
from farm.build.datafile import TensorSpec
from farm.build.modelfile import ModelInfo
from farm.build.quantizers import Recipe
from farm.build.spec import ModelSpec, OutputSpec

SPEC = ModelSpec(1, False, [], [OutputSpec("scores", "iou", 0, 10.0), OutputSpec("boxes", "mae", 0, 2.0)])
LAYERS = [{"layer": f"conv{i}", "nodes": [f"conv{i}", f"relu{i}"], "op_types": ["Conv", "Relu"],
           "sqnr_db": 20.0, "added_db": 5.0 - i, **({"alone": {"worst_ratio": 3.0 - i}} if i < 3 else {})}
          for i in range(20)]


@pytest.fixture
def fake_builds(monkeypatch):
    """The sensitivity ranking and the builds faked: a mix's loss falls with each layer it keeps in float."""
    built: list[tuple] = []
    monkeypatch.setattr(mixed, "analyse", lambda *a, **k: {"layers": LAYERS, "seconds": 1.0})

    def build(info, data, spec, variant, recipe, count, out_dir):
        built.append(recipe.exclude_nodes)
        return {"status": "ok", "reason": None, "file": f"mix-{len(recipe.exclude_nodes)}.onnx", "recipe": {}}

    def host(path, out_dir, files, timing=True):
        kept = int(Path(path).stem.split("-")[1]) // 2  # two nodes a layer
        return {"accuracy": {"kept": kept}}

    def losses(spec, host_doc, fp32):
        kept = host_doc["accuracy"]["kept"]
        return [{"output": "scores", "metric": "iou", "loss": max(0.0, 40.0 - 6.0 * kept), "unit": "%", "ok": None},
                {"output": "boxes", "metric": "mae", "loss": 1.0, "unit": "", "ok": None}]

    monkeypatch.setattr(mixed, "_build_variant", build)
    monkeypatch.setattr(mixed, "_host_figures", host)
    monkeypatch.setattr(mixed, "host_losses", losses)
    return built


INFO = ModelInfo(Path("m.onnx"), "m", "0" * 64, 17, [TensorSpec("x", (1,), "float32")], [], None)


def test_int8_mixed_keeps_the_fewest_most_sensitive_layers_in_float_that_meet_every_limit(fake_builds):
    entry, _ = mixed.build_mixed(INFO, None, SPEC, Recipe(), 100, Path("."), {}, {"fp32": True})
    # 40 - 6k < 10 first at k = 6: doubling tries 1, 2, 4, 8, then bisection 6 and 5
    assert [len(nodes) // 2 for nodes in fake_builds] == [1, 2, 4, 8, 6, 5]
    assert entry["status"] == "ok" and entry["mixed"]["within"] is True
    assert entry["mixed"]["kept_in_float"] == [f"conv{i}" for i in range(6)]
    assert set(fake_builds[-2]) == {n for layer in LAYERS[:6] for n in layer["nodes"]}
    assert entry["mixed"]["why"]["conv0"]["alone"] == {"worst_ratio": 3.0}  # why: its sensitivity figures
    assert entry["mixed"]["best"]["float_layers"] == 6


def test_int8_mixed_says_it_cannot_with_the_best_loss_when_no_mix_within_half_the_layers_meets_the_limits(fake_builds,
                                                                                                  monkeypatch):
    monkeypatch.setattr(mixed, "host_losses", lambda spec, host, fp32: [
        {"output": "scores", "metric": "iou", "loss": 50.0 - host["accuracy"]["kept"], "unit": "%", "ok": None},
        {"output": "boxes", "metric": "mae", "loss": 1.0, "unit": "", "ok": None}])
    entry, _ = mixed.build_mixed(INFO, None, SPEC, Recipe(), 100, Path("."), {}, {"fp32": True})
    assert [len(nodes) // 2 for nodes in fake_builds] == [1, 2, 4, 8, 10]  # up to half of the 20 layers
    assert entry["mixed"]["within"] is False and entry["mixed"]["best"]["float_layers"] == 10
    assert entry["file"] == "mix-20.onnx"  # the nearest mix, measured on the boards all the same
    assert "no mix of up to 10 of 20 layers kept in float" in entry["reason"]
    assert "best: scores 40 %, boxes 1 with 10 layer(s) in float" in entry["reason"]
