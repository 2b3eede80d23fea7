"""Building variants: real onnxruntime quantization on the real demo models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from farm.build import quantizers
from farm.build.quantizers import Recipe
from farm.build.variants import build
from farm.config.settings import DEFAULT_VARIANTS
from farm.errors import ModelError
from farm.ui.cli import main
from farm.util import file_sha256


@pytest.fixture(scope="module")
def built(tmp_path_factory, digits_model, digits_data) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("variants")
    return out, build(digits_model, digits_data, out)


def test_every_variant_is_built_and_loads(built):
    out, manifest = built
    assert set(manifest["variants"]) == set(DEFAULT_VARIANTS)
    for entry in manifest["variants"].values():
        assert entry["status"] == "ok", entry["reason"]
        path = out / entry["file"]
        assert file_sha256(path) == entry["sha256"] and path.stat().st_size == entry["size_bytes"]
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    sizes = {n: e["size_bytes"] for n, e in manifest["variants"].items()}
    assert sizes["int8_static"] < sizes["fp32"] / 3


def test_manifest_describes_model_data_and_recipes(built, digits_model):
    out, manifest = built
    assert json.loads((out / "manifest.json").read_text()) == manifest
    model = manifest["model"]
    assert model["sha256"] == file_sha256(digits_model)
    assert model["opset"] == 17
    assert model["inputs"] == [{"name": "image", "shape": ["batch", 1, 32, 32], "dtype": "float32"}]
    assert manifest["data"]["calibration_samples"] == 300
    assert manifest["data"]["evaluation_samples"] == 450 and manifest["data"]["labels"]
    spec = manifest["spec"]  # inferred: the class vector with labels is judged top-1
    assert spec["source"] == "inferred" and spec["batch"] == 1
    assert spec["inputs"] == [{"name": "image", "source": "data", "dtype": "float32", "shape": [1, 1, 32, 32],
                               "batch_axis": 0}]
    assert [(o["name"], o["metric"], o["labels"]) for o in spec["outputs"]] == [("logits", "top1", True)]
    static = manifest["variants"]["int8_static"]
    assert static["recipe"] == {"format": "QDQ", "weight_type": "QInt8", "activation_type": "QUInt8",
                                "per_channel": True, "calibration_method": "minmax",
                                "calibration_samples": 300, "exclude_op_types": [], "exclude_nodes": []}
    assert static["float_op_types"] == {}  # every compute op is fed by DequantizeLinear
    assert static["quantized_op_types"] == {"Conv": 3, "Gemm": 3, "MaxPool": 3}
    dynamic = manifest["variants"]["int8_dynamic"]
    assert dynamic["float_op_types"]["Conv"] == 3 and dynamic["quantized_op_types"] == {"MatMul": 3}
    for entry in manifest["variants"].values():
        assert entry["host"]["p50_ms"] > 0
        top1, agreement = entry["host"]["losses"]  # the drop on labels, and the decisions that flip against FP32
        assert (top1["output"], top1["metric"], agreement["metric"]) == ("logits", "top1", "agreement")
        assert top1["loss"] < 1.0 and agreement["loss"] < 1.0 and top1["ok"] and agreement["ok"]


def test_reference_outputs_are_fp32_outputs_on_the_evaluation_set(built, digits_model, digits_data):
    out, manifest = built
    reference = np.load(out / manifest["files"]["reference"]["file"])
    session = ort.InferenceSession(str(digits_model), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"image": np.load(digits_data)["evaluation"][:10]})[0]
    np.testing.assert_allclose(reference["logits"][:10], expected, rtol=1e-5, atol=1e-5)


def test_unchanged_rebuild_reuses_every_variant(built, digits_model, digits_data):
    out, first = built
    stamps = {n: (out / e["file"]).stat().st_mtime_ns for n, e in first["variants"].items()}
    again = build(digits_model, digits_data, out, host_figures=False)
    assert again["variants"]["int8_static"]["cached"] and again["variants"]["int8_dynamic"]["cached"]
    assert {n: (out / e["file"]).stat().st_mtime_ns for n, e in again["variants"].items()} == stamps
    changed = build(digits_model, digits_data, out, variants=["int8_static"], host_figures=False,
                           recipe=Recipe(per_channel=False))
    assert not changed["variants"]["int8_static"]["cached"]


def test_missing_and_non_onnx_files_are_model_errors(tmp_path, digits_data):
    with pytest.raises(ModelError, match="model file not found"):
        build(tmp_path / "nope.onnx", digits_data, tmp_path)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf at all" * 10)
    with pytest.raises(ModelError, match=f"{junk}: not an ONNX model"):
        build(junk, digits_data, tmp_path)


def test_wrong_data_shape_names_input_and_shapes(tmp_path, digits_model):
    data = tmp_path / "bad.npz"
    np.savez(data, calibration=np.zeros((150, 1, 28, 28), np.float32))
    with pytest.raises(ModelError, match=r"bad.npz, input 'image', field 'shape': the data file's samples are "
                                         r"\[1, 28, 28\], the deployment shape \[1, 1, 32, 32\] needs \[1, 32, 32\] "
                                         r"per sample"):
        build(digits_model, data, tmp_path)


@pytest.mark.real
def test_too_few_calibration_samples_refused_unless_allowed(tmp_path, digits_model, digits_data):
    small = Recipe(calibration_samples=40)
    with pytest.raises(ModelError, match="40 samples.*100-1000"):
        build(digits_model, digits_data, tmp_path, variants=["int8_static"], recipe=small)
    manifest = build(digits_model, digits_data, tmp_path, variants=["int8_static"], recipe=small,
                            allow_calibration_count=True, host_figures=False)
    assert manifest["data"]["calibration_samples"] == 40
    assert manifest["variants"]["int8_static"]["status"] == "ok"


@pytest.mark.real
def test_opset_11_per_channel_is_converted_and_recorded(tmp_path, digits_model, digits_data):
    # The digits graph (Conv, Relu, MaxPool, Flatten, Gemm) means the same at opset 11;
    # onnx.checker (run by build) confirms the re-stamped model is valid.
    old = onnx.load(str(digits_model))
    old.opset_import[0].version = 11
    path = tmp_path / "digits11.onnx"
    onnx.save(old, str(path))
    manifest = build(path, digits_data, tmp_path / "out", variants=["int8_static"], host_figures=False)
    entry = manifest["variants"]["int8_static"]
    assert entry["status"] == "ok", entry["reason"]
    assert entry["opset"] >= 13
    assert any("converted from opset 11" in note for note in entry["notes"])


@pytest.mark.real
def test_a_variant_that_cannot_be_built_is_recorded_and_others_go_on(tmp_path, digits_model, digits_data,
                                                                     monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("quantizer exploded")

    monkeypatch.setattr(quantizers, "_build_dynamic", broken)
    manifest = build(digits_model, digits_data, tmp_path, host_figures=False)
    assert manifest["variants"]["int8_dynamic"] == {**manifest["variants"]["int8_dynamic"],
                                                    "status": "failed", "reason": "RuntimeError: quantizer exploded"}
    assert manifest["variants"]["int8_static"]["status"] == "ok"


@pytest.mark.slow  # a search over 16 static recipes, most of a minute (CI runs it)
@pytest.mark.real
def test_recipe_search_keeps_the_fastest_within_the_loss_target(tmp_path, digits_model, digits_data):
    manifest = build(digits_model, digits_data, tmp_path, variants=["fp32", "int8_static"],
                            target_loss=1.0)
    tried = manifest["recipe_search"]
    assert len(tried) >= 6  # three calibration methods x per-channel on / off
    assert all(row["status"] == "ok" for row in tried), [row["reason"] for row in tried if row["reason"]]
    assert {row["recipe"]["calibration_method"] for row in tried} == {"minmax", "entropy", "percentile"}
    chosen = [row for row in tried if row.get("chosen")]
    assert len(chosen) == 1
    within = [row for row in tried if row["within"]]
    assert all(r["loss"] < 1.0 for row in within for r in row["losses"])
    assert chosen[0]["p50_ms"] == min(row["p50_ms"] for row in within)
    method = chosen[0]["recipe"]["calibration_method"]
    assert manifest["variants"]["int8_static"]["recipe"]["calibration_method"] == method


@pytest.mark.slow  # a search over 16 static recipes, most of a minute (CI runs it)
@pytest.mark.real
def test_a_failed_recipe_search_writes_the_manifest_it_points_at(tmp_path, digits_model, digits_data):
    with pytest.raises(ModelError, match="no static INT8 recipe keeps every judged output within -1.0 %") as caught:
        build(digits_model, digits_data, tmp_path, variants=["fp32", "int8_static"], target_loss=-1.0)
    assert str(tmp_path / "manifest.json") in str(caught.value)
    written = json.loads((tmp_path / "manifest.json").read_text())
    assert len(written["recipe_search"]) >= 6 and not any(row["within"] for row in written["recipe_search"])


@pytest.mark.real
def test_cli_quantize_prints_a_table_and_exits_2_on_bad_input(tmp_path, digits_model, digits_data, capsys):
    assert main(["quantize", str(digits_model), "--data", str(digits_data), "--out", str(tmp_path),
                 "--variants", "fp32,int8_static"]) == 0
    out = capsys.readouterr().out
    assert "int8_static" in out and "manifest:" in out
    assert main(["quantize", str(tmp_path / "missing.onnx"), "--data", str(digits_data), "--out", str(tmp_path)]) == 2
    assert "missing.onnx: model file not found" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["digits", "onet"])
@pytest.mark.real
def test_the_classifier_demos_build_every_variant_within_their_limits(name, repo, tmp_path):
    folder = repo / "models" / name
    spec = folder / f"{name}.farm.yaml"
    manifest = build(folder / f"{name}.onnx", folder / f"{name}.npz", tmp_path,
                     spec_path=spec if spec.exists() else None)
    assert manifest["model"]["opset"] >= 10 and manifest["data"]["labels"]
    for variant, entry in manifest["variants"].items():
        assert entry["status"] == "ok", (variant, entry["reason"])
        assert all(row["ok"] is not False for row in entry["host"]["losses"]), (variant, entry["host"]["losses"])


@pytest.mark.real
def test_onet_is_judged_on_each_output_by_the_metric_its_spec_names(repo, tmp_path):
    folder = repo / "models" / "onet"
    manifest = build(folder / "onet.onnx", folder / "onet.npz", tmp_path, spec_path=folder / "onet.farm.yaml",
                     variants=["fp32"])
    outputs = manifest["variants"]["fp32"]["host"]["accuracy"]["outputs"]
    assert outputs["prob"]["metric"] == "top1" and outputs["prob"]["n"] == 200 and outputs["prob"]["top1"] == 1.0
    assert outputs["boxes"]["metric"] == "mae" and outputs["boxes"]["mae"] == 0.0  # FP32 against itself
    assert outputs["landmarks"]["metric"] == "mae"


def tiny_model(path: Path, nodes, initializers=(), inputs=(("x", ["batch", 16]),), output=("y", ["batch", 8])) -> Path:
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, path.stem,
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(output[0], TensorProto.FLOAT, output[1])],
                              initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    x = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)
    np.savez(tmp_path / "data.npz", calibration=x[:120], evaluation=x[120:])
    return tmp_path / "data.npz"


WEIGHTS = np.random.default_rng(1).normal(size=(16, 8)).astype(np.float32)


def test_weights_fed_by_constant_nodes_are_quantized_not_skipped(tmp_path, tiny_data):
    from onnx import helper, numpy_helper

    model = tiny_model(tmp_path / "constant.onnx", [
        helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(WEIGHTS, "w")),
        helper.make_node("MatMul", ["x", "w"], ["y"])])
    dynamic = build(model, tiny_data, tmp_path / "out", variants=["fp32", "int8_dynamic"],
                    host_figures=False)["variants"]["int8_dynamic"]
    assert dynamic["status"] == "ok" and dynamic["quantized_op_types"] == {"MatMul": 1}
    assert dynamic["notes"] == ["1 Constant node(s) folded into initializers before quantizing (weights the "
                                "quantizer would not see otherwise)"]


def test_matmuls_inside_if_branches_are_quantized(tmp_path, tiny_data):
    from onnx import TensorProto, helper, numpy_helper

    branch = lambda name, sign: helper.make_graph(  # noqa: E731
        [helper.make_node("MatMul", ["x", f"w_{name}"], [f"y_{name}"])], name, [],
        [helper.make_tensor_value_info(f"y_{name}", TensorProto.FLOAT, ["batch", 8])],
        initializer=[numpy_helper.from_array(sign * WEIGHTS, f"w_{name}")])
    model = tiny_model(tmp_path / "branches.onnx", [  # a condition known at run time only: both branches stay
        helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
        helper.make_node("Greater", ["total", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["y"], then_branch=branch("then", 1), else_branch=branch("else", -1))],
        initializers=[numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    dynamic = build(model, tiny_data, tmp_path / "out", variants=["fp32", "int8_dynamic"],
                    host_figures=False)["variants"]["int8_dynamic"]
    assert dynamic["status"] == "ok" and dynamic["quantized_op_types"] == {"MatMul": 2}


def conv_only(tmp_path: Path) -> Path:
    """A one-Conv model and its data (conv.npz beside it): nothing for dynamic INT8 to quantize."""
    from onnx import helper, numpy_helper

    kernel = np.random.default_rng(2).normal(size=(4, 1, 3, 3)).astype(np.float32)
    model = tiny_model(tmp_path / "conv.onnx", [helper.make_node("Conv", ["x", "k"], ["y"], pads=[1, 1, 1, 1])],
                       initializers=[numpy_helper.from_array(kernel, "k")], inputs=(("x", ["batch", 1, 8, 8]),),
                       output=("y", ["batch", 4, 8, 8]))
    x = np.random.default_rng(0).normal(size=(150, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "conv.npz", calibration=x[:110], evaluation=x[110:])
    return model


def test_a_variant_that_quantizes_nothing_is_a_no_op_with_the_reason(tmp_path):
    model = conv_only(tmp_path)
    dynamic = build(model, tmp_path / "conv.npz", tmp_path / "out", variants=["fp32", "int8_dynamic"],
                    host_figures=False)["variants"]["int8_dynamic"]
    assert dynamic["status"] == "no-op" and dynamic["quantized_op_types"] == {}
    assert dynamic["reason"].startswith("the model has no MatMul or Gemm (its compute ops: Conv x1)")


@pytest.mark.real
def test_ops_kept_in_float_by_the_spec_are_counted_in_float(tmp_path, digits_model, digits_data):
    first_conv = next(n.name for n in onnx.load(str(digits_model)).graph.node if n.op_type == "Conv")
    spec = tmp_path / "digits.farm.yaml"
    spec.write_text(f"quantize:\n  exclude_nodes: [{first_conv}]\n")
    static = build(digits_model, digits_data, tmp_path / "out", spec_path=spec, variants=["int8_static"],
                   host_figures=False)["variants"]["int8_static"]
    assert static["quantized_op_types"]["Conv"] == 2 and static["float_op_types"]["Conv"] == 1
    assert static["recipe"]["exclude_nodes"] == [first_conv]


@pytest.mark.real  # starts a process
def test_cli_quantize_exits_1_when_a_built_variant_fails_its_host_loss_limit(tmp_path, digits_model, digits_data,
                                                                            capsys):
    spec = tmp_path / "strict.farm.yaml"
    spec.write_text("outputs:\n  logits: {metric: mae, max_loss: 0.000001}\n")  # FP32 is exactly 0, INT8 is not
    assert main(["quantize", str(digits_model), "--data", str(digits_data), "--out", str(tmp_path / "out"),
                 "--spec", str(spec), "--variants", "fp32,int8_static"]) == 1
    out = capsys.readouterr().out
    assert "fail: int8_static: logits mae loss" in out and "fail: fp32" not in out


@pytest.mark.real  # starts a process
def test_cli_quantize_reports_a_no_op_but_fails_it_only_when_it_is_the_variant_asked_for(tmp_path, capsys):
    model = conv_only(tmp_path)
    spec = tmp_path / "conv.farm.yaml"
    spec.write_text("outputs:\n  y: {metric: cosine, max_loss_pct: 20}\n")  # static INT8 loses 7 % here
    common = [str(model), "--data", str(tmp_path / "conv.npz"), "--out", str(tmp_path / "out"), "--spec", str(spec)]
    assert main(["quantize", *common]) == 0  # a full build: dynamic INT8 a no-op, every loss inside its limit
    out = capsys.readouterr().out
    assert "no-op" in out and "fail:" not in out
    assert main(["quantize", *common, "--variants", "int8_dynamic"]) == 1
    assert "fail: int8_dynamic: no-op (the model has no MatMul or Gemm" in capsys.readouterr().out


def test_ops_onnxruntime_runs_in_float_between_qdq_pairs_are_not_counted_as_int8(tmp_path):
    """A text-detector-like head: Conv, HardSigmoid, ConvTranspose, Div. Static QDQ annotates them all;
    the optimized graph onnxruntime runs has INT8 kernels for the Conv only."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(5)
    weights = [numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "k"),
               numpy_helper.from_array(rng.normal(size=(4, 2, 2, 2)).astype(np.float32), "up"),
               numpy_helper.from_array(np.array([2.0], np.float32), "two")]
    nodes = [helper.make_node("Conv", ["x", "k"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("HardSigmoid", ["c"], ["h"], name="hard_sigmoid"),
             helper.make_node("ConvTranspose", ["h", "up"], ["u"], strides=[2, 2], name="upsample"),
             helper.make_node("Div", ["u", "two"], ["y"], name="halve")]
    model = tiny_model(tmp_path / "head.onnx", nodes, initializers=weights, inputs=(("x", ["batch", 1, 8, 8]),),
                       output=("y", ["batch", 2, 16, 16]))
    x = np.random.default_rng(0).random(size=(130, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "head.npz", calibration=x[:110], evaluation=x[110:])
    static = build(model, tmp_path / "head.npz", tmp_path / "out", variants=["int8_static"],
                   host_figures=False)["variants"]["int8_static"]
    assert static["quantized_op_types"] == {"Conv": 1}
    assert static["float_between_qdq"] == {"ConvTranspose": 1, "Div": 1, "HardSigmoid": 1}
    assert static["float_op_types"] == static["float_between_qdq"]
