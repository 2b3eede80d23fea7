"""Change points in a performance history: where a board's figure moved and stayed moved.

One run against one baseline mistakes noise between processes for change (an
unchanged model's p95 moved 33 % between runs here). Over the history the noise
shows itself: ruptures' binary segmentation (cost l2: a shift in mean) proposes
where the series' level changes, on log figures so a change is relative; each
proposal is then tested the way E-Divisive means tests it, by permutation (does
splitting there explain more than splitting a shuffled series would?), and kept
only when significant and at least `min_change_pct` large. Pure: numbers in,
changes out.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import comb
from typing import Sequence

import numpy as np

PERMUTATIONS = 999
EXACT_SPLITS = 100_000


@dataclass(frozen=True)
class Change:
    index: int           # the first point of the new level
    before: float        # median of the segment before (the figure's unit)
    after: float         # median of the segment from `index`
    change_pct: float    # (after / before - 1) * 100
    p_value: float       # permutation test of the split

    def to_json(self) -> dict:
        return {"index": self.index, "before": self.before, "after": self.after,
                "change_pct": round(self.change_pct, 2), "p_value": round(self.p_value, 5)}


def _best_splits(rows: np.ndarray) -> np.ndarray:
    """For each row, the largest l2 gain of splitting it in two: k(n-k)/n * (mean left - mean right)^2."""
    n = rows.shape[-1]
    k = np.arange(1, n)
    left = np.cumsum(rows, axis=-1)[..., :-1]
    total = rows.sum(axis=-1, keepdims=True)
    gain = k * (n - k) / n * (left / k - (total - left) / (n - k)) ** 2
    return gain.max(axis=-1)


def _gain(before: np.ndarray, after: np.ndarray) -> float:
    """The l2 gain of splitting a series into `before` and `after`: k(n-k)/n * (mean left - mean right)^2."""
    return before.size * after.size / (before.size + after.size) * (after.mean() - before.mean()) ** 2


def _p_value(segment: np.ndarray, at: int, rng: np.random.Generator) -> float:
    """Share of shuffles whose best split is as strong as this one (E-Divisive's significance test)."""
    observed = _gain(segment[:at], segment[at:])
    shuffled = rng.permuted(np.tile(segment, (PERMUTATIONS, 1)), axis=1)
    stronger = int(np.sum(_best_splits(shuffled) >= observed - 1e-12))
    return (stronger + 1) / (PERMUTATIONS + 1)


def find_changes(values: Sequence[float], *, alpha: float = 0.01, min_change_pct: float = 5.0,
                 min_size: int = 2) -> list[Change]:
    """Significant level shifts in a series (oldest first), each with where it starts and how large it is."""
    import ruptures

    series = np.asarray([v for v in values], dtype=float)
    if series.size < 2 * min_size or np.any(series <= 0):
        return []
    logs = np.log(series)
    noise = np.median(np.abs(np.diff(logs))) / 0.6745 / np.sqrt(2) if series.size > 2 else 0.0
    penalty = 2 * np.log(series.size) * max(noise, 1e-6) ** 2 * 2
    breaks = ruptures.Binseg(model="l2", min_size=min_size, jump=1).fit(logs.reshape(-1, 1)).predict(pen=penalty)
    edges = [0, *breaks]  # the last break is the series' end
    rng = np.random.default_rng(0)  # the same history gives the same answer
    found = []
    for start, at, end in zip(edges, edges[1:], edges[2:]):
        before, after = float(np.median(series[start:at])), float(np.median(series[at:end]))
        change_pct = (after / before - 1) * 100
        if abs(change_pct) < min_change_pct:
            continue
        p_value = _p_value(logs[start:end], at - start, rng)
        if p_value <= alpha:
            found.append(Change(at, before, after, change_pct, p_value))
    return found


def _p_slower(before: np.ndarray, after: np.ndarray) -> float:
    """One-sided permutation p-value of `after` being slower: exact over every split while there are
    at most EXACT_SPLITS of them (two runs after twenty: 231), else sampled."""
    pool, m = np.concatenate([before, after]), after.size
    observed = after.sum() - 1e-12  # the total is fixed: a larger sum after is a larger difference of means
    if comb(pool.size, m) <= EXACT_SPLITS:
        picks = np.fromiter(combinations(range(pool.size), m), dtype=np.dtype((int, m)))
        return float(np.mean(pool[picks].sum(axis=1) >= observed))
    shuffled = np.random.default_rng(0).permuted(np.tile(pool, (PERMUTATIONS, 1)), axis=1)
    return (int(np.sum(shuffled[:, -m:].sum(axis=1) >= observed)) + 1) / (PERMUTATIONS + 1)


def recent_change(values: Sequence[float], since: int, *, alpha: float = 0.05, min_change_pct: float = 10.0,
                  window: int = 20, min_before: int = 4) -> Change | None:
    """A slowdown that began at or after index `since` (the baseline) and lasts to the newest point.

    A start s is a candidate at or after `since` (at most `window` runs back), with at least two
    points from it, when the run just before it is still nearer the old level than the new one
    (the level began at s, not earlier: a level that began before the baseline is the baseline's
    own). Of the candidates, the split with the largest l2 gain against up to `window` runs before it
    is where the level moved, as a change-point method places it. It counts when the figure is at
    least `min_change_pct` higher (medians) and the split is significant by an exact-size
    permutation test of the mean of the logs (one-sided). With two points after the change and 20
    before, the smallest p-value is 1 / C(22, 2) = 0.004 (exact), so a change shows after two runs;
    one noisy run never fails a night, and a regressed board (whose baseline stays put) keeps
    failing. Judging each start against the runs just before it, not a fixed baseline, keeps a slow
    drift of the machine from hiding a step or passing for one.
    """
    series = np.asarray([v for v in values], dtype=float)
    n = series.size
    first = max(min_before, since, n - window)
    if np.any(series <= 0) or first > n - 2:
        return None
    logs = np.log(series)

    def split(at: int) -> tuple[np.ndarray, np.ndarray]:
        return logs[max(0, at - window):at], logs[at:]

    def gain(at: int) -> float:  # slowdowns only
        before, after = split(at)
        return _gain(before, after) if after.mean() > before.mean() else 0.0

    def began_here(at: int) -> bool:
        before, after = split(at)
        return bool(logs[at - 1] < (np.median(before) + np.median(after)) / 2)

    starts = [at for at in range(first, n - 1) if began_here(at) and gain(at) > 0]
    if not starts:
        return None
    start = max(starts, key=gain)
    before, after = split(start)
    change_pct = (np.exp(np.median(after) - np.median(before)) - 1) * 100
    if change_pct < min_change_pct:
        return None
    p_value = _p_slower(before, after)
    if p_value > alpha:
        return None
    return Change(int(start), float(np.exp(np.median(before))), float(np.exp(np.median(after))),
                  float(change_pct), p_value)


def series_changes(rows: Sequence[dict], figure: str, *, alpha: float = 0.01,
                   min_change_pct: float = 5.0) -> list[dict]:
    """The change points of one figure over a history series (History.series rows, oldest first).

    Each names the run where the new level began, the medians before and after, and the p-value;
    runs without the figure are left out of the series, not counted as zero.
    """
    measured = [row for row in rows if row.get(figure) is not None]
    return [{"figure": figure, "run_id": measured[c.index]["run_id"], "started": measured[c.index]["started"],
             **c.to_json()}
            for c in find_changes([row[figure] for row in measured], alpha=alpha, min_change_pct=min_change_pct)]
