"""Helpers shared by farm's tests (importable as `helpers`: pyproject's pytest `pythonpath`)."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from farm.deploy.fanout import Fanout, GroupResult
from farm.record.rundir import RunDir

RUN = "test-run"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket closes


def fresh_workdir(board, tag: str):
    """A board with an empty workdir of its own: tests do not see each other's blobs or locks."""
    return dataclasses.replace(board, workdir=f"/tmp/farm-boards/test-{tag}-{uuid.uuid4().hex[:8]}")


def wrapper_python(shared_dir: Path, name: str, agent_behaviour: str, real_python: str) -> str:
    """A board 'python' that behaves normally except when it runs the agent."""
    script = shared_dir / name
    script.write_text(f"""#!/bin/sh
case "$*" in
  *--model*) {agent_behaviour} ;;
esac
exec {shlex.quote(real_python)} "$@"
""")
    script.chmod(0o755)
    return str(script)


def deploy(plan, out: Path, boards: list, **fanout) -> GroupResult:
    """One fan-out of `plan` to `boards`, its files under out/test-run/."""
    return Fanout(plan, RunDir(out, RUN), **fanout).run(boards)


def saved_board(out: Path, name: str) -> dict:
    """boards/<name>.json as the fan-out left it."""
    return json.loads(RunDir(out, RUN).board_file(name).read_text())


def processes(marker: str) -> str:
    """The processes whose command line holds `marker` (empty: none)."""
    return subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True).stdout


def run_until_agent_starts(fanout: Fanout, boards: list, marker: str, timeout_s: float = 60) -> threading.Thread:
    """Start the fan-out in a thread; return once a process with `marker` runs on the board."""
    worker = threading.Thread(target=lambda: fanout.run(boards))
    worker.start()
    deadline = time.monotonic() + timeout_s
    while not processes(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return worker


def farm(*args: str, cwd: Path, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """The `farm` command as a user types it, in `cwd`; none of this session's FARM_* settings leak in."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    return subprocess.run([sys.executable, "-m", "farm", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**clean, **(env or {})})
