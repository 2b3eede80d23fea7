"""Deploy to boards in parallel: connect, lock, probe, push, measure, bring the JSON home.

Every board ends with one outcome, succeeded or not, and that outcome is written
to `<run dir>/boards/<board>.json` (temp file + rename) after every variant, so
an interrupted run leaves everything it had collected readable. One board's
fault never touches another's run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from farm.agent import Measurement, agent_argv, parse_agent_output
from farm.artifacts import Artifact, blob_path, push
from farm.errors import AgentError, TransportError
from farm.inventory import Board
from farm.lease import Lease
from farm.stats import latency_summary
from farm.transport import BoardConnection

STATUSES = ("ok", "unreachable", "auth-failed", "host-key-mismatch", "not-ready", "busy", "agent-error",
            "timeout", "push-failed", "cancelled")

# What the probe asks the board's Python; fixed text, no user input.
_PROBE = r'''
import json, platform, sys
facts = {"python": platform.python_version(), "machine": platform.machine(), "missing": []}
if sys.version_info < (3, 8):
    facts["missing"].append("Python >= 3.8 (found %s)" % facts["python"])
for name in ("numpy", "onnxruntime"):
    try:
        module = __import__(name)
        facts[name] = module.__version__
    except Exception as exc:
        facts["missing"].append("%s (%s)" % (name, exc))
if "onnxruntime" in facts:
    facts["providers_available"] = module.get_available_providers()
print(json.dumps(facts))
'''

Progress = Callable[[str, str], None]  # (board name, phase)


@dataclass
class DeployPlan:
    """What every board of a run gets: the same artifacts, the same measurement."""

    run_id: str
    agent: Artifact
    variants: dict[str, Artifact]
    data: Artifact | None
    reference: Artifact | None
    measurement: Measurement
    variant_deadline_s: float = 300.0
    lock_wait_s: float = 0.0
    connect_timeout_s: float = 10.0
    connect_attempts: int = 3
    probe_only: bool = False  # connect and probe, nothing else (farm probe, the fan-out benchmark)

    @property
    def artifacts(self) -> list[Artifact]:
        return [self.agent, *self.variants.values(), *(a for a in (self.data, self.reference) if a)]

    @property
    def lock_ttl_s(self) -> int:
        return int(self.variant_deadline_s * (len(self.variants) + 1) + 120)


@dataclass
class BoardOutcome:
    """One board's run, whatever happened: the status says which."""

    board: Board
    status: str = "cancelled"
    error: str | None = None
    facts: dict = field(default_factory=dict)
    variants: dict[str, dict] = field(default_factory=dict)
    bytes_sent: int = 0
    lock_note: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None

    def to_json(self) -> dict:
        return {"name": self.board.name, "status": self.status, "error": self.error, "facts": self.facts,
                "variants": self.variants, "bytes_sent": self.bytes_sent, "lock_note": self.lock_note,
                "address": self.board.address, "started": self.started, "finished": self.finished}


def write_json_atomic(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    partial.write_text(json.dumps(doc, indent=1) + "\n")
    partial.replace(path)


class SharedCpu:
    """Stand-ins share this machine's CPU: a measurement runs alone.

    Connecting, probing and pushing (hashing blobs) may overlap each other, but
    none overlaps a measurement, or one board's latency would be another board's
    load. A waiting measurement goes first, so measurements are never starved.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._working = 0
        self._measuring = False
        self._waiting = 0

    @contextlib.contextmanager
    def work(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._measuring and not self._waiting)
            self._working += 1
        try:
            yield
        finally:
            with self._cond:
                self._working -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def measure(self):
        with self._cond:
            self._waiting += 1
            self._cond.wait_for(lambda: not self._measuring and not self._working)
            self._waiting -= 1
            self._measuring = True
        try:
            yield
        finally:
            with self._cond:
                self._measuring = False
                self._cond.notify_all()


class _BoardLog:
    """The board's own log file: what was done, how long it took, the agent's stderr."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "a", buffering=1)

    def __call__(self, message: str) -> None:
        self._handle.write(f"{time.strftime('%H:%M:%S')} {message}\n")

    def close(self) -> None:
        self._handle.close()


class Deployment:
    """A fan-out over boards; `cancel()` (e.g. on Ctrl-C) stops remote agents and keeps results."""

    def __init__(self, plan: DeployPlan, run_dir: Path, progress: Progress = lambda board, phase: None):
        self.plan = plan
        self.run_dir = Path(run_dir)
        self.progress = progress
        self._cancelled = threading.Event()
        self._active: dict[str, tuple[BoardConnection, str]] = {}
        self._lock = threading.Lock()
        self._shared_cpu = SharedCpu()  # stand-ins only: real boards have CPUs of their own

    # -- per board ---------------------------------------------------------------------------
    def _save(self, outcome: BoardOutcome) -> None:
        write_json_atomic(self.run_dir / "boards" / f"{outcome.board.name}.json", outcome.to_json())

    def _phase(self, outcome: BoardOutcome, log: _BoardLog, phase: str) -> None:
        if self._cancelled.is_set():
            raise TransportError("run cancelled", "cancelled")
        log(phase)
        self.progress(outcome.board.name, phase)

    def _probe(self, connection: BoardConnection, outcome: BoardOutcome) -> None:
        board = outcome.board
        result = connection.run([board.python, "-c", _PROBE], deadline_s=60)
        if not result.ok:
            raise TransportError(f"{board.name}: {board.python!r} does not run on the board: {result.tail()}",
                                 "not-ready")
        try:
            facts = json.loads(result.stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError) as exc:
            raise TransportError(f"{board.name}: probe printed no facts: {result.tail()}", "not-ready") from exc
        outcome.facts.update(facts)
        if facts["missing"]:
            raise TransportError(f"{board.name}: not ready: missing {', '.join(facts['missing'])} "
                                 f"for {board.python}", "not-ready")

    def _measure(self, connection: BoardConnection, outcome: BoardOutcome, variant: str, log: _BoardLog,
                 measure_lock) -> None:
        """Run the agent `rounds` times; samples are pooled, each round's summary kept."""
        board, plan = outcome.board, self.plan
        artifact = plan.variants[variant]
        measurement = dataclasses.replace(plan.measurement, threads=board.threads or plan.measurement.threads,
                                          providers=board.providers)
        docs = []
        for round_index in range(max(1, measurement.rounds)):
            argv = agent_argv(board.python, blob_path(board.workdir, plan.agent), blob_path(board.workdir, artifact),
                              measurement, expect_sha256=artifact.sha256,
                              data=blob_path(board.workdir, plan.data) if plan.data else None,
                              reference=blob_path(board.workdir, plan.reference) if plan.reference else None,
                              skip_accuracy=round_index > 0)
            with measure_lock():
                self._phase(outcome, log, f"measure {variant}" + (f" ({round_index + 1}/{measurement.rounds})"
                                                                  if measurement.rounds > 1 else ""))
                docs.append(self._run_agent(connection, outcome, variant, argv, log))
        doc = docs[0]
        if len(docs) > 1 and all(d.get("latency_ms") for d in docs):
            doc["rounds"] = [d["latency_ms"] for d in docs]
            doc["samples_ms"] = [s for d in docs for s in d["samples_ms"]]
            doc["latency_ms"] = {**latency_summary(doc["samples_ms"]), "rounds": len(docs)}
            doc["peak_rss_mb"] = max(d["peak_rss_mb"] for d in docs)
        outcome.variants[variant] = doc
        outcome.facts.update(doc.get("facts") or {})

    def _run_agent(self, connection: BoardConnection, outcome: BoardOutcome, variant: str, argv: list[str],
                   log: _BoardLog) -> dict:
        board, plan = outcome.board, self.plan
        pidfile = f"{board.workdir.rstrip('/')}/agent.{plan.run_id}.pid"
        with self._lock:
            self._active[board.name] = (connection, pidfile)
        try:
            result = connection.run(argv, deadline_s=plan.variant_deadline_s, pidfile=pidfile)
        finally:
            with self._lock:
                self._active.pop(board.name, None)
        log(f"agent {variant}: exit {result.exit_code} in {result.duration_s:.1f} s")
        if result.stderr.strip():
            log(f"agent {variant} stderr:\n{result.stderr.rstrip()}")
        if result.timed_out:
            raise TransportError(f"{board.name}: agent on {variant} passed its {plan.variant_deadline_s:.0f} s "
                                 f"deadline and was killed", "timeout")
        if self._cancelled.is_set():
            raise TransportError("run cancelled", "cancelled")
        if result.exit_code != 0:
            raise AgentError(f"{board.name}: agent on {variant} exited {result.exit_code}; stderr tail: {result.tail()}")
        return parse_agent_output(result.stdout, result.stderr)

    def _deploy_one(self, board: Board) -> BoardOutcome:
        outcome = BoardOutcome(board)
        log = _BoardLog(self.run_dir / "logs" / f"{board.name}.log")
        connection = BoardConnection(board, connect_timeout=self.plan.connect_timeout_s,
                                     attempts=self.plan.connect_attempts)
        shared = board.standin
        work = self._shared_cpu.work if shared else contextlib.nullcontext
        measure = self._shared_cpu.measure if shared else contextlib.nullcontext
        lease = None
        try:
            with work():
                self._phase(outcome, log, f"connect {board.address}")
                connection.open()
                if self.plan.probe_only:
                    self._phase(outcome, log, "probe")
                    self._probe(connection, outcome)
                    outcome.status = "ok"
                    return outcome
                self._phase(outcome, log, "lock")
                lease = Lease(connection, board.workdir, self.plan.run_id).acquire(self.plan.lock_ttl_s,
                                                                                     self.plan.lock_wait_s)
                if lease.broke:
                    outcome.lock_note = f"broke a stale lock held by: {lease.broke}"
                    log(outcome.lock_note)
                self._phase(outcome, log, "probe")
                self._probe(connection, outcome)
                self._phase(outcome, log, "push")
                report = push(connection, board.workdir, self.plan.artifacts)
                outcome.bytes_sent = report.bytes_sent
                log(f"pushed {len(report.uploaded)} blob(s), {report.bytes_sent} bytes; "
                    f"{len(report.already_there)} already there; re-sent {len(report.resent)}")
            for variant in self.plan.variants:
                self._measure(connection, outcome, variant, log, measure)
                self._save(outcome)
            outcome.status = "ok"
        except TransportError as exc:
            outcome.status, outcome.error = exc.status, str(exc)
        except AgentError as exc:
            outcome.status, outcome.error = "agent-error", str(exc)
        except Exception as exc:  # a board must never take the run down with it
            outcome.status, outcome.error = "agent-error", f"{type(exc).__name__}: {exc}"
        finally:
            if lease is not None:
                try:
                    lease.release()
                except Exception as exc:
                    log(f"could not release the lock: {exc}")
            connection.close()
            outcome.finished = time.time()
            log(f"status {outcome.status}" + (f": {outcome.error}" if outcome.error else ""))
            self.progress(board.name, outcome.status)
            self._save(outcome)
            log.close()
        return outcome

    # -- the fan-out -------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop: no new phase starts, and running agents are killed on their boards."""
        self._cancelled.set()
        with self._lock:
            active = list(self._active.values())
        for connection, pidfile in active:
            try:
                connection.kill_group(pidfile)
            except Exception:
                pass  # the board may be gone; its deadline kills the agent anyway

    def run(self, boards: list[Board], max_workers: int | None = None) -> list[BoardOutcome]:
        if not boards:
            return []
        workers = max_workers or min(32, len(boards))
        per_board_s = self.plan.lock_wait_s + self.plan.lock_ttl_s + 60
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="farm-board")
        futures = {pool.submit(self._deploy_one, board): board for board in boards}
        try:
            rounds = -(-len(boards) // workers)
            done, _ = wait(futures, timeout=per_board_s * rounds)
        except KeyboardInterrupt:
            self.cancel()
            wait(futures, timeout=30)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=False, cancel_futures=True)
        outcomes = []
        for future, board in futures.items():
            if future in done:
                outcomes.append(future.result())
            else:
                outcome = BoardOutcome(board, "timeout", f"{board.name}: no outcome within the run's deadline")
                self._save(outcome)
                outcomes.append(outcome)
        return outcomes
