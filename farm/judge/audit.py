"""Verdicts re-derived, never trusted: what a sign-off recomputes and compares.

A stored verdict is a claim. Here every one is judged again from the raw
figures (latency samples, accuracy figures, peak memory, opset) and the limits,
with the same functions the run used (farm.judge.items), and each copy of the
run (results.json, junit.xml, boards/*.json, the signed record) is compared
with that recomputation. Every disagreement is named: where, board, variant,
item, what was stored and what the figures give. Pure: documents in, lines out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from farm.judge.items import judge
from farm.judge.stats import latency_summary
from farm.results import Baseline, BoardResult, BoardStatus, Check, CheckStatus, RunResult, VariantResult

SUMMARY_FIGURES = ("n", "mean", "min", "max", "p50", "p90", "p95", "p99")
RAW_FIGURES = ("samples_ms", "peak_rss_mb", "accuracy", "opset", "sha256", "latency_ms", "status", "offload",
               "simulated")


@dataclass(frozen=True)
class Disagreement:
    """One place where a stored figure or verdict is not what the raw figures give."""

    where: str            # results.json, junit.xml, boards/t1.json, signoff.json, the inventory...
    board: str
    variant: str | None
    item: str             # a checklist item, or a figure (latency_ms.p95, samples_ms, limits.latency.max_ms)
    stored: Any
    recomputed: Any
    labels: tuple[str, str] = ("stored", "recomputed")

    def __str__(self) -> str:
        who = f"{self.board} {self.variant}" if self.variant else self.board
        return f"{self.where}: {who} {self.item}: {self.labels[0]} {self.stored}, {self.labels[1]} {self.recomputed}"


def _close(a: Any, b: Any, rel: float = 2e-3, absolute: float = 1e-3) -> bool:
    """Equal, or equal numbers up to rounding: a check's value is rounded (3-4 decimals) from figures the
    agent rounded (6 decimals), so a ratio near a rounding edge may move in its last digit."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=rel, abs_tol=absolute)
    return a == b


def _same_figure(a: Any, b: Any) -> bool:
    """A summary figure against its recomputation: only the agent's 6-decimal rounding apart."""
    return _close(a, b, rel=1e-6, absolute=2e-6)


def summary_disagreements(board: str, variant: VariantResult, where: str) -> list[Disagreement]:
    """The latency summary (and each round's) against the samples it claims to summarize."""
    found = []
    if not variant.samples_ms:
        if variant.latency_ms:
            found.append(Disagreement(where, board, variant.name, "samples_ms", "absent",
                                      "a latency summary cannot be checked without its samples"))
        return found
    expected = latency_summary(variant.samples_ms)
    for key in SUMMARY_FIGURES:
        stored = (variant.latency_ms or {}).get(key)
        if not _same_figure(stored, expected[key]):
            found.append(Disagreement(where, board, variant.name, f"latency_ms.{key}", stored,
                                      f"{expected[key]:.6g} from the {len(variant.samples_ms)} samples"))
    start = 0
    for index, stored in enumerate(variant.rounds):  # rounds: consecutive runs of samples, in order
        chunk = variant.samples_ms[start:start + int(stored.get("n") or 0)]
        start += len(chunk)
        own = latency_summary(chunk) if chunk else {}
        for key in ("p50", "p95"):
            if not _same_figure(stored.get(key), own.get(key)):
                found.append(Disagreement(where, board, variant.name, f"rounds[{index}].{key}", stored.get(key),
                                          own.get(key)))
    return found


def recompute(result: RunResult, limits: dict[str, dict], emulated: dict[str, str | None],
              baselines: dict[tuple[str, str], Baseline]) -> dict[str, dict[str, list[Check]]]:
    """Board -> variant -> checks, judged again from the raw figures and the given limits.

    `limits` and `emulated` per board come from the checklist and inventory (at signing) or the
    signed record (at verify), never from the stored verdicts; latency summaries are recomputed
    from the samples first, so an edited percentile does not reach a verdict.
    """
    verdicts = {}
    for board in result.boards:
        if not board.usable or board.name not in limits:
            continue
        measured = {name: _from_samples(v) for name, v in board.variants.items() if v.status == BoardStatus.OK}
        board_baselines = {v: b for (name, v), b in baselines.items() if name == board.name}
        verdicts[board.name] = judge(limits[board.name], emulated.get(board.name), measured, result.model,
                                     board_baselines)
    return verdicts


def _from_samples(variant: VariantResult) -> VariantResult:
    if not variant.samples_ms:
        return replace(variant, latency_ms=None)
    rounds = (variant.latency_ms or {}).get("rounds")
    summary = latency_summary(variant.samples_ms)
    return replace(variant, latency_ms={**summary, **({"rounds": rounds} if rounds else {})})


def shown(check: Check | None) -> str:
    if check is None:
        return "no verdict"
    return f"{check.status} {check.versus}" if check.value is not None else f"{check.status}"


def verdict_disagreements(result: RunResult, verdicts: dict[str, dict[str, list[Check]]],
                          where: str) -> list[Disagreement]:
    """Each stored check against its recomputation: status and value, item by item."""
    found = []
    for board in result.boards:
        for variant_name, checks in verdicts.get(board.name, {}).items():
            stored = {c.item: c for c in board.variants[variant_name].checks}
            for check in checks:
                mine = stored.pop(check.item, None)
                if mine is None or mine.status != check.status or not _close(mine.value, check.value) \
                        or mine.limit != check.limit:
                    found.append(Disagreement(where, board.name, variant_name, check.item, shown(mine),
                                              shown(check)))
            for extra in stored.values():
                found.append(Disagreement(where, board.name, variant_name, extra.item, shown(extra),
                                          "not an item of the checklist"))
    return found


def status_disagreements(statuses: dict[tuple[str, str, str], CheckStatus], verdicts: dict[str, dict[str, list[Check]]],
                         where: str) -> list[Disagreement]:
    """Outcomes kept elsewhere (the JUnit file: board, variant, item -> pass/fail/error/skip) against the
    recomputation; a verdict with no outcome there is a disagreement too."""
    found = []
    seen = set()
    for board, variants in verdicts.items():
        for variant, checks in variants.items():
            for check in checks:
                key = (board, variant, check.item)
                seen.add(key)
                outcome = statuses.get(key)
                if outcome != check.status:
                    found.append(Disagreement(where, board, variant, check.item, outcome or "no test case",
                                              shown(check)))
    for (board, variant, item), outcome in statuses.items():
        if (board, variant, item) not in seen and outcome in (CheckStatus.PASS, CheckStatus.FAIL):
            found.append(Disagreement(where, board, variant, item, outcome, "nothing measured to judge"))
    return found


def board_disagreements(kept: BoardResult, other: BoardResult, where: str) -> list[Disagreement]:
    """Two copies of one board's run (results.json's and boards/<name>.json): status and raw figures."""
    found = []
    if kept.status != other.status:
        found.append(Disagreement(where, kept.name, None, "status", other.status.value, kept.status.value))
    for name in sorted(set(kept.variants) | set(other.variants)):
        mine, theirs = kept.variants.get(name), other.variants.get(name)
        if mine is None or theirs is None:
            found.append(Disagreement(where, kept.name, name, "variant", "present" if theirs else "absent",
                                      "present" if mine else "absent"))
            continue
        for figure in RAW_FIGURES:
            if getattr(mine, figure) != getattr(theirs, figure):
                found.append(Disagreement(where, kept.name, name, figure, _brief(getattr(theirs, figure)),
                                          _brief(getattr(mine, figure))))
    return found


def limit_disagreements(board: str, stored: dict[str, dict], expected: dict[str, dict],
                        where: str) -> list[Disagreement]:
    """The limits a board was judged by against what the checklist and inventory say now."""
    found = []
    for item in sorted(set(stored) | set(expected)):
        for key in sorted(set(stored.get(item, {})) | set(expected.get(item, {}))):
            mine, theirs = stored.get(item, {}).get(key), expected.get(item, {}).get(key)
            if mine != theirs:
                found.append(Disagreement(where, board, None, f"limits.{item}.{key}", mine, theirs))
    return found


def _brief(value: Any) -> str:
    """A figure short enough for one line: a list of samples by its length and first values."""
    if isinstance(value, list) and len(value) > 4:
        return f"[{', '.join(map(str, value[:3]))}, ... {len(value)} values]"
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."
