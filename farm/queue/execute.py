"""One queued job on its worker: the submitted bytes, then farm's own `farm run` (or `nightly`) as a child.

The child is the same command a person types, so a queued run is judged,
reported and recorded exactly like any other. Nothing of the job reaches it
unchecked (farm/queue/request.py): its flags are fixed names, its files the
job's four roles inside the job's folder, and where the boards are, where
results go and the history are the worker's own. No secret is on its command
line or in its log: the history's password travels in a PGPASSFILE. It dies with its worker (a
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

from farm.config.yamlfile import load_yaml
from farm.errors import QueueError
from farm.queue import request as job_request
from farm.queue.store import Store
from farm.record.storeurl import split_password
from farm.statuses import JobOutcome
from farm.util import NAME_RE

RUN_FILES = ("results.json", "junit.xml", "report.html")
OUTCOMES = {0: JobOutcome.PASSED, 1: JobOutcome.FAILED, 2: JobOutcome.BAD_INPUT, 130: JobOutcome.STOPPED,
            143: JobOutcome.STOPPED}
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
    pools: tuple[str, ...] = ()  # the pools it serves: a job for any other is refused


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the worker dies, however it dies."""
    parent = os.getppid()
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the worker died before the request took hold
        os._exit(143)


def materialize(store: Store, request: dict, folder: Path) -> dict[str, Path]:
    """The job's files (a checked request's) from the store, each at `folder/role/name` and nowhere else."""
    found = {role: store.get_blob(entry["sha256"], job_request.inside(folder, role, entry["name"]))
             for role, entry in request["files"].items()}
    checklist = load_yaml(found["checklist"], lambda path, line, message: QueueError(f"{path}: {message}"),
                          "checklist")
    if isinstance(checklist, dict) and "extends" in checklist:  # it would read a file of the worker's
        raise QueueError(f"job checklist {request['files']['checklist']['name']}: `extends:` in a queued checklist "
                         "(farm submit sends it resolved); refused")
    return found


def child_argv(config: WorkerConfig, request: dict, run_id: str, files: dict[str, Path], history: str) -> list[str]:
    """`farm run` (or nightly: a checked kind) with the worker's settings and the job's files and options, each
    `--name=value` under a fixed name, so no value of the job can be read as another option."""
    argv = [sys.executable, "-m", "farm", request["kind"],
            f"--inventory={config.inventory}", f"--pool={request['pool']}", f"--out={config.out}",
            f"--history={history}", f"--run-id={run_id}", f"--wait={config.board_wait_s}"]
    argv += [f"--{role}={files[role]}" for role in job_request.ROLES if role in files]
    for name in job_request.FORWARDED:
        value = (request.get("options") or {}).get(name)
        argv += [f"--{name}={one}" for one in (value if isinstance(value, list) else [] if value is None else [value])]
    return argv


def _history_secret(config: WorkerConfig, folder: Path) -> tuple[str, dict[str, str]]:
    """The history URL for the child's command line, and its environment: a PGPASSFILE (0600) with the password."""
    url, password = split_password(config.history)
    if password is None:
        return url, {}
    passfile = folder / ".pgpass"
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"*:*:*:*:{escaped}\n")
    return url, {"PGPASSFILE": str(passfile)}


def _child_environment() -> dict[str, str]:
    """The worker's environment less its store URLs (the queue's password need not reach a run, nor its boards')."""
    return {key: value for key, value in os.environ.items() if key not in ("FARM_QUEUE", "FARM_HISTORY")}


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
    run_id = store.job_started(job_id, config.name, attempt)
    folder = config.out / ".queue" / f"job-{job_id}"
    try:
        job_request.check(request, job_id, context.job.queue, config.pools)
        if not NAME_RE.match(run_id):
            raise QueueError(f"job {job_id}: run id {run_id!r} is not a plain name; refused")
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        files = materialize(store, request, folder)
        history, secret = _history_secret(config, folder)
        argv = child_argv(config, request, run_id, files, history)
    except QueueError as exc:
        store.job_finished(job_id, attempt, JobOutcome.BAD_INPUT, 2, str(exc))
        raise
    log = folder / f"attempt-{attempt}.log"
    try:
        with open(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as output:
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                     env={**_child_environment(), **secret}, preexec_fn=_die_with_parent)
            stopped = False
            while child.poll() is None:
                if not stopped and context.should_abort():
                    child.send_signal(signal.SIGTERM)  # farm stops like Ctrl-C: what it collected is written
                    stopped = True
                time.sleep(0.2)
    finally:
        (folder / ".pgpass").unlink(missing_ok=True)
    code = child.returncode
    run_dir = config.out / run_id
    store.save_run_files(run_id, attempt, {n: run_dir / n for n in RUN_FILES if (run_dir / n).is_file()})
    outcome = JobOutcome.CANCELLED if stopped else OUTCOMES.get(code, JobOutcome.OTHER_EXIT)
    # A run that judged its boards says why in its files; one that failed before measuring anything (every
    # board of the pool bad, say) only in its last line: that line is the job's message.
    measured = (run_dir / "results.json").is_file()
    message = "" if code == 0 or (code == 1 and measured) else _tail(log, 1 if code == 1 else 3)
    store.job_finished(job_id, attempt, outcome, code, message)
    if stopped:
        raise exceptions.JobAborted(f"job {job_id} cancelled; run {run_id} keeps what it collected")
    if code not in (0, 1):
        raise QueueError(f"job {job_id}: farm {request['kind']} exited {code}: {_tail(log)}")
