"""Stand-in boards: started, recorded and stopped exactly."""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import time
from pathlib import Path

import pytest
from helpers import farm

from farm.config.inventory import StandinSpec, load_inventory
from farm.errors import ConfigError
from farm.lab.host import cache_dir, process_start
from farm.lab.standins import Lab


def test_lab_down_stops_exactly_its_processes(shared_dir):
    own = Lab(shared_dir / "lab-down")
    boards, started = own.up([StandinSpec("d1")])
    entry = own.running()["d1"]
    assert started == ["d1"] and Path(f"/proc/{entry['pid']}").exists()
    assert boards[0].known_hosts and Path(boards[0].known_hosts).read_text().count("ssh-ed25519") == 1
    assert stat.S_IMODE(os.stat(boards[0].identity_file).st_mode) == 0o600
    assert own.down() == ["d1"]
    deadline = time.monotonic() + 5
    while Path(f"/proc/{entry['pid']}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{entry['pid']}").exists()
    assert not (shared_dir / "lab-down" / "d1").exists()
    assert own.running() == {}


def test_the_lab_s_inventory_loads_each_stand_in_exactly_as_the_lab_runs_it(shared_dir):
    own = Lab(shared_dir / "lab-inventory")
    declared = StandinSpec("orin-sim", cores=1, memory_mb=4096,
                           fields=(("class", "jetson-orin"), ("pools", ("nightly",)), ("memory_budget_mb", 300)))
    (running,), _ = own.up([declared])
    try:
        record = own._load()
        emulated = {**record["boards"]["orin-sim"], "name": "a72-sim", "qemu_cpu": "cortex-a76",
                    "fields": {"class": "cortex-a72"}}  # an arm64 stand-in's record (`cpu: cortex-a76`), no QEMU
        record["boards"]["a72-sim"] = emulated
        loaded = {b.name: b for b in load_inventory(own.write_inventory(record)).boards}
    finally:
        own.down()
    assert loaded["orin-sim"] == running  # a stand-in there too: class budgets, its own taskset, CPU shared
    assert running.standin and running.latency_budget_ms == 10.0 and running.from_class == ("latency_budget_ms",)
    assert (running.cores, running.threads, running.memory_mb) == (1, 1, 4096)
    assert loaded["a72-sim"] == own.board(emulated, record) and loaded["a72-sim"].emulated_cpu == "cortex-a76"


def _bystander():
    """A process that is none of the lab's: `sleep`, started here."""
    return subprocess.Popen(["sleep", "120"], start_new_session=True)


def _record_naming(folder: Path, process, **entry) -> None:
    (folder / "lab.json").write_text(json.dumps({"boards": {"x1": {
        "name": "x1", "port": 1, "pid": process.pid, "start": process_start(process.pid), **entry}}}))


def test_a_lab_folder_another_user_made_is_refused_and_its_pids_never_signalled(tmp_path, shared_dir):
    folder = shared_dir / "lab-foreign"
    folder.mkdir()
    bystander = _bystander()
    try:
        _record_naming(folder, bystander, config="")  # an empty marker once matched every command line
        nobody = pwd.getpwnam("nobody")
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        down = farm("lab", "down", cwd=tmp_path, env={"FARM_LAB_DIR": str(folder)})
        time.sleep(0.3)
        assert bystander.poll() is None  # not signalled
        assert down.returncode == 2 and "Traceback" not in down.stderr
        assert f"{folder} is not owned by root (owner nobody, mode 0755)" in down.stderr
        assert "rm -rf" in down.stderr and "FARM_LAB_DIR" in down.stderr
        os.chown(folder, 0, 0)
        folder.chmod(0o777)  # ours, but anyone may have replaced lab.json
        open_to_all = farm("lab", "down", cwd=tmp_path, env={"FARM_LAB_DIR": str(folder)})
        assert open_to_all.returncode == 2 and "writable by group or others" in open_to_all.stderr
    finally:
        bystander.kill()
        bystander.wait()


def test_lab_down_signals_only_a_process_with_its_own_config_and_start_time(tmp_path, shared_dir):
    folder = shared_dir / "lab-pids"
    folder.mkdir(mode=0o755)
    bystander = _bystander()
    try:
        _record_naming(folder, bystander, config="")
        down = farm("lab", "down", cwd=tmp_path, env={"FARM_LAB_DIR": str(folder)})
        assert down.returncode == 0, down.stderr
        time.sleep(0.3)
        assert bystander.poll() is None  # a record's pid and start time alone do not make a process ours
    finally:
        bystander.kill()
        bystander.wait()
    # A process that names the lab's own config, but started at another time than recorded (a pid reused).
    (folder / "x1").mkdir()
    namesake = subprocess.Popen(["sh", "-c", "sleep 120", str(folder / "x1" / "sshd_config")], start_new_session=True)
    try:
        _record_naming(folder, namesake)
        record = json.loads((folder / "lab.json").read_text())
        record["boards"]["x1"]["start"] = str(int(record["boards"]["x1"]["start"]) - 1)
        (folder / "lab.json").write_text(json.dumps(record))
        assert Lab(folder).running() == {}
        record["boards"]["x1"]["start"] = process_start(namesake.pid)
        (folder / "lab.json").write_text(json.dumps(record))
        assert list(Lab(folder).running()) == ["x1"]  # the same process as recorded: ours
    finally:
        namesake.kill()
        namesake.wait()


def test_the_machine_wide_cache_is_used_only_when_this_user_owns_it(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chown(cache, pwd.getpwnam("nobody").pw_uid, 0)
    monkeypatch.setenv("FARM_CACHE_DIR", str(cache))
    with pytest.raises(ConfigError, match=r"cache is not owned by root \(owner nobody, mode 0755\).*FARM_CACHE_DIR"):
        cache_dir()
    made = tmp_path / "new-cache"
    monkeypatch.setenv("FARM_CACHE_DIR", str(made))
    assert cache_dir() == made and stat.S_IMODE(made.stat().st_mode) == 0o755 and made.stat().st_uid == os.geteuid()
