"""From fault to recovered board: how long each lab fault takes to be named, and to be over.

On real sshd stand-ins, with the digits demo, for each fault: seconds from the
fault until farm names it (the run's status), and until a new run gets the board
(its lock released, or broken once its heartbeat stopped).

    .venv/bin/python benchmarks/faults.py
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from helpers import (  # noqa: E402
    RUN,
    Proxy,
    run_until_agent_starts,
    saved_board,
    slow_agent_python,
    via_proxy,
    wait_for_processes,
    write_inventory,
)

from farm.board.lease import Lease  # noqa: E402
from farm.board.ssh import SshTransport  # noqa: E402
from farm.build.variants import build  # noqa: E402
from farm.config.inventory import StandinSpec  # noqa: E402
from farm.config.settings import Measurement  # noqa: E402
from farm.deploy.fanout import Fanout  # noqa: E402
from farm.deploy.session import DeployPlan  # noqa: E402
from farm.lab.standins import Lab  # noqa: E402
from farm.record.rundir import RunDir  # noqa: E402

DIGITS = REPO / "models" / "digits"


def free_again(board, since: float) -> float:
    """Seconds from `since` until a new lease on the board is granted (waiting as long as it takes)."""
    with SshTransport(board) as connection:
        Lease(connection, board.workdir, f"after-{uuid.uuid4().hex[:6]}").acquire(wait_s=600).release()
    return time.monotonic() - since


def controller_signal(number: int, board, work: Path, marker: str) -> tuple[float, float]:
    inventory = write_inventory(work / f"inventory-{number}.yaml", board)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    proc = subprocess.Popen([sys.executable, "-m", "farm", "run", "--inventory", str(inventory), "--variants",
                             "fp32,int8_static", "--runs", "10", "--out", str(work / f"out-{number}")], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_for_processes(marker, 120)
    fault = time.monotonic()
    proc.send_signal(number)
    proc.wait(120)
    wait_for_processes(marker, 120, present=False)
    named = time.monotonic() - fault  # the controller gone, and its agent too
    return named, free_again(board, fault)


def link_fault(kind: str, board, plan, work: Path, marker: str) -> tuple[float, float]:
    proxy = Proxy(board.port)
    try:
        fanout = Fanout(plan, RunDir(work / kind, RUN))
        worker = run_until_agent_starts(fanout, [via_proxy(board, proxy, work)], marker)
        fault = time.monotonic()
        proxy.cut() if kind == "cut" else proxy.stalled.set()
        worker.join(600)
        named = time.monotonic() - fault
        status = saved_board(work / kind, board.name)["status"]
    finally:
        proxy.close()
    assert status == "link-lost", status
    return named, free_again(board, fault)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="farm-faults-", dir="/tmp") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        lab = Lab(work / "lab")
        (stand_in,), _ = lab.up([StandinSpec("fault-1", cores=1)])
        try:
            manifest = build(DIGITS / "digits.onnx", DIGITS / "digits.npz", work / "built", host_figures=False)
            plan = DeployPlan.from_manifest(manifest, work / "built", RUN, Measurement(warmup=2, runs=10),
                                            variant_deadline_s=300)
            rows = []
            for name, fault in (("controller SIGTERM (CI cancel)", "term"), ("controller SIGKILL", "kill"),
                                ("link cut mid-measure", "cut"), ("link stalled mid-measure", "stall")):
                marker = f"farm-bench-{uuid.uuid4().hex[:8]}"
                python = slow_agent_python(work, f"python-{fault}", plan.variants["int8_static"].sha256, marker,
                                           stand_in.python)
                board = dataclasses.replace(stand_in, name=f"b-{fault}", python=python,
                                            workdir=f"/tmp/farm-boards/bench-{fault}-{uuid.uuid4().hex[:6]}")
                if fault in ("term", "kill"):
                    named, free = controller_signal(signal.SIGTERM if fault == "term" else signal.SIGKILL, board,
                                                    work, marker)
                else:
                    named, free = link_fault(fault, board, plan, work, marker)
                rows.append((name, named, free))
                print(f"{name:<32} named / over after {named:6.1f} s   board free again after {free:6.1f} s",
                      flush=True)
        finally:
            lab.down()
    print("(a stopped run releases its lock; a killed controller or a dead link cannot, and the board is free once "
          "the lease's heartbeat is a TTL (60 s) old)")


if __name__ == "__main__":
    main()
