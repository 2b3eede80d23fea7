"""The qcs-sim stand-in: Qualcomm's real HTP backend (libQnnHtp.so, simulated on x86_64) behind a real sshd.

The digits demo's QNN variants run with CPU fallback disabled (every node on the HTP), their accuracy is
judged against FP32 on the HTP's own arithmetic, their timing is reported as simulated; farm's CPU
recipe (int8_static, free batch dimension) is judged failing offload with the ops named; the context
binary is built once and the second run pushes nothing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import farm

pytest.importorskip("onnxruntime_qnn")
pytestmark = pytest.mark.slow  # the simulator takes about 0.5 s an inference on this machine


def small_digits(path, digits_data):
    """100 calibration samples (the checklist's least) and 40 evaluation samples: the simulator is slow."""
    with np.load(digits_data) as d:
        np.savez(path, calibration=d["calibration"][:100], evaluation=d["evaluation"][:40], labels=d["labels"][:40])
    return path


def test_farm_run_on_qcs_sim_offloads_the_qnn_variants_and_fails_the_cpu_recipe(tmp_path, shared_dir, repo,
                                                                                digits_data):
    data = small_digits(tmp_path / "digits-small.npz", digits_data)
    checklist = tmp_path / "simulated.yaml"  # the point estimate: a bound would need 59 simulated runs, unjudged
    checklist.write_text(f"name: sim\nextends: {repo / 'suites' / 'checklists' / 'dms.yaml'}\n"
                         "items:\n  latency: {confidence: 0}\n")
    lab_dir = shared_dir / "lab-qcs"
    env = {"FARM_LAB_DIR": str(lab_dir)}
    up = farm("lab", "up", "--inventory", repo / "inventory" / "qcs-lab.yaml", cwd=tmp_path, env=env)
    assert up.returncode == 0, up.stdout + up.stderr  # kept up between the runs: its blobs stay
    try:
        run_twice_on_the_stand_in(tmp_path, lab_dir / "inventory.yaml", data, checklist, env)
    finally:
        farm("lab", "down", cwd=tmp_path, env=env)


def run_twice_on_the_stand_in(tmp_path, inventory, data, checklist, env):
    argv = ("run", "--inventory", inventory, "--board", "qcs-sim", "--data", data,
            "--checklist", checklist, "--variants", "fp32,int8_static", "--runs", "5", "--warmup", "1",
            "--deadline", "240")
    first = farm(*argv, "--run-id", "first", cwd=tmp_path, env=env)
    results = json.loads((tmp_path / "results" / "first" / "results.json").read_text())
    board = results["boards"][0]
    assert board["status"] == "ok", first.stdout[-3000:] + first.stderr[-3000:]
    variants = board["variants"]
    assert set(variants) == {"fp32", "int8_static", "fp16", "int8_qnn", "a16w8_qnn"}
    for name in ("fp16", "int8_qnn", "a16w8_qnn"):
        found = variants[name]
        checks = {c["item"]: c for c in found["checks"]}
        assert found["offload"]["fallback_disabled"] and found["offload"]["node_pct"] == 100.0
        assert checks["offload"]["status"] == "pass" and found["provider_used"] == "QNNExecutionProvider"
        assert found["simulated"] == "HTP simulated on x86_64"
        assert checks["latency"]["status"] == "skip" and "HTP simulated on x86_64" in checks["latency"]["why"]
        assert checks["accuracy"]["status"] in ("pass", "fail") and found["accuracy"]["outputs"]["logits"]["n"] == 40
        assert "against FP32 on this board" in checks["accuracy"]["why"]
        assert checks["calibration"]["status"] == ("skip" if name == "fp16" else "pass")
        assert found["context_binary"]["size_bytes"] > 0 and found["load_ms_without_context"] > 0
    static = {c["item"]: c for c in variants["int8_static"]["checks"]}
    assert static["offload"]["status"] == "fail" and static["offload"]["value"] == 0.0
    why = static["offload"]["why"]
    assert "DequantizeLinear x" in why and "free dimensions: image ['batch'" in why
    assert variants["int8_static"]["provider_used"] == "CPUExecutionProvider"
    assert {c["item"]: c for c in variants["fp32"]["checks"]}["offload"]["status"] == "fail"  # the HTP runs no float32
    assert first.returncode == 1  # int8_static's offload fails the run
    assert "context binary for QNN" in first.stderr + first.stdout

    second = farm(*argv, "--run-id", "second", cwd=tmp_path, env=env)
    again = json.loads((tmp_path / "results" / "second" / "results.json").read_text())["boards"][0]
    assert again["status"] == "ok", second.stdout[-3000:] + second.stderr[-3000:]
    assert "context binary for QNN" in second.stderr + second.stdout
    assert again["bytes_sent"] == 0  # the context binaries are on the board already, by sha256
    assert again["variants"]["int8_qnn"]["context_binary"]["sha256"] == variants["int8_qnn"]["context_binary"]["sha256"]
