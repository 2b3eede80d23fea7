"""One board's run as named steps: connect, lock, probe, push, measure each variant.

Each step checks for cancellation, logs, reports progress and records how long
it took (labgrid's @step idea). A board's fault ends its session with the
status the fault maps to; a bug in farm ends it `internal-error`, with the
traceback in the board's log, never disguised as the board's fault. Whatever
happens, the lease is released and the board's result saved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

from farm import resources
from farm.board.agent import AgentFiles, agent_argv, parse_agent_output
from farm.board.artifacts import Artifact, blob_path, clean, push
from farm.board.connect import open_transport
from farm.board.lease import Lease
from farm.board.power import switch, wait_for_boot
from farm.board.probe import probe, require_ready
from farm.board.transport import Transport
from farm.build.toolchains import BoardFile, toolchain_for
from farm.config import locality
from farm.config.inventory import Board
from farm.config.settings import Measurement
from farm.errors import AgentError, BoardError, PowerError, Stopped
from farm.judge.stats import latency_summary
from farm.record.boardlog import for_board
from farm.results import PER_VARIANT, BoardResult, BoardStatus, Recovery, Step, VariantResult
from farm.statuses import BUILT, AgentStage
from farm.util import utc_now

SETUP_STEPS = ("connect", "lock", "probe", "push")
CLEAN = ("connect", "lock", "clean")
PROFILE_RUNS = 20  # runs of an INT8 variant profiled in its accuracy process: what a slow one spends time on
FULL_RUN = SETUP_STEPS + ("measure",)
PROBE_ONLY = ("connect", "probe")
# A board that stops answering (or whose agent hangs) is power-cycled once, when it has power control.
HANGS = (BoardStatus.UNREACHABLE, BoardStatus.LINK_LOST, BoardStatus.TIMEOUT)
NO_POWER = "no power control to recover it (power: in the inventory)"
log = logging.getLogger(__name__)


class Progress(Protocol):
    """The live progress table's callback (farm/ui/progress.py): a board's phase as it changes. Everything
    else a session says is logged, to the board's log file."""

    def __call__(self, board: str, phase: str) -> None: ...


def no_progress(board: str, phase: str) -> None:
    """No live table: the phases are in the boards' log files all the same."""


@dataclass
class DeployPlan:
    """What every board of a run gets: the same artifacts, the same measurement, the same steps."""

    run_id: str
    agent: Artifact
    variants: dict[str, Artifact]
    measurement: Measurement
    spec: Artifact | None = None
    feed: Artifact | None = None
    data: Artifact | None = None  # the evaluation set and labels only: calibration stays on the controller
    reference: Artifact | None = None
    variant_deadline_s: float = 300.0
    lock_wait_s: float = 0.0
    connect_timeout_s: float = 10.0
    connect_attempts: int = 3
    steps: tuple[str, ...] = FULL_RUN
    keep_runs: int = 3  # CLEAN: the blobs of this many newest runs stay
    variant_toolchains: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # built for these toolchains
    board_files: dict[str, dict[str, list[BoardFile]]] = dataclasses.field(default_factory=dict)  # board > variant

    @classmethod
    def from_manifest(cls, manifest: dict, folder: Path, run_id: str, measurement: Measurement,
                      **options) -> DeployPlan:
        """The plan for what a manifest built in `folder`, by the hashes it recorded: nothing is hashed twice."""
        artifact = lambda entry: Artifact(folder / entry["file"], entry["sha256"]) if entry else None  # noqa: E731
        files = manifest["files"]
        return cls(run_id=run_id, agent=Artifact.of(resources.agent()),
                   variants={v: artifact(e) for v, e in manifest["variants"].items() if e["status"] in BUILT},
                   spec=artifact(files.get("spec")), feed=artifact(files.get("feed")), data=artifact(files.get("data")),
                   reference=artifact(files.get("reference")), measurement=measurement,
                   variant_toolchains={v: e.get("toolchains") for v, e in manifest["variants"].items()}, **options)

    @classmethod
    def probe(cls, run_id: str) -> DeployPlan:
        """Connect and ask the board what it has: nothing pushed, nothing locked, nothing measured."""
        return cls(run_id, Artifact.of(resources.agent()), {}, Measurement(), steps=PROBE_ONLY)

    @classmethod
    def clean(cls, run_id: str, keep_runs: int) -> DeployPlan:
        """Lock the board and free the blobs no recent run used."""
        return cls(run_id, Artifact.of(resources.agent()), {}, Measurement(), steps=CLEAN, keep_runs=keep_runs)

    @property
    def artifacts(self) -> list[Artifact]:
        extras = (self.spec, self.feed, self.data, self.reference)
        return [self.agent, *self.variants.values(), *(a for a in extras if a)]

    def variants_for(self, board: Board) -> list[str]:
        """The variants a board measures: the generic ones its toolchain takes and those built for it."""
        toolchain = toolchain_for(board)
        return [v for v in self.variants if toolchain.measures(v, self.variant_toolchains.get(v))]

    def artifacts_for(self, board: Board) -> list[Artifact]:
        """What one board gets: the agent, its variants, the shared files, its toolchain's precompiled files."""
        extra = [Artifact(f.path, f.sha256) for files in self.board_files.get(board.name, {}).values() for f in files]
        return [self.agent, *(self.variants[v] for v in self.variants_for(board)),
                *(a for a in (self.spec, self.feed, self.data, self.reference) if a), *extra]

    @property
    def board_deadline_s(self) -> float:
        """The longest one board's session can take: every agent process at its deadline, plus set-up."""
        processes = max(1, self.measurement.rounds) + (1 if self.data else 0)
        return self.variant_deadline_s * (len(self.variants) * processes + 1) + 120


def board_result(board: Board) -> BoardResult:
    """A board's result before anything happened to it: who it is, how it is reached."""
    return BoardResult(name=board.name, board_class=board.board_class, standin=board.standin,
                       emulated=bool(board.emulated_cpu), qemu_cpu=board.emulated_cpu, address=board.address,
                       on_controller=board.shares_controller_cpu, pools=list(board.pools),
                       providers_requested=list(board.providers), host_key_policy=board.host_key_policy)


def _signal_name(exit_code: int) -> str:
    """The signal an exit code says killed a process: 128+N from a shell, -N from Python, -1 from SSH (unnamed)."""
    if exit_code == -1:
        return "a signal (the SSH server sent no exit status)"
    number = exit_code - 128 if exit_code > 128 else -exit_code
    name = signal.Signals(number).name if number in signal.valid_signals() else "signal"
    hint = ": out of memory? (the OOM killer sends SIGKILL)" if number == signal.SIGKILL else ""
    return f"{name} (signal {number}){hint}"


class SharedCpu:
    """Boards on this machine's CPU (stand-ins, local boards): a measurement runs alone.

    Connecting, probing and pushing may overlap each other, but none overlaps a
    measurement, or one board's latency would be another board's load (three
    stand-ins measuring at once turned a 0.5 ms p50 into a 21 ms p95). A waiting
    measurement goes first, so measurements are never starved. A holder whose
    link has gone silent gives up its slot: every CHECK_S a waiter asks each
    holder's link (`alive`), and one that does not answer no longer counts, so a
    board's fault never stalls the healthy boards until it is declared link-lost.
    """

    CHECK_S = 5.0

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._working: dict[int, Callable[[], bool]] = {}
        self._measuring: dict[int, Callable[[], bool]] = {}  # at most one holder
        self._waiting = 0
        self._tokens = itertools.count()

    def _wait_for(self, ready: Callable[[], bool]) -> None:
        """Wait (holding the condition) until `ready()`, dropping holders whose link went silent."""
        while not ready():
            if self._cond.wait(self.CHECK_S) or ready():
                continue
            holders = [*self._measuring.items(), *self._working.items()]
            self._cond.release()
            try:  # asked outside the lock: a silent link takes seconds to say so
                silent = [token for token, alive in holders if not alive()]
            finally:
                self._cond.acquire()
            for token in silent:
                self._measuring.pop(token, None)
                self._working.pop(token, None)

    def _take(self, slots: dict[int, Callable[[], bool]], alive: Callable[[], bool]) -> int:
        token = next(self._tokens)
        slots[token] = alive
        return token

    def _give_back(self, slots: dict[int, Callable[[], bool]], token: int) -> None:
        with self._cond:
            slots.pop(token, None)  # already gone when its link was found silent
            self._cond.notify_all()

    @contextlib.contextmanager
    def work(self, alive: Callable[[], bool] = lambda: True) -> Iterator[None]:
        with self._cond:
            self._wait_for(lambda: not self._measuring and not self._waiting)
            token = self._take(self._working, alive)
        try:
            yield
        finally:
            self._give_back(self._working, token)

    @contextlib.contextmanager
    def measure(self, alive: Callable[[], bool] = lambda: True) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            try:
                self._wait_for(lambda: not self._measuring and not self._working)
            finally:
                self._waiting -= 1
            token = self._take(self._measuring, alive)
        try:
            yield
        finally:
            self._give_back(self._measuring, token)


class RunControl:
    """What every session of a run shares: the stop signal and the agents running now (to kill on stop)."""

    def __init__(self) -> None:
        self._stopped: BoardError | None = None
        self._lock = threading.Lock()
        self._agents: dict[str, tuple[Transport, str]] = {}
        self.shared_cpu = SharedCpu()

    def check(self) -> None:
        if self._stopped is not None:
            raise self._stopped

    def is_stopped(self) -> bool:
        return self._stopped is not None

    def stop(self, reason: BoardError) -> list[tuple[Transport, str]]:
        """No new step starts from now; returns the agents to kill."""
        with self._lock:
            self._stopped = reason
            return list(self._agents.values())

    @contextlib.contextmanager
    def agent(self, board: str, transport: Transport, pidfile: str) -> Iterator[None]:
        with self._lock:
            self._agents[board] = (transport, pidfile)
        try:
            yield
        finally:
            with self._lock:
                self._agents.pop(board, None)


class BoardSession:
    """One board's steps; `run()` always returns the board's result and never raises."""

    def __init__(self, board: Board, plan: DeployPlan, control: RunControl,
                 save: Callable[[BoardResult], None], progress: Progress = no_progress):
        self.board, self.plan, self.control = board, plan, control
        self.log = for_board(log, board.name)  # its records go to its log file (record/boardlog.py)
        self._save, self._progress = save, progress
        self.result = board_result(board)
        self.transport = open_transport(board, connect_timeout=plan.connect_timeout_s, attempts=plan.connect_attempts)
        self.lease: Lease | None = None

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.control.check()
        if self.lease is not None and self.lease.lost:
            raise BoardError(f"{self.board.name}: lost its lock to {self.lease.lost}: this run's heartbeat stalled "
                             f"past the lease's {self.lease.ttl_s} s, so another run took the board", BoardStatus.BUSY)
        self.log.info(name)
        self._progress(self.board.name, name)
        started = time.monotonic()
        try:
            yield
        finally:
            self.result.steps.append(Step(name, round(time.monotonic() - started, 3)))

    # -- the steps ------------------------------------------------------------------------------
    def connect(self) -> None:
        with self.step("connect"):
            self.log.debug(f"connecting to {self.board.address}")
            self.transport.open()
            self.result.host_key = self.transport.host_key()  # what a sign-off names the board by

    def lock(self) -> None:
        with self.step("lock"):
            self.lease = Lease(self.transport, self.board.workdir, self.plan.run_id).acquire(
                self.plan.lock_wait_s, stopped=self.control.is_stopped, waiting=self._waiting_for)
            if self.lease.broke:
                self.result.lock_note = f"broke a stale lock held by: {self.lease.broke}"
                self.log.warning(self.result.lock_note)

    def _waiting_for(self, holder: str) -> None:
        """A busy board: say whom the run waits for, in the log and the live table."""
        self.log.info(f"busy: waiting up to {self.plan.lock_wait_s:.0f} s for {holder}")
        self._progress(self.board.name, f"lock: waiting for {holder}")

    def probe(self) -> None:
        with self.step("probe"):
            facts = probe(self.transport, self.board.workdir)
            self.result.facts.update(facts)
            # By the board's kernel and by what its address resolves to: a stand-in under any other name.
            self.result.on_controller = locality.on_controller(
                self.board.address, self.board.standin, self.result.kernel_boot_id, {locality.controller_boot_id()})
            require_ready(self.transport, facts)

    def push(self) -> None:
        with self.step("push"):
            report = push(self.transport, self.board.workdir, self.plan.artifacts_for(self.board), self.plan.run_id,
                          stopped=self.control.is_stopped)
            self.result.bytes_sent = report.bytes_sent
            self.log.debug(f"pushed {len(report.uploaded)} blob(s), {report.bytes_sent} bytes; "
                           f"{len(report.already_there)} already there; re-sent {len(report.resent)}")

    def _files(self, variant: str) -> AgentFiles:
        plan, workdir = self.plan, self.board.workdir
        blob = lambda artifact: blob_path(workdir, artifact) if artifact else None  # noqa: E731
        return AgentFiles(blob(plan.variants[variant]), spec=blob(plan.spec), feed=blob(plan.feed),
                          data=blob(plan.data), reference=blob(plan.reference),
                          expect_sha256=plan.variants[variant].sha256)

    def clean(self) -> None:
        with self.step("clean"):
            freed = clean(self.transport, self.board.workdir, self.plan.keep_runs)
            self.result.facts["freed_bytes"] = freed
            self.log.info(f"freed {freed} bytes: blobs no run among the {self.plan.keep_runs} newest used")

    def measure(self, variant: str) -> None:
        """One variant; a fault of its own (timeout, killed, model error) stops it alone, saying why."""
        try:
            self._measure(variant)
        except BoardError as exc:
            if isinstance(exc, Stopped) or exc.status not in PER_VARIANT or self._can_recover(exc):
                raise
            found = self.result.variants.get(variant) or VariantResult(variant)
            found.status, found.error = exc.status, self._hang_reason(exc)
            self.result.variants[variant] = found
            self.log.warning(f"{variant} stopped ({exc.status}): {exc}; the other variants go on")

    def _measure(self, variant: str) -> None:
        """Latency in `rounds` agent processes (samples pooled, each round's summary kept), then accuracy in
        a process of its own: the evaluation set never weighs on the model's memory or timing."""
        board, plan = self.board, self.plan
        files, agent = self._files(variant), blob_path(board.workdir, plan.agent)
        toolchain = toolchain_for(board)
        measurement = dataclasses.replace(plan.measurement, threads=board.threads or plan.measurement.threads,
                                          providers=toolchain.providers(board))
        board_files = {}
        for found in plan.board_files.get(board.name, {}).get(variant, []):
            board_files[found.role] = blob_path(board.workdir, Artifact(found.path, found.sha256))
            board_files[f"{found.role}_sha256"] = found.sha256
        extra = toolchain.agent_args(board, board_files, board.workdir)
        rounds = max(1, measurement.rounds)
        docs = []
        for index in range(rounds):
            argv = agent_argv(board.python, agent, files, measurement, "latency", watch_stdin=True, extra=extra)
            which = f" ({index + 1}/{rounds})" if rounds > 1 else ""
            with self._measuring(), self.step(f"measure {variant}{which}"):
                docs.append(self._run_agent(variant, argv))
        failed = next((e for d in docs for e in d["errors"] if e["stage"] in (AgentStage.LOAD, AgentStage.LATENCY)),
                      None)
        if failed:
            raise BoardError(f"{board.name}: {variant}: {failed['message']}", BoardStatus.MODEL_ERROR)
        result = VariantResult.from_agent(variant, docs[0])
        result.toolchain = toolchain.name
        if len(docs) > 1 and all(d.get("latency_ms") for d in docs):
            result.rounds = [d["latency_ms"] for d in docs]
            result.samples_ms = [s for d in docs for s in d["samples_ms"]]
            result.latency_ms = {**latency_summary(result.samples_ms), "rounds": len(docs)}
            result.peak_rss_mb = max(d["peak_rss_mb"] for d in docs)
            states = [d.get("board_state") or {} for d in docs]
            result.board_state = {"before": states[0].get("before"), "after": states[-1].get("after"),
                                  "flags": [f"round {i}: {flag}" for i, state in enumerate(states, 1)
                                            for flag in state.get("flags") or []]}
        if plan.data is not None:
            argv = agent_argv(board.python, agent, files, measurement, "accuracy",
                              profile_runs=PROFILE_RUNS if variant != "fp32" else 0, watch_stdin=True, extra=extra)
            with self._measuring(), self.step(f"accuracy {variant}"):
                result.add_accuracy(self._run_agent(variant, argv))
        self.result.variants[variant] = result
        self.result.facts.update(docs[0].get("facts") or {})

    def _measuring(self):
        if not self.board.shares_controller_cpu:
            return contextlib.nullcontext()
        return self.control.shared_cpu.measure(self.transport.link_alive)

    def _run_agent(self, variant: str, argv: list[str]) -> dict:
        board, plan = self.board, self.plan
        pidfile = f"{board.workdir.rstrip('/')}/agent.{plan.run_id}.pid"
        with self.control.agent(board.name, self.transport, pidfile):
            result = self.transport.run(argv, deadline_s=plan.variant_deadline_s, pidfile=pidfile)
        self.log.debug(f"agent {variant}: exit {result.exit_code} in {result.duration_s:.1f} s")
        if result.stderr.strip():
            self.log.debug(f"agent {variant} stderr:\n{result.stderr.rstrip()}")
        self.control.check()  # stopped while it ran: the agent was killed, its output means nothing
        if result.timed_out:
            raise BoardError(f"{board.name}: agent on {variant} passed its {plan.variant_deadline_s:.0f} s "
                             f"deadline and was killed", BoardStatus.TIMEOUT)
        if result.exit_code > 128 or result.exit_code < 0:
            raise BoardError(f"{board.name}: agent on {variant} was killed by {_signal_name(result.exit_code)} after "
                             f"{result.duration_s:.1f} s; stderr tail: {result.tail() or '(empty)'}",
                             BoardStatus.KILLED)
        if result.exit_code != 0:
            raise AgentError(f"{board.name}: agent on {variant} exited {result.exit_code}; "
                             f"stderr tail: {result.tail()}")
        return parse_agent_output(result.stdout, result.stderr)

    # -- recovery -------------------------------------------------------------------------------
    def _can_recover(self, exc: BoardError) -> bool:
        return (not isinstance(exc, Stopped) and exc.status in HANGS and self.board.power is not None
                and self.result.recovery is None and "measure" in self.plan.steps)

    def _hang_reason(self, exc: BoardError) -> str:
        """A hang's reason says when nothing could be done about it."""
        if exc.status in HANGS and self.board.power is None:
            return f"{exc}; {NO_POWER}"
        return str(exc)

    def _recover(self, fault: BoardError) -> None:
        """Power-cycle the board once and wait for it to boot (SSH answering, a new boot id); the fault
        stays the board's, with what the cycle did, when it does not come back."""
        board, started = self.board, time.monotonic()
        self.result.recovery = recovery = Recovery(cause=f"{fault.status}: {fault}")
        self.log.warning(f"{fault.status}: power-cycling the board ({board.power.describe()})")
        self._progress(board.name, "power cycle")
        if self.lease is not None:  # its heartbeat stops; the lock on the board is this run's and is taken back
            self.lease.abandon()
            self.lease = None
        self.transport.close()
        try:
            with self.step("power cycle"):
                switch(board, "cycle")
                wait_for_boot(board, self.result.facts.get("boot_id"), stopped=self.control.is_stopped)
        except PowerError as exc:
            recovery.why = str(exc)
            raise BoardError(f"{fault}; {recovery.note}", fault.status) from exc
        recovery.seconds, recovery.recovered = round(time.monotonic() - started, 1), True
        self.log.info(recovery.note + "; trying its work again")
        self.transport = open_transport(board, connect_timeout=self.plan.connect_timeout_s,
                                        attempts=self.plan.connect_attempts)

    # -- the session ----------------------------------------------------------------------------
    def _work(self) -> None:
        """Set-up, then each variant not yet measured (after a recovery, the ones measured before stay)."""
        setup = [name for name in self.plan.steps if name != "measure"]
        shared = self.board.shares_controller_cpu
        with self.control.shared_cpu.work(self.transport.link_alive) if shared else contextlib.nullcontext():
            for name in setup:
                getattr(self, name)()
        if "measure" in self.plan.steps:
            for variant in self.plan.variants_for(self.board):
                if variant not in self.result.variants or self.result.variants[variant].status != BoardStatus.OK:
                    self.measure(variant)
                    self._save(self.result)

    def run(self) -> BoardResult:
        self.result.started = utc_now()
        try:
            try:
                self._work()
            except BoardError as exc:
                if not self._can_recover(exc):
                    raise
                self._recover(exc)
                try:
                    self._work()
                except BoardError as again:  # a second failure is the board's
                    raise BoardError(f"{again} (again, after {self.result.recovery.note})", again.status) from again
            stopped = [v for v in self.result.variants.values() if v.status != BoardStatus.OK]
            self.result.status = stopped[0].status if stopped else BoardStatus.OK
            self.result.error = "; ".join(f"{v.name}: {v.error}" for v in stopped) or None
        except BoardError as exc:
            self.result.status, self.result.error = exc.status, self._hang_reason(exc)
        except Exception as exc:  # a bug in farm: said so, with the traceback, never blamed on the board
            self.result.status = BoardStatus.INTERNAL_ERROR
            self.result.error = (f"internal error in farm ({type(exc).__name__}: {exc}); traceback in "
                                 f"logs/{self.board.name}.log; please report it")
            self.log.error("internal error in farm:", exc_info=True)
        finally:
            self._finish()
        return self.result

    def _finish(self) -> None:
        if self.lease is not None:
            try:
                self.lease.release()
            except Exception as exc:  # the board may be gone; the lock then expires
                self.log.warning(f"could not release the lock: {exc}")
        try:
            self.transport.close()
        except Exception as exc:
            self.log.warning(f"closing the connection: {exc}")
        self.result.finished = utc_now()
        self.log.log(logging.INFO if self.result.ok else logging.WARNING,
                     f"status {self.result.status}" + (f": {self.result.error}" if self.result.error else ""))
        self._progress(self.board.name, str(self.result.status))
        self._save(self.result)
