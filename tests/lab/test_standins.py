"""Stand-in boards: started, recorded and stopped exactly."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from farm.config.inventory import StandinSpec, load_inventory
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
        emulated = {**record["boards"]["orin-sim"], "name": "a72-sim", "qemu_cpu": "cortex-a72",
                    "fields": {"class": "cortex-a72"}}  # the record an arm64 stand-in leaves, without its QEMU
        record["boards"]["a72-sim"] = emulated
        loaded = {b.name: b for b in load_inventory(own.write_inventory(record)).boards}
    finally:
        own.down()
    assert loaded["orin-sim"] == running  # a stand-in there too: class budgets, its own taskset, CPU shared
    assert running.standin and running.latency_budget_ms == 10.0 and running.from_class == ("latency_budget_ms",)
    assert (running.cores, running.threads, running.memory_mb) == (1, 1, 4096)
    assert loaded["a72-sim"] == own.board(emulated, record) and loaded["a72-sim"].emulated_cpu == "cortex-a72"
