"""Board classes, provider fallback and emulated Arm boards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from farm.checklist import evaluate, load_checklist
from farm.inventory import Board

REPO = Path(__file__).resolve().parent.parent


def farm(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "farm", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900, env={**os.environ, **(env or {})})


def agent_doc(p50: float) -> dict:
    return {"model": {"opset": 17}, "latency_ms": {"n": 10, "p50": p50, "p95": p50 * 1.1},
            "samples_ms": [p50] * 10, "peak_rss_mb": 100.0, "accuracy": {"top1": 0.98}, "errors": []}


def test_emulated_timing_is_reported_not_judged():
    checklist = load_checklist(REPO / "suites" / "checklists" / "dms.yaml")
    manifest = {"model": {"task": "classification"}, "data": {"evaluation_samples": 10, "calibration_samples": 300},
                "variants": {"fp32": {"host": {"accuracy": {"top1": 0.98}}}, "int8_static": {"float_op_types": {}}}}
    variants = {"fp32": agent_doc(80.0), "int8_static": agent_doc(200.0)}  # over budget, and slower
    native = evaluate(checklist, Board(name="b", host="h"), variants, manifest)
    emulated = evaluate(checklist, Board(name="b", host="h", emulated_cpu="cortex-a72"), variants, manifest)
    by_item = lambda checks: {c.item: c for c in checks}  # noqa: E731
    assert by_item(native["fp32"])["latency"].status == "fail"
    assert by_item(native["int8_static"])["speedup"].status == "fail"
    latency = by_item(emulated["fp32"])["latency"]
    assert latency.status == "skip" and latency.value == 88.0 and latency.limit == 50.0
    assert "emulated board (QEMU cortex-a72), not silicon timing" in latency.why
    assert by_item(emulated["int8_static"])["speedup"].status == "skip"
    assert by_item(emulated["fp32"])["accuracy"].status == "pass"  # correctness is still judged


def test_board_class_inheritance_and_override(tmp_path):
    from farm.inventory import load_inventory

    path = tmp_path / "lab.yaml"
    path.write_text(textwrap.dedent("""
        boards:
          - {name: tda4, host: h, class: tda4vm}
          - {name: tda4-tuned, host: h, class: tda4vm, threads: 1, providers: [CPUExecutionProvider]}
        """))
    boards = {b.name: b for b in load_inventory(path).boards}
    assert boards["tda4"].providers == ("TIDLExecutionProvider", "CPUExecutionProvider")
    assert boards["tda4"].threads == 2 and boards["tda4"].latency_budget_ms == 30
    assert boards["tda4-tuned"].providers == ("CPUExecutionProvider",) and boards["tda4-tuned"].threads == 1
    assert boards["tda4-tuned"].cores == 2  # still inherited


def test_standin_of_an_accelerator_class_says_it_ran_on_cpu(tmp_path, shared_dir):
    inventory = tmp_path / "orin.yaml"
    inventory.write_text("standins:\n  - name: orin-sim\n    class: jetson-orin\n    cores: 1\n")
    proc = farm("run", "--inventory", str(inventory), "--variants", "fp32", "--runs", "10", cwd=tmp_path,
                env={"FARM_LAB_DIR": str(shared_dir / "lab-orin")})
    run_dir = (tmp_path / "results" / "latest").resolve()
    board = json.loads((run_dir / "results.json").read_text())["boards"][0]
    assert board["providers_requested"][0] == "TensorrtExecutionProvider"
    fp32 = board["variants"]["fp32"]
    assert fp32["provider_used"] == "CPUExecutionProvider"
    assert any("asked for TensorrtExecutionProvider, ran on CPUExecutionProvider" in w for w in fp32["warnings"])
    assert "CPU (asked Tensorrt)" in (run_dir / "report.html").read_text()
    assert proc.returncode in (0, 1)  # the class's 10 ms budget is the board's business; the report is the point


@pytest.mark.slow
def test_farm_run_on_an_emulated_cortex_a72(tmp_path):
    inventory = tmp_path / "arm.yaml"
    inventory.write_text("standins:\n  - name: a72-qemu\n    arch: arm64\n    class: cortex-a72\n    cores: 2\n")
    proc = farm("run", "--inventory", str(inventory), "--runs", "20", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "results" / "latest" / "results.json").read_text())
    board = results["boards"][0]
    assert board["status"] == "ok" and board["emulated"] and board["qemu_cpu"] == "cortex-a72"
    assert board["facts"]["machine"] == "aarch64" and board["facts"]["qemu_cpu"] == "cortex-a72"
    assert "ASIMD" in board["facts"]["numpy_cpu_features"]  # the emulated CPU's, not the host's
    assert "AVX2" not in board["facts"]["numpy_cpu_features"]
    assert set(board["variants"]) == {"fp32", "int8_dynamic", "int8_static"}
    manifest = json.loads((tmp_path / "results" / results["run_id"] / "manifest.json").read_text())
    for variant, entry in board["variants"].items():
        checks = {c["item"]: c for c in entry["checks"]}
        assert checks["accuracy"]["status"] == "pass", checks["accuracy"]
        # The same model on Arm kernels agrees with x86 within the checklist's tolerance.
        host_top1 = manifest["variants"][variant]["host"]["accuracy"]["top1"]
        assert abs(entry["accuracy"]["top1"] - host_top1) * 100 < 1.0
        assert checks["latency"]["status"] == "skip" and "emulated" in checks["latency"]["why"]
        assert checks["latency"]["value"] > 0


@pytest.mark.slow
@pytest.mark.fullsystem
def test_farm_run_on_a_full_system_cortex_a72(tmp_path):
    """qemu-system-aarch64 with Debian's arm64 kernel: /proc/cpuinfo is an Arm one, not the host's."""
    inventory = tmp_path / "vm.yaml"
    inventory.write_text("standins:\n  - name: a72-vm\n    arch: arm64\n    full_system: true\n"
                         "    class: cortex-a72\n    cores: 2\n")
    proc = farm("run", "--inventory", str(inventory), "--variants", "fp32,int8_static", "--runs", "10", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    board = json.loads((tmp_path / "results" / "latest" / "results.json").read_text())["boards"][0]
    facts = board["facts"]
    assert facts["machine"] == "aarch64" and facts["kernel"].endswith("-arm64")
    assert (facts["cpu_part"], facts["cpu"]) == ("0xd08", "Cortex-A72")  # a real Arm /proc/cpuinfo
    assert board["emulated"] and board["qemu_cpu"] == "cortex-a72"
    for entry in board["variants"].values():
        checks = {c["item"]: c for c in entry["checks"]}
        assert checks["accuracy"]["status"] == "pass" and checks["latency"]["status"] == "skip"


def test_speedup_failure_says_what_to_fix():
    checklist = load_checklist(REPO / "suites" / "checklists" / "dms.yaml")
    manifest = {"model": {"task": "classification"}, "data": {"evaluation_samples": 10, "calibration_samples": 300},
                "variants": {"fp32": {}, "int8_dynamic": {"float_op_types": {"Conv": 5, "Relu": 6}},
                             "int8_static": {"float_op_types": {}}}}
    variants = {"fp32": agent_doc(1.0), "int8_dynamic": agent_doc(2.0), "int8_static": agent_doc(1.5)}
    verdicts = evaluate(checklist, Board(name="b", host="h"), variants, manifest)
    dynamic = next(c for c in verdicts["int8_dynamic"] if c.item == "speedup")
    static = next(c for c in verdicts["int8_static"] if c.item == "speedup")
    assert dynamic.status == "fail" and dynamic.value == 0.5
    assert dynamic.why == "latency not reduced: operators not quantized: Conv x5, Relu x6"
    assert static.status == "fail" and "every compute operator is quantized" in static.why
