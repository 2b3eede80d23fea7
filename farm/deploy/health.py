"""Health checks (LAVA's idea): a known job on each board; one that fails it is `bad`, out of selection.

The reference job is the shipped digits model in FP32, a few seconds on any
board: it must run to its end, score its known accuracy and keep to its own
history's latency (farm.judge.health judges it; here its earlier figures are
read from the history and its verdict stored). A board that fails is `bad`,
with the reason, in the history (every controller and worker reads it there)
until a health check passes or a person restores it (`farm boards restore`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

from farm import resources
from farm.config.settings import Measurement, RunSettings
from farm.deploy.job import Job
from farm.errors import ConfigError
from farm.judge.health import LEVEL_CHECKS, Verdict, judge
from farm.record.history import History

REFERENCE = Measurement(warmup=2, runs=20)
MAX_AGE_S = 24 * 3600  # a nightly checks first the boards not checked for this long


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
    verdicts = [judge(board, history.health_figures(board.name, LEVEL_CHECKS)) for board in result.boards]
    for verdict in verdicts:
        history.set_health(verdict.board, verdict.state, verdict.reason, result.run_id,
                           p50=verdict.p50 if verdict.healthy else None)
    return verdicts
