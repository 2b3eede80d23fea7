"""A health check's verdict (LAVA's idea): the reference ran, scored its known accuracy, and its latency is
where this board's own history has it.

Pure: the board's earlier figures come in as numbers (farm.deploy.health reads them from the history).
The level is robust to noise between processes (30-50 % on a shared machine): the median of the board's
last LEVEL_CHECKS passing checks, and the class's allowance is a wide factor (config.boardclasses).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence

from farm.config.boardclasses import health_allowance
from farm.judge.items import untimed
from farm.results import BoardResult
from farm.statuses import HealthState

MIN_TOP1 = 0.9  # the digits reference scores 0.982 on every CPU seen
LEVEL_CHECKS = 5  # a board's level: the median p50 of its last this-many passing checks
MIN_CHECKS = 3  # fewer earlier passing checks than this: too little history to judge its figures


@dataclass(frozen=True)
class Verdict:
    board: str
    healthy: bool
    reason: str
    p50: float | None = None  # a passing check's reference p50 (ms): the history keeps it for the board's level

    @property
    def state(self) -> HealthState:
        return HealthState.GOOD if self.healthy else HealthState.BAD


def level(earlier: Sequence[float]) -> float:
    """A board's level: the median p50 of its last LEVEL_CHECKS passing checks (`earlier`: newest first)."""
    return statistics.median(earlier[:LEVEL_CHECKS])


def off_level(p50: float, earlier: Sequence[float], allowance: float, allower: str = "its class") -> str | None:
    """Why `p50` is off the level of `earlier` (the board's previous passing checks' p50s, newest first) by more
    than `allowance` (a factor, either way; `allower` names whose it is); None when within it. `earlier` holds
    at least MIN_CHECKS figures."""
    at = level(earlier)
    where = f"this board's own level {at:.4g} ms (median of its last {len(earlier[:LEVEL_CHECKS])} passing checks)"
    if at <= 0 or p50 <= 0:
        return f"digits reference p50 {p50:.4g} ms against {where}: not a latency"
    ratio = p50 / at
    if 1 / allowance <= ratio <= allowance:
        return None
    how = f"{ratio:.3g}x slower" if ratio > 1 else f"{1 / ratio:.3g}x faster (impossibly fast: did it run?)"
    return f"digits reference p50 {p50:.4g} ms is {how} than {where}; {allower} allows {allowance:g}x either way"


def judge(board: BoardResult, earlier: Sequence[float]) -> Verdict:
    """Healthy: the reference ran to its end, scored its known accuracy, and its p50 is within the class's
    allowance of the board's own level (`earlier`: its previous passing checks' p50s, newest first)."""
    if not board.ok:
        return Verdict(board.name, False, f"health check: {board.status}: {board.error}")
    fp32 = board.variants.get("fp32")
    top1 = fp32.top1 if fp32 else None
    if fp32 is None or top1 is None or top1 < MIN_TOP1:
        return Verdict(board.name, False, f"health check: the digits reference scored top-1 {top1} (at least "
                                          f"{MIN_TOP1} on a sound board): wrong figures")
    p50 = (fp32.latency_ms or {}).get("p50")
    if p50 is None:
        return Verdict(board.name, False, "health check: the digits reference reported no latency: wrong figures")
    passed = f"health check passed: digits reference p50 {p50:.3f} ms, top-1 {top1:.3f}"
    emulation = untimed(board.qemu_cpu, fp32)
    if emulation:
        return Verdict(board.name, True, f"{passed}; timing not judged: {emulation}, not silicon timing", p50)
    if len(earlier) < MIN_CHECKS:
        return Verdict(board.name, True, f"{passed}; figures not judged yet: {len(earlier)} earlier passing "
                                         f"check{'s' if len(earlier) != 1 else ''} of this board, {MIN_CHECKS} needed",
                       p50)
    allowance = health_allowance(board.board_class)
    off = off_level(p50, earlier, allowance, f"its class {board.board_class}" if board.board_class
                    else "a board of no class")
    if off:
        flags = (fp32.board_state or {}).get("flags") or []
        state = f" (board state: {', '.join(flags)})" if flags else ""
        return Verdict(board.name, False, f"health check: figures off its own history: {off}{state}")
    return Verdict(board.name, True, f"{passed}; within {allowance:g}x of its own level {level(earlier):.3f} ms", p50)
