"""Distribution-free percentile bounds: the order statistics that tables give, and the coverage they claim."""

from __future__ import annotations

import numpy as np

from farm.judge.stats import quantile_bounds, runs_needed


def test_the_median_of_100_is_bounded_by_the_40th_and_61st_values_at_95_percent():
    # The classical table (e.g. Conover, Practical Nonparametric Statistics): n = 100, ranks 40 and 61.
    bounds = quantile_bounds(np.arange(1.0, 101.0), 0.5, 0.95)
    assert (bounds["low"], bounds["high"]) == (40.0, 61.0)
    assert bounds["upper"] == 59.0  # one-sided: BinomCDF(58; 100, 0.5) = 0.956 >= 0.95 > BinomCDF(57)


def test_a_p95_upper_bound_needs_59_runs_and_a_p99_one_299():
    assert runs_needed(0.95, 0.95) == 59 and runs_needed(0.99, 0.95) == 299 and runs_needed(0.5, 0.95) == 5
    assert quantile_bounds(np.arange(59.0), 0.95, 0.95)["upper"] == 58.0  # the largest of 59
    assert quantile_bounds(np.arange(58.0), 0.95, 0.95)["upper"] is None


def test_the_upper_bound_covers_the_true_p95_at_least_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    true_p95 = -np.log(0.05)  # Exp(1): skewed like latency
    trials = 2000
    covered = sum(quantile_bounds(rng.exponential(size=200), 0.95, 0.95)["upper"] >= true_p95 for _ in range(trials))
    two_sided = sum(b["low"] <= true_p95 <= b["high"]
                    for b in (quantile_bounds(rng.exponential(size=200), 0.95, 0.95) for _ in range(trials)))
    # Order-statistic bounds are conservative: coverage at least the confidence, less sampling error (3 sigma).
    assert covered / trials >= 0.95 - 3 * np.sqrt(0.95 * 0.05 / trials)
    assert two_sided / trials >= 0.95 - 3 * np.sqrt(0.95 * 0.05 / trials)
