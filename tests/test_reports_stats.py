"""Bootstrap intervals: seeded, percentile, honest about tiny samples."""

import math

import numpy as np
import pytest

from magbench.reports.stats import bootstrap_ci, paired_bootstrap_ci


def test_bootstrap_ci_is_reproducible_for_a_seed_and_brackets_the_mean():
    x = np.random.default_rng(1).normal(5, 1, size=40)
    a = bootstrap_ci(x, seed=3)
    assert a == bootstrap_ci(x, seed=3)
    assert a != bootstrap_ci(x, seed=4)
    mean, low, high = a
    assert mean == pytest.approx(x.mean())
    assert low < mean < high


def test_bootstrap_ci_matches_the_percentile_method():
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    rng = np.random.default_rng(0)
    means = x[rng.integers(0, 5, size=(2000, 5))].mean(axis=1)
    _, low, high = bootstrap_ci(x, n_resamples=2000, seed=0)
    assert (low, high) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))


def test_bootstrap_ci_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    hits = sum(low <= 0.0 <= high for _, low, high in (bootstrap_ci(rng.normal(0, 1, 40), n_resamples=500, seed=i) for i in range(150)))
    assert 0.88 <= hits / 150 <= 0.99


def test_interval_narrows_with_more_samples():
    rng = np.random.default_rng(2)
    _, l1, h1 = bootstrap_ci(rng.normal(0, 1, 10))
    _, l2, h2 = bootstrap_ci(rng.normal(0, 1, 400))
    assert h2 - l2 < (h1 - l1) / 3


def test_missing_values_are_dropped_and_one_value_has_no_interval():
    assert bootstrap_ci([1.0, None, float("nan"), 3.0])[0] == 2.0
    mean, low, high = bootstrap_ci([4.0])
    assert mean == 4.0 and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in bootstrap_ci([None]))


def test_paired_interval_removes_shared_per_sample_difficulty():
    rng = np.random.default_rng(0)
    difficulty = rng.normal(0, 5, 30)
    a = difficulty + rng.normal(0, 0.1, 30)
    b = difficulty + 1.0 + rng.normal(0, 0.1, 30)
    d, low, high = paired_bootstrap_ci(a, b)
    assert d == pytest.approx(1.0, abs=0.1) and 0.8 < low < 1.0 < high < 1.2
    _, ul, uh = bootstrap_ci(b)  # unpaired spread is dominated by the difficulty
    assert uh - ul > 10 * (high - low)


def test_paired_interval_of_a_constant_shift_is_exact():
    assert paired_bootstrap_ci([1.0, 2.0, 3.0], [1.5, 2.5, 3.5]) == pytest.approx((0.5, 0.5, 0.5))
