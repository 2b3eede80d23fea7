"""`farm lab up / status / down` and `farm probe`, as a user types them."""

from __future__ import annotations

from pathlib import Path

from helpers import farm

from farm.board.lease import Lease
from farm.board.ssh import SshTransport
from farm.config.inventory import load_inventory


def lab_farm(*args: str, cwd: Path, lab_dir: Path):
    return farm(*args, cwd=cwd, env={"FARM_LAB_DIR": str(lab_dir)})


def test_lab_up_probe_status_down(tmp_path, shared_dir):
    lab_dir = shared_dir / "lab-cli"
    up = lab_farm("lab", "up", "--boards", "2", "--cores", "1", cwd=tmp_path, lab_dir=lab_dir)
    assert up.returncode == 0, up.stderr
    assert "sim-01" in up.stdout and "(started)" in up.stdout and f"inventory: {lab_dir}/inventory.yaml" in up.stdout
    try:
        again = lab_farm("lab", "up", "--boards", "2", cwd=tmp_path, lab_dir=lab_dir)
        assert again.stdout.count("(already up)") == 2
        sim01 = next(b for b in load_inventory(lab_dir / "inventory.yaml").boards if b.name == "sim-01")
        with SshTransport(sim01) as connection:
            lease = Lease(connection, sim01.workdir, "the-holder").acquire()
            status = lab_farm("lab", "status", cwd=tmp_path, lab_dir=lab_dir)
            probe = lab_farm("probe", "--inventory", str(lab_dir / "inventory.yaml"), cwd=tmp_path, lab_dir=lab_dir)
            lease.release()
        assert "2 stand-in(s) up" in status.stdout and "sim-02" in status.stdout
        held = next(line for line in status.stdout.splitlines() if line.startswith("sim-01"))
        assert "locked by run the-holder from" in held and "heartbeat" in held, status.stdout
        assert next(line for line in status.stdout.splitlines() if line.startswith("sim-02")).endswith("free")
        assert probe.returncode == 0, probe.stdout + probe.stderr
        lines = [line for line in probe.stdout.splitlines() if line.startswith("sim-")]
        assert len(lines) == 2 and all(" ok " in line and "onnxruntime 1." in line for line in lines)
        assert "locked by run the-holder" in lines[0] and "locked by" not in lines[1]
        assert sim01.workdir == str(lab_dir / "boards" / "sim-01")  # each lab's boards work in its own folder
    finally:
        down = lab_farm("lab", "down", cwd=tmp_path, lab_dir=lab_dir)
    assert down.returncode == 0 and "stopped: sim-01, sim-02" in down.stdout
    assert "0 stand-in(s) up" in lab_farm("lab", "status", cwd=tmp_path, lab_dir=lab_dir).stdout
