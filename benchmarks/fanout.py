"""Fan-out: farm's connect + probe on 1, 8 and 32 stand-ins against a bare paramiko pool.

The floor is a plain paramiko thread pool doing the same connect (same key, host
key checked) and the same probe command on the same boards; farm's ratio to it
is its overhead. Also prints the bytes a first and an unchanged second push send.

    .venv/bin/python benchmarks/fanout.py [--sizes 1,8,32] [--repeat 3]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from farm import resources  # noqa: E402
from farm.build.variants import build  # noqa: E402
from farm.board.artifacts import Artifact, push  # noqa: E402
from farm.board.probe import PROBE_SCRIPT  # noqa: E402
from farm.deploy.fanout import Fanout  # noqa: E402
from farm.deploy.session import DeployPlan  # noqa: E402
from farm.record.rundir import RunDir  # noqa: E402
from farm.config.inventory import StandinSpec  # noqa: E402
from farm.lab.standins import Lab  # noqa: E402
from farm.board.ssh import SshTransport  # noqa: E402


def bare_probe(board) -> None:
    client = paramiko.SSHClient()
    client.load_host_keys(board.known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    sock = socket.create_connection((board.host, board.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.connect(board.host, board.port, username=board.user, key_filename=board.identity_file,
                   allow_agent=False, look_for_keys=False, sock=sock)
    _, stdout, _ = client.exec_command(f"{board.python} -c '{PROBE_SCRIPT}'")
    stdout.read()
    if stdout.channel.recv_exit_status() != 0:
        raise RuntimeError(f"probe failed on {board.name}")
    client.close()


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,8,32")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="farm-fanout-", dir="/tmp") as tmp:
        Path(tmp).chmod(0o755)
        lab = Lab(Path(tmp) / "lab", progress=lambda m: print(m, file=sys.stderr))
        boards, _ = lab.up([StandinSpec(f"fan-{i:02d}") for i in range(max(sizes))])
        try:
            plan = DeployPlan.probe("fanout")
            print(f"{'boards':>6}{'farm s':>9}{'floor s':>9}{'ratio':>8}")
            for n in sizes:
                chosen = boards[:n]
                farm_s, floor_s = [], []
                for _ in range(args.repeat):
                    farm_s.append(timed(lambda: Fanout(plan, RunDir(Path(tmp) / "runs", "fanout")).run(chosen)))
                    with ThreadPoolExecutor(max_workers=min(32, n)) as pool:
                        floor_s.append(timed(lambda: list(pool.map(bare_probe, chosen))))
                f, b = statistics.median(farm_s), statistics.median(floor_s)
                print(f"{n:>6}{f:>9.2f}{b:>9.2f}{f / b:>8.2f}")
            print(f"(median of {args.repeat}; both run `python -c <probe>` importing numpy + onnxruntime)")

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
