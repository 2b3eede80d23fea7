"""Deploy to boards in parallel: one session per board, every board's result returned.

A bounded set of worker threads runs the sessions; each board's result is saved
to `boards/<board>.json` after every variant. `cancel()` (Ctrl-C, a signal, the
run's deadline) starts no new step and kills the agents running on the boards.
When the run's deadline passes the fan-out cancels, waits a grace period for
sessions to release their boards, and records the rest as `timeout`; a worker
that finishes later can no longer overwrite that record. Workers are daemon
threads: a board that never answers cannot keep the process alive.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Iterator

from farm.config.inventory import Board
from farm.deploy.session import BoardSession, DeployPlan, Progress, RunControl, board_result, no_progress
from farm.errors import BoardError, Cancelled, Stopped
from farm.record.boardlog import board_log
from farm.record.rundir import RunDir
from farm.results import BoardResult, BoardStatus
from farm.util import utc_now

MAX_WORKERS = 32
CANCEL_GRACE_S = 30.0  # after a cancel, how long sessions get to kill agents and release locks


@dataclass
class GroupResult:
    """Every board's result, succeeded or failed (fabric's GroupResult idea)."""

    results: dict[str, BoardResult]

    def __iter__(self) -> Iterator[BoardResult]:
        return iter(self.results.values())

    @property
    def failed(self) -> dict[str, BoardResult]:
        return {name: r for name, r in self.results.items() if not r.ok}


class Fanout:
    def __init__(self, plan: DeployPlan, run_dir: RunDir, progress: Progress = no_progress,
                 run_deadline_s: float | None = None):
        self.plan = plan
        self.run_dir = run_dir
        self.progress = progress
        self.run_deadline_s = run_deadline_s
        self.control = RunControl()
        self.results: dict[str, BoardResult | None] = {}  # every board's outcome, as sessions end
        self._final: set[str] = set()  # boards whose record the fan-out closed: late saves are dropped
        self._save_lock = threading.Lock()

    def _save(self, result: BoardResult) -> None:
        with self._save_lock:
            if result.name not in self._final:
                self.run_dir.save_board(result)

    def cancel(self, reason: BoardError | None = None) -> None:
        """No new step starts; running agents are killed on their boards."""
        for transport, pidfile in self.control.stop(reason or Cancelled()):
            try:
                transport.kill_group(pidfile)
            except Exception:
                pass  # the board may be gone; its on-board deadline kills the agent anyway

    def _deadline(self, boards: list[Board], workers: int) -> float:
        if self.run_deadline_s is not None:
            return self.run_deadline_s
        per_board = self.plan.lock_wait_s + self.plan.board_deadline_s + 60
        powered = [b.power for b in boards if b.power is not None]
        if powered:  # a board may be power-cycled once and its work tried again
            per_board = 2 * per_board + max(p.off_s + p.boot_s for p in powered)
        return per_board * -(-len(boards) // workers)

    def outcome(self) -> GroupResult:
        """What the boards gave so far (after `run`, even an interrupted one: every board)."""
        return GroupResult({name: r for name, r in self.results.items() if r is not None})

    def run(self, boards: list[Board], max_workers: int | None = None) -> GroupResult:
        self.results = results = {b.name: None for b in boards}
        if not boards:
            return GroupResult({})
        workers = max_workers or min(MAX_WORKERS, len(boards))
        pending: queue.Queue[Board] = queue.Queue()
        for board in boards:
            pending.put(board)
        finished = threading.Condition()

        def worker() -> None:
            while True:
                try:
                    board = pending.get_nowait()
                except queue.Empty:
                    return
                session = BoardSession(board, self.plan, self.control, self._save, self.progress)
                with board_log(self.run_dir.log_file(board.name), board.name):
                    outcome = session.run()
                with finished:
                    if results[board.name] is None:
                        results[board.name] = outcome
                    finished.notify_all()

        for index in range(workers):
            threading.Thread(target=worker, daemon=True, name=f"farm-board-{index}").start()
        all_done = lambda: all(r is not None for r in results.values())  # noqa: E731
        limit_s = self._deadline(boards, workers)
        stopped: BoardError = Stopped(f"the run's deadline passed ({limit_s:.0f} s)", BoardStatus.TIMEOUT)
        try:
            with finished:
                if not finished.wait_for(all_done, timeout=limit_s):
                    self.cancel(stopped)
                    finished.wait_for(all_done, timeout=CANCEL_GRACE_S)
        except KeyboardInterrupt:
            stopped = Cancelled()
            self.cancel(stopped)
            with finished:
                finished.wait_for(all_done, timeout=CANCEL_GRACE_S)
            raise
        finally:
            self._close_unfinished(boards, results, finished, stopped)
        return GroupResult({name: result for name, result in results.items()})

    def _close_unfinished(self, boards: list[Board], results: dict, finished: threading.Condition,
                          stopped: BoardError) -> None:
        """Boards still busy after the grace: recorded now (timeout, or cancelled), and nothing overwrites that."""
        with finished, self._save_lock:
            for board in boards:
                if results[board.name] is None:
                    result = board_result(board)
                    result.status = stopped.status
                    result.error = f"{board.name}: {stopped}; the board did not finish in time to report"
                    result.finished = utc_now()
                    results[board.name] = result
                    self.run_dir.save_board(result)
                    self._final.add(board.name)
