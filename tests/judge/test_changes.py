"""Change points in a nightly series: found where the level moved, not in noise, and soon enough."""

from __future__ import annotations

import numpy as np
import pytest

from farm.judge.changes import find_changes, recent_change, series_changes


def nights(levels: list[tuple[int, float]], noise: float = 0.05, seed: int = 1) -> list[float]:
    """`count` nights at each level, with multiplicative noise of `noise` (log-normal sigma)."""
    rng = np.random.default_rng(seed)
    values = np.concatenate([np.full(count, level) for count, level in levels])
    return list(values * np.exp(rng.normal(0.0, noise, values.size)))


@pytest.mark.parametrize("seed", range(5))
def test_a_25_percent_step_is_found_where_it_began(seed):
    found = find_changes(nights([(10, 1.0), (10, 1.25)], seed=seed))
    assert len(found) == 1
    change = found[0]
    # Placed at the step, or beside it when the night before drew high noise (5 % here).
    assert abs(change.index - 10) <= 1 and 15 < change.change_pct < 35 and change.p_value <= 0.01
    assert change.before == pytest.approx(1.0, rel=0.08) and change.after == pytest.approx(1.25, rel=0.08)


@pytest.mark.parametrize("seed", range(5))
def test_noise_alone_is_no_change(seed):
    assert find_changes(nights([(40, 1.0)], seed=seed)) == []


def test_a_step_back_is_a_change_of_its_own():
    found = find_changes(nights([(10, 1.0), (10, 1.5), (10, 1.0)], seed=3))
    assert len(found) == 2 and abs(found[0].index - 10) <= 1 and abs(found[1].index - 20) <= 1
    assert found[0].change_pct > 0 > found[1].change_pct


def test_one_slow_night_never_fails_but_two_do():
    steady = nights([(12, 1.0)], seed=2)
    assert recent_change([*steady, 1.3], since=0) is None
    change = recent_change([*steady, 1.3, 1.28], since=0)
    assert change is not None and change.index == 12 and change.change_pct > 20


def test_a_change_that_began_before_the_baseline_is_not_todays():
    values = [*nights([(12, 1.0)], seed=4), 1.3, 1.3, 1.31, 1.29]
    assert recent_change(values, since=0) is not None
    # The baseline is the run after the step: what changed before it is its level now.
    assert recent_change(values, since=13) is None


def test_a_faster_board_is_not_a_regression():
    assert recent_change([*nights([(12, 1.0)], seed=5), 0.7, 0.7], since=0) is None


def test_series_changes_name_the_run_where_the_level_moved_and_skip_missing_figures():
    values = nights([(8, 2.0), (8, 2.6)], seed=6)
    rows = [{"run_id": f"r{i:02d}", "started": f"2026-01-{i + 1:02d}T02:00:00", "p95": v} for i, v in enumerate(values)]
    rows.insert(3, {"run_id": "unmeasured", "started": "2026-01-03T12:00:00", "p95": None})
    (change,) = series_changes(rows, "p95")
    assert (change["figure"], change["run_id"], change["started"]) == ("p95", "r08", "2026-01-09T02:00:00")
    assert change["change_pct"] > 20


def test_a_regression_keeps_failing_while_its_baseline_stays_put():
    values = [*nights([(12, 1.0)], seed=7), *nights([(8, 1.3)], seed=8)]
    assert all(recent_change(values[:n], since=11) is not None for n in range(14, 21))
