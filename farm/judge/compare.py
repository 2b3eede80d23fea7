"""Two runs side by side: board x variant x figure, each change with its verdict.

The rules are the regression item's own (threshold and significance for
latency, the checklist's memory rule), so `farm compare` and the nightly
never disagree.
"""

from __future__ import annotations

from farm.config.checklist import ITEMS, parse_rule
from farm.judge.items import memory_change
from farm.judge.stats import latency_change
from farm.results import RunResult


def compare_runs(before: RunResult, after: RunResult, rule: str = ITEMS["regression"]["rule"],
                 alpha: float = ITEMS["regression"]["alpha"],
                 max_memory_increase_pct: float = ITEMS["regression"]["max_memory_increase_pct"]) -> list[dict]:
    figures = dict(parse_rule(rule))
    figures.setdefault("p50", next(iter(figures.values())))
    rows = []
    for board in after.boards:
        old_board = before.board(board.name)
        for name, variant in board.variants.items():
            old = old_board.variants.get(name) if old_board else None
            if not old or not old.samples_ms or not variant.samples_ms:
                continue
            key = {"board": board.name, "variant": name}
            for figure, threshold in figures.items():
                rows.append({**key, "unit": "ms",
                             **latency_change(old.samples_ms, variant.samples_ms, figure, threshold, alpha)})
            memory = memory_change(old.peak_rss_mb, variant.peak_rss_mb, max_memory_increase_pct)
            if memory:
                rows.append({**key, **memory})
    return rows
