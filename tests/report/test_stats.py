"""bench/report/stats.py on samples with known answers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import norm

from bench.report.stats import (
    bootstrap_mean,
    minimum_detectable_difference,
    paired_bootstrap,
    paired_comparison,
    sign_flip_p,
    smallest_p,
)


def brute_force_p(x: np.ndarray) -> float:
    """The definition: share of all 2^n sign patterns whose mean is >= the observed mean."""
    means = [np.mean(np.array(signs) * x) for signs in itertools.product((1, -1), repeat=len(x))]
    return float(np.mean(np.array(means) >= x.mean() - 1e-12))


@pytest.mark.parametrize("n", [1, 4, 6, 10])
def test_a_constant_positive_difference_has_the_exact_minimum_p(n):
    assert sign_flip_p(np.full(n, 0.7)) == pytest.approx(0.5**n)
    assert smallest_p(n) == 0.5**n
    assert sign_flip_p(np.full(n, -0.7), "less") == pytest.approx(0.5**n)
    assert sign_flip_p(np.full(n, -0.7)) == pytest.approx(1.0)  # wrong direction


def test_exact_p_values_match_the_enumeration():
    for x in (np.array([3.0, -1.0, 2.0, 1.0]), np.array([0.5, 0.2, -0.1, 0.4, -0.3, 0.25, 0.05])):
        assert sign_flip_p(x) == pytest.approx(brute_force_p(x))
    assert sign_flip_p(np.array([3.0, -1.0, 2.0, 1.0])) == pytest.approx(3 / 16)  # 7, 5 and 5 reach 5 of 16


def test_zero_mean_symmetric_sample_has_p_near_one_half():
    x = np.array([1.1, 2.3, 0.7, 3.9, 5.2, 0.4])
    p = sign_flip_p(np.concatenate((x, -x)))
    assert 0.5 <= p <= 0.56  # 1/2 plus half the (few) sign patterns that also sum to exactly 0
    assert sign_flip_p(np.zeros(5)) == 1.0  # no difference at all: never significant
    assert np.isnan(sign_flip_p(np.array([])))
    assert sign_flip_p(np.array([1.0, np.nan, 1.0])) == pytest.approx(0.25)  # NaN pairs are dropped


def test_monte_carlo_p_for_large_n_is_close_to_the_normal_approximation_and_deterministic():
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 1.0, size=40)  # 2^40 patterns: Monte Carlo
    p = sign_flip_p(x, permutations=20_000, seed=1)
    z = x.mean() / (np.sqrt(np.mean(x**2)) / np.sqrt(len(x)))  # the permutation distribution's sd
    assert p == pytest.approx(1 - norm.cdf(z), abs=0.01)
    assert p == sign_flip_p(x, permutations=20_000, seed=1) and smallest_p(40, 20_000) == 1 / 20_001
    assert sign_flip_p(np.full(40, 1.0), permutations=999) == pytest.approx(1 / 1000)


def test_paired_bootstrap_interval_contains_the_mean_is_deterministic_and_shrinks():
    rng = np.random.default_rng(7)
    x = rng.normal(0.5, 0.1, size=6)
    mean, lo, hi = paired_bootstrap(x, 1000, 0)
    assert mean == pytest.approx(x.mean()) and lo < mean < hi
    assert (mean, lo, hi) == paired_bootstrap(x, 1000, 0) and (lo, hi) != paired_bootstrap(x, 1000, 1)[1:]
    assert paired_bootstrap(x, 1000, [0, 5]) == paired_bootstrap(x, 1000, np.random.default_rng([0, 5]))
    _, nlo, nhi = paired_bootstrap(np.tile(x, 10), 1000, 0)  # same spread, 10x the pairs
    assert nhi - nlo < 0.5 * (hi - lo) and nlo < x.mean() < nhi
    assert paired_bootstrap(np.full(5, -0.05), 200, 0) == pytest.approx((-0.05, -0.05, -0.05))
    assert bootstrap_mean([3.0], 100, 0) == (3.0, 3.0, 3.0)
    assert all(np.isnan(bootstrap_mean([], 100, 0)))
    _, lo90, hi90 = bootstrap_mean(x, 1000, 0, level=0.9)
    assert lo <= lo90 and hi90 <= hi  # a lower level gives a narrower interval from the same resamples


def test_minimum_detectable_difference_known_values():
    # one-sided alpha 0.05, power 0.8: (1.6449 + 0.8416) sd / sqrt(n)
    assert minimum_detectable_difference(1.0, 100, 0.05, 0.8) == pytest.approx(0.24865, abs=1e-4)
    assert minimum_detectable_difference(2.0, 25, 0.05, 0.8) == pytest.approx(2 * 2.4865 / 5, abs=1e-4)
    assert minimum_detectable_difference(1.0, 100, 0.05, 0.8, two_sided=True) == pytest.approx(0.28016, abs=1e-4)
    assert minimum_detectable_difference(1.0, 0, 0.05, 0.8) == float("inf")
    assert minimum_detectable_difference(1.0, 4, 0.01) > minimum_detectable_difference(1.0, 16, 0.01)


def test_paired_comparison_bundles_the_statistics():
    diff = np.array([1.0, 2.0, 1.5, 0.5, 1.2, 0.8, 1.1, 0.9])
    result = paired_comparison(diff, 500, 3, alpha=0.01)
    assert result.n == 8 and result.mean == pytest.approx(diff.mean()) and result.lo < result.mean < result.hi
    assert result.p == pytest.approx(1 / 256) and result.smallest_p == 1 / 256
    assert result.sd == pytest.approx(diff.std(ddof=1))
    assert result.mdd == pytest.approx(minimum_detectable_difference(diff.std(ddof=1), 8, 0.01))
    empty = paired_comparison([], 500, 3, alpha=0.01)
    assert empty.n == 0 and np.isnan(empty.p) and empty.smallest_p == 1.0 and empty.mdd == float("inf")
