"""Board classes, provider fallback and emulated Arm boards."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from helpers import farm, sshd_greets

REPO = Path(__file__).resolve().parents[2]






def test_board_class_inheritance_and_override(tmp_path):
    from farm.config.inventory import load_inventory

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


@pytest.mark.slow  # an accelerator-class stand-in measured, half a minute (CI runs it)
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
        host = manifest["variants"][variant]["host"]["accuracy"]["outputs"]
        on_board = entry["accuracy"]["outputs"]
        assert host and set(on_board) == set(host)
        for output, figures in host.items():
            assert abs(on_board[output]["top1"] - figures["top1"]) * 100 < 1.0
        assert checks["latency"]["status"] == "skip" and "emulated" in checks["latency"]["why"]
        assert checks["latency"]["value"] > 0


@pytest.mark.slow
def test_an_emulated_stand_in_has_a_power_switch_and_a_cycle_brings_it_back_with_a_new_boot_id(shared_dir, tmp_path):
    import sys

    from farm.config.inventory import StandinSpec
    from farm.lab.standins import Lab

    lab = Lab(shared_dir / "lab-arm-power")
    switch = [sys.executable, "-m", "farm", "lab", "power"]  # what a PDU's localcmdline would call
    power = {"on_command": [*switch, "on", "a72-power"], "off_command": [*switch, "off", "a72-power"], "off_s": 1,
             "boot_s": 90}
    lab.up([StandinSpec("a72-power", cores=1, arch="arm64", fields=(("class", "cortex-a72"), ("power", power)))])
    env = {"FARM_LAB_DIR": str(lab.dir)}
    inventory = lab.dir / "inventory.yaml"
    try:
        before = lab.running()["a72-power"]
        off = farm("power", "off", "a72-power", "--inventory", inventory, cwd=tmp_path, env=env)
        assert off.returncode == 0, off.stderr
        assert not sshd_greets(before["port"])  # frozen: the board hangs
        on = farm("power", "on", "a72-power", "--inventory", inventory, cwd=tmp_path, env=env)
        assert on.returncode == 0 and sshd_greets(before["port"]), on.stderr
        assert lab.running()["a72-power"]["pid"] != before["pid"]
        # --wait reads the boot id the board answers with before the cycle, and waits for another one: the
        # emulated board's /proc is the controller's, so only the stand-in's own boot id can change
        cycled = farm("power", "cycle", "a72-power", "--inventory", inventory, "--wait", cwd=tmp_path, env=env,
                      timeout=300)
        assert cycled.returncode == 0 and "a72-power: answering again after" in cycled.stdout, \
            cycled.stdout + cycled.stderr
    finally:
        lab.down()


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
