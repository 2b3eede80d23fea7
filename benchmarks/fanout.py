"""Fan-out: farm's connect + probe on 1, 32 and 200 stand-ins against a bare paramiko pool.

The floor is a plain paramiko thread pool doing the same connect (same key, host
key checked) and the same probe command on the same boards; farm's ratio to it
is its overhead. Printed per size: wall time, and the controller's CPU per board
(this process's CPU time over the fan-out: the aim is under 20 ms per board for a
probe). Then the board's side of one probe, first (imports numpy and onnxruntime)
and repeated (the cached facts; the aim is under 50 ms of board CPU), and the bytes
a first and an unchanged second push send.

    .venv/bin/python benchmarks/fanout.py [--sizes 1,32,200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import resource
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from farm import resources  # noqa: E402
from farm.board.artifacts import Artifact, push  # noqa: E402
from farm.board.probe import PROBE_SCRIPT  # noqa: E402
from farm.board.ssh import SshTransport  # noqa: E402
from farm.build.variants import build  # noqa: E402
from farm.config.inventory import StandinSpec  # noqa: E402
from farm.deploy.fanout import Fanout  # noqa: E402
from farm.deploy.session import DeployPlan  # noqa: E402
from farm.lab.standins import Lab  # noqa: E402
from farm.record.rundir import RunDir  # noqa: E402


def bare_probe(board) -> None:
    client = paramiko.SSHClient()
    client.load_host_keys(board.known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    sock = socket.create_connection((board.host, board.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.connect(board.host, board.port, username=board.user, key_filename=board.identity_file,
                   allow_agent=False, look_for_keys=False, sock=sock)
    _, stdout, _ = client.exec_command(shlex.join([board.python, "-c", PROBE_SCRIPT, board.workdir]))
    stdout.read()
    if stdout.channel.recv_exit_status() != 0:
        raise RuntimeError(f"probe failed on {board.name}")
    client.close()


def timed(action) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds (every thread) of one action."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def board_cpu_ms(board, repeat: int) -> float:
    """Median CPU of the probe command itself, as the board's kernel counts it (children's rusage)."""
    costs = []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([board.python, "-c", PROBE_SCRIPT, board.workdir], check=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        costs.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    return statistics.median(costs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,32,200")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="farm-fanout-", dir="/tmp") as tmp:
        Path(tmp).chmod(0o755)
        lab = Lab(Path(tmp) / "lab", progress=lambda m: print(m, file=sys.stderr))
        boards, _ = lab.up([StandinSpec(f"fan-{i:03d}") for i in range(max(sizes))])
        try:
            plan = DeployPlan.probe("fanout")
            Fanout(plan, RunDir(Path(tmp) / "runs", "warm-up")).run(boards)  # every board's probe cache written
            print(f"{'boards':>6}{'farm s':>9}{'floor s':>9}{'ratio':>7}{'farm CPU ms/board':>19}"
                  f"{'floor CPU ms/board':>20}")
            for n in sizes:
                chosen = boards[:n]
                farm_runs, floor_runs = [], []
                for _ in range(args.repeat):
                    # B023: called here, in this iteration
                    fanout = lambda: Fanout(plan, RunDir(Path(tmp) / "runs", "fanout")).run(chosen)  # noqa: E731, B023
                    farm_runs.append(timed(fanout))
                    with ThreadPoolExecutor(max_workers=min(32, n)) as pool:
                        floor_runs.append(timed(lambda: list(pool.map(bare_probe, chosen))))  # noqa: B023 (called here)
                f, b = (statistics.median(w for w, _ in farm_runs), statistics.median(w for w, _ in floor_runs))
                fc, bc = (statistics.median(c for _, c in farm_runs) / n * 1000,
                          statistics.median(c for _, c in floor_runs) / n * 1000)
                print(f"{n:>6}{f:>9.2f}{b:>9.2f}{f / b:>7.2f}{fc:>19.1f}{bc:>20.1f}")
            print(f"(median of {args.repeat}; both run `python -c <probe> <workdir>` on every board, its facts cached)")

            board = boards[0]
            cache = Path(board.workdir) / ".probe-cache.json"
            firsts = []
            for _ in range(args.repeat):
                cache.unlink(missing_ok=True)
                firsts.append(board_cpu_ms(board, 1))
            first, repeat = statistics.median(firsts), board_cpu_ms(board, 10)
            bare = []
            for _ in range(10):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                subprocess.run([board.python, "-c", "pass"], check=True)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                bare.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
            print(f"board CPU of one probe: first {first:.0f} ms (imports numpy + onnxruntime), repeated "
                  f"{repeat:.0f} ms (cached facts), ratio {first / repeat:.1f}x; the interpreter alone "
                  f"(`python -c pass`) {statistics.median(bare):.0f} ms")

            demo = REPO / "models" / "digits"
            manifest = build(demo / "digits.onnx", demo / "digits.npz", Path(tmp) / "variants",
                                    host_figures=False)
            artifacts = [Artifact.of(resources.agent())] + [Artifact.of(Path(tmp) / "variants" / e["file"])
                                                     for e in manifest["variants"].values()]
            board = boards[0]
            with SshTransport(board) as connection:
                first = push(connection, f"/tmp/farm-boards/fanout-{time.time_ns()}", artifacts)
                workdir = "/tmp/farm-boards/fanout-push"
                push(connection, workdir, artifacts)
                second = push(connection, workdir, artifacts)
            print(f"push to one board: first {first.bytes_sent} bytes, unchanged second {second.bytes_sent} bytes")
        finally:
            lab.down()


if __name__ == "__main__":
    main()
