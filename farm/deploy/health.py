"""Health checks (LAVA's idea): a known job on each board; one that fails it is `bad`, out of selection.

The reference job is the shipped digits model in FP32, a few seconds on any
board: it must run to its end and score its known accuracy (top-1 at least
MIN_TOP1 on its evaluation set; it scores 0.982 on every CPU seen). A board
that is unreachable, not ready, hangs, or scores below that is `bad`, with the
reason, in the history (every controller and worker reads it there) until a
health check passes or a person restores it (`farm boards restore`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from pathlib import Path

from farm import resources
from farm.config.settings import Measurement, RunSettings
from farm.deploy.job import Job
from farm.errors import ConfigError
from farm.record.history import History
from farm.results import BoardResult
from farm.statuses import HealthState

MIN_TOP1 = 0.9
REFERENCE = Measurement(warmup=2, runs=20)
MAX_AGE_S = 24 * 3600  # a nightly checks first the boards not checked for this long


@dataclass(frozen=True)
class Verdict:
    board: str
    healthy: bool
    reason: str

    @property
    def state(self) -> HealthState:
        return HealthState.GOOD if self.healthy else HealthState.BAD


def judge(board: BoardResult) -> Verdict:
    """Healthy: the reference ran to its end on the board and scored its known accuracy."""
    if not board.ok:
        return Verdict(board.name, False, f"health check: {board.status}: {board.error}")
    fp32 = board.variants.get("fp32")
    top1 = fp32.top1 if fp32 else None
    if top1 is None or top1 < MIN_TOP1:
        return Verdict(board.name, False, f"health check: the digits reference scored top-1 {top1} (at least "
                                          f"{MIN_TOP1} on a sound board): wrong figures")
    assert fp32 is not None  # a top-1 came from it
    p50 = (fp32.latency_ms or {}).get("p50")
    return Verdict(board.name, True, f"health check passed: digits reference p50 {p50:.3f} ms, top-1 {top1:.3f}")


def due(settings: RunSettings, names: list[str]) -> list[str]:
    """Of `names`, the boards not checked within MAX_AGE_S (never checked: due)."""
    if settings.history_url is None:
        return []
    rows = History(settings.history_url).health()
    cutoff = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=MAX_AGE_S)).isoformat()
    return [name for name in names if name not in rows or (rows[name]["checked"] or "") < cutoff]


def check(settings: RunSettings) -> list[Verdict]:
    """Run the reference job on the selected boards (bad ones too) and record each board's health."""
    if settings.history_url is None:
        raise ConfigError("--history none: board health lives in the history; give one")
    # Its run is kept in <out>/health/, not in the history's runs: a reference job is no board's baseline,
    # and <out>/latest stays the last real run.
    reference = replace(settings, model=resources.demo_model(), data=resources.demo_data(), spec=None,
                        variants_dir=None, variants=["fp32"], measurement=REFERENCE, history="none",
                        out=Path(settings.out) / "health",
                        checklist=resources.checklist("dms"), run_id=f"health-{settings.run_id}")
    job = Job(reference, health_check=True)
    result = job.run()
    history = History(settings.history_url)
    verdicts = [judge(board) for board in result.boards]
    for verdict in verdicts:
        history.set_health(verdict.board, verdict.state, verdict.reason, result.run_id)
    return verdicts
