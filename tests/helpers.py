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

import numpy as np
import onnx
from onnx import helper, numpy_helper

from farm.deploy.fanout import Fanout, GroupResult
from farm.record.rundir import RunDir
from farm.results import BoardResult, BoardStatus, Check, CheckStatus, ModelResult, RunResult, VariantResult

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


def _farm_env(env: dict | None) -> dict:
    """This session's environment without its FARM_* settings, plus `env`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("FARM_")}, **(env or {})}


def farm(*args: str, cwd: Path, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """The `farm` command as a user types it, in `cwd`; none of this session's FARM_* settings leak in."""
    return subprocess.run([sys.executable, "-m", "farm", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=_farm_env(env))


def start_farm(*args: str, cwd: Path, env: dict | None = None, stderr: int = subprocess.PIPE) -> subprocess.Popen:
    """`farm` started as `farm()` runs it, not waited for: to signal it, or to talk to `farm serve`."""
    return subprocess.Popen([sys.executable, "-m", "farm", *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=stderr, text=True, env=_farm_env(env))


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of a board: it forwards (at most `up_rate` bytes/s towards the
    board, a slow link), stalls (holds every byte, silently) or cuts."""

    def __init__(self, target_port: int, stall_after_bytes: int | None = None, up_rate: float | None = None):
        self.target_port, self.stall_after, self.up_rate = target_port, stall_after_bytes, up_rate
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.stalled = threading.Event()
        self.sent_up = 0  # bytes from the controller to the board
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            board = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, board]
            threading.Thread(target=self._pipe, args=(client, board, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(board, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, up: bool) -> None:
        try:
            while True:
                while self.stalled.is_set():  # a silent link: nothing read, nothing sent, nothing closed
                    time.sleep(0.05)
                data = source.recv(16384 if up and self.up_rate else 65536)
                if not data:
                    break
                target.sendall(data)
                if up and self.up_rate:
                    time.sleep(len(data) / self.up_rate)
                if up:
                    self.sent_up += len(data)
                    if self.stall_after is not None and self.sent_up > self.stall_after:
                        self.stalled.set()
        except OSError:
            pass
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """The cable pulled: both sides see the connection end."""
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.cut()
        self.server.close()


def via_proxy(board, proxy: Proxy, folder: Path):
    """The same board reached through `proxy`: its host key recorded for the proxy's port."""
    keys = Path(board.known_hosts).read_text().splitlines()
    key = next(line.split(" ", 1)[1] for line in keys if line.startswith(f"[127.0.0.1]:{board.port} "))
    known = folder / f"known_hosts-{proxy.port}"
    known.write_text(f"[127.0.0.1]:{proxy.port} {key}\n")
    return dataclasses.replace(board, port=proxy.port, known_hosts=str(known))


def write_inventory(path: Path, *boards) -> Path:
    """A farm inventory naming these boards exactly as they are."""
    import yaml

    rows = [{"name": b.name, "host": b.host, "port": b.port, "user": b.user, "identity_file": b.identity_file,
             "known_hosts": b.known_hosts, "workdir": b.workdir, "python": b.python, "threads": b.threads or 1}
            for b in boards]
    path.write_text(yaml.safe_dump({"boards": rows}, sort_keys=False))
    return path


def slow_agent_python(folder: Path, name: str, blob: str, marker: str, real_python: str) -> str:
    """A board Python whose agent, for the blob `blob`, measures (really) for ten minutes; `marker` finds it."""
    return wrapper_python(folder, name, f'case "$*" in *{blob}*) exec {shlex.quote(real_python)} "$@" --runs 999999999 '
                          f'--duration 600 --providers CPUExecutionProvider,{marker};; esac', real_python)


def wait_for_processes(marker: str, timeout_s: float, present: bool = True) -> bool:
    """Wait until processes with `marker` run (or, `present=False`, until none does); whether they do."""
    deadline = time.monotonic() + timeout_s
    while bool(processes(marker)) != present and time.monotonic() < deadline:
        time.sleep(0.2)
    return bool(processes(marker)) == present


def ssh_signer(folder: Path, name: str, principal: str | None = None, namespace: str = "farm-signoff") -> Path:
    """A fresh ed25519 key in `folder`; listed in folder/allowed_signers for `namespace` when a principal is given."""
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    if principal:
        public = " ".join((folder / f"{name}.pub").read_text().split()[:2])
        with open(folder / "allowed_signers", "a") as handle:
            handle.write(f'{principal} namespaces="{namespace}" {public}\n')
    return key


def heavier(src: Path, dst: Path, tiles: int) -> Path:
    """The same model, outputs and name, plus an input-dependent MatMul whose result is multiplied by 0."""
    model = onnx.load(str(src))
    graph = model.graph
    image, logits = graph.input[0].name, graph.output[0].name
    graph.initializer.extend([numpy_helper.from_array(np.array([1, 1, tiles, tiles], np.int64), "heavy_tiles"),
                              numpy_helper.from_array(np.array(0.0, np.float32), "heavy_zero")])
    for node in graph.node:
        node.output[:] = ["light_logits" if name == logits else name for name in node.output]
    graph.node.extend([helper.make_node("Tile", [image, "heavy_tiles"], ["heavy_t"]),
                       helper.make_node("MatMul", ["heavy_t", "heavy_t"], ["heavy_mm"]),
                       helper.make_node("ReduceSum", ["heavy_mm"], ["heavy_sum"], keepdims=0),
                       helper.make_node("Mul", ["heavy_sum", "heavy_zero"], ["heavy_nil"]),
                       helper.make_node("Add", ["light_logits", "heavy_nil"], [logits])])
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return dst


def history_run(run_id: str, board: str, p50: float, passed: bool = True,
                started: str = "2026-01-01T00:00:00") -> RunResult:
    """A one-board, one-variant run as the history stores it: figures made up, the structure real."""
    check = Check("latency", CheckStatus.PASS if passed else CheckStatus.FAIL, p50, 2.0, "ms")
    variant = VariantResult("fp32", latency_ms={"p50": p50, "p95": p50 * 1.2}, samples_ms=[p50] * 20, peak_rss_mb=90.0,
                            accuracy={"n": 450, "outputs": {"logits": {"top1": 0.98}}}, checks=[check])
    return RunResult(run_id, started, started, "lab.yaml", {"name": "dms"}, model=ModelResult("digits", "ab" * 32),
                     boards=[BoardResult(board, BoardStatus.OK, None, pools=["nightly"], variants={"fp32": variant})])


def sshd_greets(port: int) -> bool:
    """An sshd on 127.0.0.1:`port` answers with its banner (a frozen one, a board whose power was cut, accepts the
    connection and says nothing)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.settimeout(2)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False
