"""One board's verdicts, from what the job gathered: the run's judging as a pure function.

The job looks up the history (baselines, earlier runs) and hands the figures in;
this decides the limits, the checks, the percentiles' intervals and what each
variant records of its baseline. The job writes the answer onto the board's
result, which the record side stores. No I/O here, so every rule is testable with
fake inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from farm.config.checklist import ITEMS, Checklist
from farm.config.inventory import Board
from farm.judge.items import judge, limits_for, unavailable
from farm.judge.stats import percentile_intervals
from farm.results import Baseline, Check, ModelResult, VariantResult


@dataclass(frozen=True)
class VariantVerdict:
    """What one variant's judging gives: its checks, and what its result records beside them."""

    checks: list[Check]
    latency_intervals: dict | None = None  # None when there are no samples to bound
    baseline: dict | None = None  # {run_id, pinned, series}: the run its regression item compared with


@dataclass(frozen=True)
class BoardVerdict:
    limits: dict[str, dict]  # the board's item settings, each budget with its source
    variants: dict[str, VariantVerdict] = field(default_factory=dict)


def judge_board(checklist: Checklist, board: Board, measured: dict[str, VariantResult], model: ModelResult,
                baselines: dict[str, Baseline] | None = None, history_problem: str | None = None) -> BoardVerdict:
    """A board's variants measured to their end, judged by the limits the board has.

    `baselines`: each variant's baseline from the history (with its series), None when none was
    looked up; `history_problem`: why the history could not be read, which makes the regression
    item an error saying so rather than a pass or a skip.
    """
    limits = limits_for(checklist, board)
    checks = judge(limits, board.emulated_cpu, measured, model, baselines)
    if history_problem:
        checks = unavailable(checks, "regression", history_problem)
    # The percentiles' intervals at the checklist's confidence; at farm's default where it judges a point.
    confidence = checklist.items.get("latency", {}).get("confidence") or ITEMS["latency"]["confidence"]
    found = {}
    for name, variant_checks in checks.items():
        samples = measured[name].samples_ms
        base = (baselines or {}).get(name)
        found[name] = VariantVerdict(
            variant_checks, percentile_intervals(samples, confidence) if samples else None,
            {"run_id": base.run_id, "pinned": base.pinned, "series": list(base.series)} if base else None)
    return BoardVerdict(limits, found)
