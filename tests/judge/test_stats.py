"""The latency figures the judge reads: summaries, percentile names, run counts, significant changes, spread."""

from __future__ import annotations

import math

import numpy as np
import pytest

from farm.judge import stats
from farm.judge.stats import latency_change, latency_summary, percentile_of, quantile_bounds, round_spread, runs_needed

STEADY = [10.0, 11.0, 12.0, 10.0, 11.0, 12.0, 10.0, 11.0] * 3


def test_a_summary_is_that_of_the_raw_samples():
    summary = latency_summary([1.0, 2.0, 3.0, 4.0])
    assert (summary["n"], summary["mean"], summary["min"], summary["max"], summary["p50"]) == (4, 2.5, 1.0, 4.0, 2.5)
    assert math.isclose(summary["std"], math.sqrt(5 / 3))  # the sample standard deviation (n - 1)
    assert math.isclose(summary["cv"], summary["std"] / 2.5)
    assert math.isclose(summary["p90"], 3.7) and math.isclose(summary["p99"], 3.97)


def test_one_sample_has_no_spread_and_none_is_an_error():
    assert latency_summary([5.0])["std"] == 0.0
    with pytest.raises(ValueError, match="no latency samples"):
        latency_summary([])


@pytest.mark.parametrize(("name", "q"), [("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("p9", 0.09), ("mean", None),
                                         ("max", None), ("pxx", None), ("peak_rss_mb", None)])
def test_a_figures_name_says_which_percentile_it_is(name, q):
    assert percentile_of(name) == q


@pytest.mark.parametrize(("q", "confidence", "runs"), [(0.95, 0.95, 59), (0.99, 0.95, 299), (0.5, 0.95, 5),
                                                       (0.9, 0.95, 29), (0.99, 0.99, 459), (0.5, 0.99, 7),
                                                       (0.95, 0.9, 45)])
def test_the_runs_a_percentile_bound_needs_are_the_fewest_whose_largest_bounds_it(q, confidence, runs):
    assert runs_needed(q, confidence) == runs
    assert 1 - q ** runs >= confidence > 1 - q ** (runs - 1)


@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99])
def test_the_upper_bound_is_the_largest_sample_at_the_runs_needed_and_none_below(q):
    n = runs_needed(q, 0.95)
    assert quantile_bounds(np.arange(float(n)), q, 0.95)["upper"] == n - 1
    assert quantile_bounds(np.arange(float(n - 1)), q, 0.95)["upper"] is None


def test_every_reported_percentile_has_its_interval_around_its_value():
    samples = np.arange(1.0, 501.0)
    intervals = stats.percentile_intervals(samples)
    assert set(intervals) == {"p50", "p90", "p95", "p99"}
    for name, bounds in intervals.items():
        value = np.percentile(samples, int(name[1:]))
        assert bounds["low"] <= value <= bounds["high"] and bounds["n"] == 500 and "q" not in bounds


@pytest.mark.parametrize(("base", "new", "verdict"), [(STEADY, [x * 1.5 for x in STEADY], "regression"),
                                                      (STEADY, [x * 0.5 for x in STEADY], "improvement"),
                                                      (STEADY, [x * 1.05 for x in STEADY], "same"),
                                                      ([10.0, 11.0, 12.0], [15.0, 16.0, 17.0], "same")])
def test_a_change_counts_only_past_the_threshold_and_significant(base, new, verdict):
    """The last: 45 % slower, but three runs against three cannot show it at alpha 0.01 (p = 0.05)."""
    change = latency_change(base, new, "p50", 10.0, 0.01)
    assert change["verdict"] == verdict
    assert math.isclose(change["change_pct"], (np.percentile(new, 50) - 11.0) / 11.0 * 100)


@pytest.mark.parametrize(("rounds", "spread"), [(None, None), ([], None), ([{"p50": 1.0}], None),
                                                ([{"p50": 1.0}, {"p50": None}], None),
                                                ([{"p50": 1.0}, {"p50": 1.2}, {"p50": 1.1}], 0.2 / 1.1 * 100),
                                                ([{"p50": 2.0}, {"p50": 2.0}], 0.0)])
def test_the_spread_between_rounds_is_range_over_median(rounds, spread):
    found = round_spread(rounds, "p50")
    assert found == spread if spread is None else math.isclose(found, spread, abs_tol=1e-12)
