"""One queued job on its worker: the submitted bytes, then farm's own `farm run` (or `nightly`) as a child.

The child is the same command a person types, so a queued run is judged,
reported and recorded exactly like any other. It dies with its worker (a
parent-death signal: SIGTERM, which farm handles like Ctrl-C), so a killed
worker's run releases its boards at once instead of measuring on unseen; a
cancelled job is stopped the same way and keeps what it collected.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import procrastinate
from procrastinate import exceptions

from farm.errors import QueueError
from farm.queue.app import run_id_of
from farm.queue.store import Store
from farm.util import NAME_RE

FORWARDED = ("variants", "runs", "warmup", "rounds", "deadline", "board", "tag")  # run options a job carries
RUN_FILES = ("results.json", "junit.xml", "report.html")
OUTCOMES = {0: "passed", 1: "failed", 2: "bad input", 130: "stopped", 143: "stopped"}
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker runs its jobs with: its own boards, results folder and history."""

    name: str
    queue_url: str
    inventory: Path
    out: Path
    history: str
    board_wait_s: float = 0.0  # for a board someone holds outside the queue


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the worker dies, however it dies."""
    parent = os.getppid()
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the worker died before the request took hold
        os._exit(143)


def materialize(store: Store, request: dict, folder: Path) -> dict[str, Path]:
    """The job's files from the store, under the names they were submitted with."""
    found = {}
    for role, entry in (request.get("files") or {}).items():
        name = entry["name"] if NAME_RE.match(entry.get("name") or "") else f"{role}-{entry['sha256'][:12]}"
        found[role] = store.get_blob(entry["sha256"], folder / role / name)
    return found


def child_argv(config: WorkerConfig, request: dict, run_id: str, files: dict[str, Path]) -> list[str]:
    argv = [sys.executable, "-m", "farm", request["kind"], "--inventory", str(config.inventory),
            "--pool", request["pool"], "--out", str(config.out), "--history", config.history, "--run-id", run_id,
            "--wait", str(config.board_wait_s)]
    for role, path in files.items():
        argv += [f"--{role}", str(path)]
    for name, value in (request.get("options") or {}).items():
        if name not in FORWARDED:
            raise QueueError(f"job option {name!r} is not one a queued job may set ({', '.join(FORWARDED)})")
        for one in value if isinstance(value, list) else [value]:
            argv += [f"--{name}", str(one)]
    return argv


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def execute(context: procrastinate.JobContext, request: dict) -> None:
    """Run one attempt of a job; raise to mark it failed (bad input) or aborted (cancelled)."""
    config: WorkerConfig = context.additional_context["config"]
    store: Store = context.additional_context["store"]
    job_id, attempt = context.job.id, context.job.attempts + 1
    run_id = run_id_of(job_id, request["submitted_at"])
    store.job_started(job_id, run_id, request, config.name, attempt)
    folder = config.out / ".queue" / f"job-{job_id}"
    try:
        files = materialize(store, request, folder)
        argv = child_argv(config, request, run_id, files)
    except QueueError as exc:
        store.job_finished(job_id, attempt, "bad input", 2, str(exc))
        raise
    log = folder / f"attempt-{attempt}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as output:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                 preexec_fn=_die_with_parent)
        stopped = False
        while child.poll() is None:
            if not stopped and context.should_abort():
                child.send_signal(signal.SIGTERM)  # farm stops like Ctrl-C: what it collected is written
                stopped = True
            time.sleep(0.2)
    code = child.returncode
    run_dir = config.out / run_id
    store.save_run_files(run_id, attempt, {n: run_dir / n for n in RUN_FILES if (run_dir / n).is_file()})
    outcome = "cancelled" if stopped else OUTCOMES.get(code, f"exit {code}")
    store.job_finished(job_id, attempt, outcome, code, "" if code in (0, 1) else _tail(log))
    if stopped:
        raise exceptions.JobAborted(f"job {job_id} cancelled; run {run_id} keeps what it collected")
    if code not in (0, 1):
        raise QueueError(f"job {job_id}: farm {request['kind']} exited {code}: {_tail(log)}")
