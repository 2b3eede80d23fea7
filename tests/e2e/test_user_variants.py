"""A team's own variants (`--variant NAME=path.onnx`): checked against FP32, then judged beside farm's."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import farm
from onnx import helper, numpy_helper

from farm import resources
from farm.config.options import parse_variants, resolve, run_settings
from farm.config.project import load_project_config
from farm.errors import ConfigError


def pruned_copy(target: Path, share: float = 0.5) -> Path:
    """The digits demo with the smallest half of every weight matrix's entries set to zero (magnitude pruning)."""
    model = onnx.load(str(resources.demo_model()))
    for init in model.graph.initializer:
        weights = numpy_helper.to_array(init)
        if weights.ndim >= 2:
            cut = np.quantile(np.abs(weights), share)
            init.CopyFrom(numpy_helper.from_array(np.where(np.abs(weights) < cut, 0, weights).astype(weights.dtype),
                                                  init.name))
    onnx.save(model, str(target))
    return target


def float64_output_copy(target: Path) -> tuple[Path, str]:
    """The digits demo whose output is cast to float64: not what the FP32 reference gives."""
    model = onnx.load(str(resources.demo_model()))
    output = model.graph.output[0]
    name = output.name
    for node in model.graph.node:
        node.output[:] = [f"{o}_f32" if o == name else o for o in node.output]
    model.graph.node.append(helper.make_node("Cast", [f"{name}_f32"], [name], to=onnx.TensorProto.DOUBLE))
    output.type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
    onnx.save(model, str(target))
    return target, name


def test_a_variant_item_is_name_equals_path_and_a_bad_one_is_refused_naming_it():
    assert parse_variants(["pruned=models/p.onnx"]) == {"pruned": Path("models/p.onnx")}
    for bad, words in (("pruned", "expected NAME=path.onnx"), ("int8_static=x.onnx", "one of farm's own"),
                       ("a b=x.onnx", "must be letters"), ("=x.onnx", "expected NAME=path.onnx")):
        with pytest.raises(ConfigError, match=words):
            parse_variants([bad])
    with pytest.raises(ConfigError, match="given twice"):
        parse_variants(["p=a.onnx", "p=b.onnx"])


def test_a_variant_in_tool_farm_is_relative_to_the_project_file(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.farm]\nvariant = ["qat=exports/qat.onnx"]\n')
    project = load_project_config(tmp_path / "pyproject.toml")
    resolved = resolve(lambda name: None, environ={}, project=project)
    assert run_settings(resolved).user_variants == {"qat": tmp_path / "exports" / "qat.onnx"}


@pytest.fixture(scope="module")
def user_run(tmp_path_factory, shared_dir):
    """One `farm run` of the digits demo on one stand-in with a pruned copy beside farm's variants."""
    cwd = tmp_path_factory.mktemp("user-variant")
    pruned = pruned_copy(cwd / "digits-pruned.onnx")
    proc = farm("run", "--variants", "fp32,int8_static", "--variant", f"pruned={pruned}", "--board", "a72-sim",
                "--runs", "20", cwd=cwd, env={"FARM_LAB_DIR": str(shared_dir / "lab-user-variant")})
    results = json.loads((cwd / "results" / "latest" / "results.json").read_text())
    return proc, results, pruned


@pytest.mark.slow  # a minute or more of real stand-ins: the default run skips it, CI runs it (-m slow locally)
def test_a_teams_pruned_variant_is_measured_and_judged_against_fp32_beside_farms(user_run):
    proc, results, pruned = user_run
    board = results["boards"][0]
    assert board["status"] == "ok", board["error"]
    assert list(board["variants"]) == ["fp32", "int8_static", "pruned"]
    checks = {c["item"]: c for c in board["variants"]["pruned"]["checks"]}
    assert checks["accuracy"]["status"] in ("pass", "fail") and checks["accuracy"]["value"] is not None
    flagged = any(board["variants"][v]["board_state"]["flags"] for v in ("fp32", "pruned"))
    timed = ("pass", "fail", "error") if flagged else ("pass", "fail")  # a loaded board's ratio is not judged
    assert checks["speedup"]["status"] in timed and checks["speedup"]["value"] is not None
    assert checks["calibration"]["status"] == "skip"  # the team's own: farm did not calibrate it
    # pruning half the weights changes decisions: the accuracy figure is the pruned model's own, not FP32's
    assert board["variants"]["pruned"]["accuracy"] != board["variants"]["fp32"]["accuracy"]
    build = results["model"]["variants"]["pruned"]
    assert build["origin"] == {"path": str(pruned.resolve()),
                               "sha256": hashlib.sha256(pruned.read_bytes()).hexdigest()}
    assert "pruned" in proc.stdout


def test_the_report_names_where_a_teams_variant_came_from(user_run):
    _, _, pruned = user_run
    html = (pruned.parent / "results" / "latest" / "report.html").read_text()
    assert f"a team&#x27;s own, from {pruned.resolve()}" in html


@pytest.mark.parametrize("command", ["run", "quantize"])
@pytest.mark.real  # starts a process
def test_a_variant_whose_output_differs_is_refused_naming_the_output(tmp_path, command):
    bad, output = float64_output_copy(tmp_path / "digits-f64.onnx")
    args = ["--variant", f"wide={bad}"]
    if command == "quantize":
        proc = farm("quantize", resources.demo_model(), "--data", resources.demo_data(), "--out", tmp_path / "v",
                    "--variants", "fp32", *args, cwd=tmp_path)
    else:
        proc = farm("run", "--variants", "fp32", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"variant 'wide' output {output!r} is float64, the FP32 reference's is float32" in errors[0]
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_a_specs_variants_are_relative_to_it_and_checked_like_the_given_ones(tmp_path):
    from farm.build.loading import load_model_and_data
    from farm.build.uservariants import check_user_variants

    pruned_copy(tmp_path / "pruned.onnx")
    float64_output_copy(tmp_path / "wide.onnx")
    spec = tmp_path / "digits.farm.yaml"
    spec.write_text("outputs:\n  logits: {metric: top1, labels: true}\nvariants:\n  pruned: pruned.onnx\n")
    info, _, resolved = load_model_and_data(resources.demo_model(), resources.demo_data(), spec)
    checked = check_user_variants({}, info, resolved)
    assert {n: i.path for n, i in checked.items()} == {"pruned": tmp_path / "pruned.onnx"}
    with pytest.raises(ConfigError, match="variant 'wide' output 'logits' is float64"):
        check_user_variants({"wide": tmp_path / "wide.onnx"}, info, resolved)
