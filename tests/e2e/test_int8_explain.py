"""When INT8 fails the checklist on a real detector: which layers lose it, and what int8_mixed does about it.

BlazeFace on one stand-in with fp32, int8_static and int8_mixed: the failing
static accuracy item is explained in results.json and the report (the most
sensitive layers beside the board's op time), and int8_mixed is measured on the
board with what it kept in float, or says with its best loss that no mix can.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import farm

MODELS = Path(__file__).resolve().parents[2] / "models"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def blazeface_run(tmp_path_factory, shared_dir):
    cwd = tmp_path_factory.mktemp("explain")
    proc = farm("run", "--spec", MODELS / "blazeface" / "blazeface.farm.yaml", "--variants",
                "fp32,int8_static,int8_mixed", "--board", "a72-sim", "--runs", "20", cwd=cwd,
                env={"FARM_LAB_DIR": str(shared_dir / "lab-explain")})
    run = cwd / "results" / "latest"
    return proc, json.loads((run / "results.json").read_text()), (run / "report.html").read_text()


def test_the_failing_static_accuracy_names_the_most_sensitive_layers_beside_the_boards_op_time(blazeface_run):
    proc, results, _ = blazeface_run
    assert results["boards"][0]["status"] == "ok", results["boards"][0]["error"]
    [explained] = [e for e in results["explanations"] if e["variant"] == "int8_static"]
    layers = explained["layers"]
    assert len(layers) == 5
    # the analysis agrees with the spec's hand-found culprit: the first convolution
    assert "conv2d" in [x["layer"] for x in layers]
    profile = results["boards"][0]["variants"]["int8_static"]["profile"]["op_share_pct"]
    convs = [x for x in layers if "Conv" in x["op_types"]]
    assert convs and all(0 < x["board_share_pct"] <= profile["QLinearConv"] + profile.get("Conv", 0) + 0.01
                         for x in convs)  # the board's time in its (quantized) convolutions
    for x in layers:
        assert {r["output"] for r in x["alone_losses"]} == {"classificators"}  # the spec judges the faces found
    sensitivity = results["model"]["sensitivity"]
    assert sensitivity["seconds"] > 0 and sensitivity["peak_rss_mb"] > 0
    assert [x["layer"] for x in sensitivity["layers"][:5]] == [x["layer"] for x in layers]


def test_int8_mixed_is_measured_on_the_board_with_what_it_kept_in_float_or_says_it_cannot(blazeface_run):
    _, results, report = blazeface_run
    build = results["model"]["variants"]["int8_mixed"]
    mixed = build["mixed"]
    assert mixed["kept_in_float"] and mixed["kept_in_float"] == list(mixed["why"])
    checks = {c["item"]: c for c in results["boards"][0]["variants"]["int8_mixed"]["checks"]}
    [explained] = [e for e in results["explanations"] if e["variant"] == "int8_static"]
    assert explained["kept_in_float"] == mixed["kept_in_float"]
    assert explained["speedup_vs_fp32"] == pytest.approx(checks["speedup"]["value"], rel=0.01)
    assert explained["speedup_vs_variant"] is not None
    if mixed["within"]:
        assert checks["accuracy"]["status"] == "pass"
    else:  # no mix meets the limits: said with the best loss, and the board fails its accuracy
        assert "best: classificators" in build["reason"] and checks["accuracy"]["status"] == "fail"
        assert "no mix of up to" in report
    assert "Why INT8 lost accuracy" in report and "conv2d" in report
