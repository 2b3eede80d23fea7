"""Stand-in boards: started, recorded and stopped exactly."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from farm.config.inventory import StandinSpec
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
