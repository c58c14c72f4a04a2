"""Statistics of the reports: intervals and paired comparisons over videos (prompt x seed).

The unit is the video: every function takes one value per video (or one per-video
difference, method - other on the same prompt and seed), never frame-weighted values.

- ``bootstrap_mean(values, B, seed)``: mean and percentile bootstrap interval of the mean
  (scipy.stats.bootstrap).
- ``paired_bootstrap(diff, B, seed)``: the same for paired differences.
- ``sign_flip_p(diff, ...)``: paired permutation test of the mean difference (signs of the
  differences flipped at random under H0: the pairs are exchangeable); exact over all 2^n
  sign patterns when 2^n <= ``permutations``, Monte Carlo otherwise (scipy.stats.permutation_test).
- ``minimum_detectable_difference(sd, n, alpha, power)``: the smallest paired mean
  difference a one-sided test at ``alpha`` detects with probability ``power`` (normal
  approximation).
- ``paired_differences(mine, other)``: the per-video differences mine - other of two series
  indexed by the video (the pairing every report uses).
- ``paired_comparison(diff, B, seed, alpha)``: all of the above for one set of paired
  differences (``Paired``); the leaderboard's paired cells and the validity check use it.

A seed is anything ``numpy.random.default_rng`` accepts (an int, a sequence of ints, or a
Generator, used as is), so a caller can give each table cell its own stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

Seed = int | Sequence[int] | np.random.Generator
ALTERNATIVES = ("greater", "less", "two-sided")
PERMUTATIONS = 100_000  # Monte Carlo sign patterns when 2^n is larger (exact for n <= 16)


def _finite(values: object) -> np.ndarray:
    """1-D float array without NaN (a metric undefined for a video has no value)."""
    x = np.asarray(values, float).ravel()
    return x[~np.isnan(x)]


def bootstrap_mean(values: object, resamples: int, seed: Seed, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) of ``values`` [n]: the percentile bootstrap interval at ``level`` from
    ``resamples`` resamples of the n values with replacement (``scipy.stats.bootstrap``,
    method "percentile"); (NaN, NaN, NaN) when n = 0; the value itself three times when n = 1
    (one value has no spread to resample)."""
    x = _finite(values)
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    if len(x) == 1 or np.all(x == x[0]):
        return float(x[0]), float(x[0]), float(x[0])
    result = sps.bootstrap((x,), np.mean, n_resamples=resamples, confidence_level=level, method="percentile",
                           vectorized=True, rng=np.random.default_rng(seed))
    lo, hi = result.confidence_interval
    return float(x.mean()), float(lo), float(hi)


def paired_bootstrap(diff: object, resamples: int, seed: Seed, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) of paired differences ``diff`` [n] (one per matched video pair): the
    mean difference and its percentile bootstrap interval over the n pairs."""
    return bootstrap_mean(diff, resamples, seed, level)


def _rounded_mean(scale: float):
    """The mean in units of ``scale``, rounded to 1e-9: a monotone statistic on which sign
    patterns with the same mean up to float rounding (e.g. 0 for a symmetric sample) tie."""
    def statistic(x: np.ndarray, axis: int) -> np.ndarray:
        return np.round(np.mean(x, axis=axis) / scale, 9)
    return statistic


def sign_flip_p(diff: object, alternative: str = "greater", permutations: int = PERMUTATIONS,
                seed: Seed = 0) -> float:
    """p-value of the paired sign-flip permutation test of mean(diff) (NaN when n = 0).

    ``alternative``: "greater" (H1: mean > 0), "less" or "two-sided". Exact over all 2^n sign
    patterns when 2^n <= ``permutations`` (then the smallest one-sided p is 1 / 2^n, reached
    when every difference is positive); otherwise ``permutations`` random patterns, p =
    (k + 1) / (permutations + 1). All-zero differences give p = 1. Means that agree to 1e-9
    of the largest |difference| count as ties (so float rounding does not split them).
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative={alternative!r}; allowed: {', '.join(ALTERNATIVES)}")
    x = _finite(diff)
    if len(x) == 0:
        return float("nan")
    if len(x) == 1:  # two sign patterns, x and -x (scipy needs n >= 2)
        greater, less = (0.5 if x[0] > 0 else 1.0), (0.5 if x[0] < 0 else 1.0)
        return {"greater": greater, "less": less, "two-sided": 1.0}[alternative]
    scale = float(np.abs(x).max()) or 1.0
    result = sps.permutation_test((x,), _rounded_mean(scale), vectorized=True, permutation_type="samples",
                                  alternative=alternative, n_resamples=permutations, rng=np.random.default_rng(seed))
    return float(min(1.0, result.pvalue))


def smallest_p(n: int, permutations: int = PERMUTATIONS) -> float:
    """The smallest one-sided p ``sign_flip_p`` can return for n pairs: 1 / 2^n when exact,
    1 / (permutations + 1) otherwise; 1 when n = 0."""
    if n <= 0:
        return 1.0
    return 1.0 / 2**n if 2**n <= permutations else 1.0 / (permutations + 1)


def minimum_detectable_difference(diff_sd: float, n: int, alpha: float = 0.05, power: float = 0.8,
                                  two_sided: bool = False) -> float:
    """Smallest true mean paired difference detected with probability ``power`` by a test at
    level ``alpha`` on n pairs whose differences have standard deviation ``diff_sd``.

    Normal approximation (a z-test on the mean difference): MDD = (z_{1-a} + z_{power}) *
    sd / sqrt(n), with a = alpha (one-sided) or alpha / 2 (two-sided). It ignores the
    t-distribution's heavier tails and the discreteness of the permutation test, so for
    small n it is optimistic (e.g. no exact sign-flip test on n = 6 pairs reaches p < 0.01).
    inf when n < 1.
    """
    if n < 1:
        return float("inf")
    a = alpha / 2 if two_sided else alpha
    return float((sps.norm.ppf(1 - a) + sps.norm.ppf(power)) * diff_sd / np.sqrt(n))


def paired_differences(mine, other) -> np.ndarray:
    """``mine - other`` on the videos both have a value for: two pandas Series indexed by the
    video ((prompt, seed), or (prompt, seed, seconds)); one difference per matched pair, in
    ``mine``'s order (a video missing from ``other`` or NaN in either has no pair)."""
    return (mine - other.reindex(mine.index)).dropna().to_numpy()


@dataclass(frozen=True)
class Paired:
    """A paired comparison of n video pairs: mean difference with its bootstrap interval,
    one-sided p-value (H1: the mean difference is > 0), the smallest p the test can give at
    this n (both NaN when the test was not asked for), the standard deviation of the
    differences, and the minimum detectable difference (power 0.8) at level ``alpha``."""

    n: int
    mean: float
    lo: float
    hi: float
    p: float
    smallest_p: float
    sd: float
    mdd: float


def paired_comparison(diff: object, resamples: int, seed: Seed, alpha: float,
                      permutations: int = PERMUTATIONS, test: bool = True, two_sided: bool = False) -> Paired:
    """Everything a report says about paired differences ``diff`` [n]: the bootstrap interval
    of the mean (drawn first from ``seed``), the sign-flip test of H1: mean > 0 (``test``), and
    the MDD of a one-sided (or ``two_sided``) test at ``alpha``: inf when n = 0, NaN when
    n = 1 (no spread to estimate)."""
    x = _finite(diff)
    mean, lo, hi = paired_bootstrap(x, resamples, seed)
    sd = float(x.std(ddof=1)) if len(x) > 1 else float("nan")
    p = least = float("nan")
    if test:
        p, least = sign_flip_p(x, "greater", permutations, seed), smallest_p(len(x), permutations)
    return Paired(n=len(x), mean=mean, lo=lo, hi=hi, p=p, smallest_p=least, sd=sd,
                  mdd=minimum_detectable_difference(sd, len(x), alpha, two_sided=two_sided))
