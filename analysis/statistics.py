"""Intervals over seeds, paired differences and the probability of improvement.

A cell of a table is a handful of seeds (3 to 10), so every statistic here is computed over
seeds, never over images or epochs.

Choices, and why:

- **Percentile bootstrap over seeds** (``scipy.stats.bootstrap``, ``method="percentile"``).
  rliable's stratified bootstrap resamples runs within each task and reads percentile
  intervals off the resampled aggregates; a table cell is one task, so its stratified
  bootstrap is the plain bootstrap over the cell's seeds, which scipy does without a new
  dependency. The percentile method is used rather than scipy's default BCa because BCa's
  jackknife acceleration is undefined or erratic at 2 to 5 seeds (scipy warns of degenerate
  data and returns NaN when the jackknife values coincide), and rather than ``basic`` because
  the percentile interval never leaves the range of the resampled means.
  Intervals need ``MIN_SEEDS`` = 3 seeds: the bootstrap distribution of a mean of two numbers
  has three atoms, and its interval is the two values themselves. Read intervals at 3 or 4
  seeds for what they are: where ``n ** -n`` exceeds the tail probability the interval is the
  range [min, max] of the values (``range_only``), so a paired difference is resolved exactly
  when every seed's difference has the same sign, which chance alone does with probability
  2 / 2^n (``sign_chance``) when there is no difference. The tables say so where it applies.
- **Paired differences**: two cells are compared on the seeds both ran (seeds are shared
  across losses, and a seed fixes the initialisation and data order), by bootstrapping the
  per-seed differences.
- **Probability of improvement** P(X > Y), as rliable defines it (Agarwal et al. 2021): the
  Mann-Whitney statistic over all pairs of X's and Y's runs, ties counting one half, here
  over the runs of the shared seeds.
- **Multiple comparisons**: Bonferroni, by running each of a table's k difference intervals at
  level 1 - (1 - level)/k. Holm is uniformly more powerful for tests but gives no intervals;
  Bonferroni-adjusted levels give intervals that hold simultaneously.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

LEVEL = 0.95
N_RESAMPLES = 9999  # scipy's default
RNG_SEED = 0  # one fixed stream per interval, so that a report reproduces to the digit
MIN_SEEDS = 3


@dataclass(frozen=True)
class Interval:
    """A bootstrap interval of a mean.

    Attributes:
        low: Lower end (NaN where there is no interval).
        high: Upper end (NaN where there is no interval).
        level: Confidence level, e.g. 0.95.
    """

    low: float
    high: float
    level: float

    @property
    def exists(self) -> bool:
        """Whether an interval was computed (two or more seeds)."""
        return not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies entirely above or entirely below zero."""
        return self.exists and (self.low > 0 or self.high < 0)


NO_INTERVAL = Interval(math.nan, math.nan, math.nan)


@dataclass(frozen=True)
class Paired:
    """X minus Y over the seeds both share.

    Attributes:
        difference: Mean of the per-seed differences X - Y (NaN without common seeds).
        interval: Bootstrap interval of that mean (``NO_INTERVAL`` under ``MIN_SEEDS`` common seeds).
        prob_improvement: P(X > Y) over the common seeds' runs (NaN without common seeds).
        n_pairs: Number of common seeds.
    """

    difference: float
    interval: Interval
    prob_improvement: float
    n_pairs: int


def mean_interval(values: np.ndarray | pd.Series, level: float = LEVEL) -> Interval:
    """Percentile-bootstrap interval of the mean of ``values`` (one value per seed).

    Shape:
        values: [seeds]

    Returns:
        The interval, or ``NO_INTERVAL`` for fewer than ``MIN_SEEDS`` values.
    """
    sample = np.asarray(values, dtype="float64")
    if sample.size < MIN_SEEDS:
        return NO_INTERVAL
    if np.ptp(sample) == 0:
        # Every resample has the same mean; scipy would warn about the degenerate sample.
        return Interval(float(sample[0]), float(sample[0]), level)
    result = stats.bootstrap(
        (sample,),
        np.mean,
        confidence_level=level,
        n_resamples=N_RESAMPLES,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(RNG_SEED),
    )
    return Interval(float(result.confidence_interval.low), float(result.confidence_interval.high), level)


def probability_of_improvement(x: np.ndarray | pd.Series, y: np.ndarray | pd.Series) -> float:
    """P(X > Y): the share of (x, y) pairs with x > y, ties counting one half.

    Shape:
        x: [runs of X]
        y: [runs of Y]
    """
    a = np.asarray(x, dtype="float64")[:, None]
    b = np.asarray(y, dtype="float64")[None, :]
    if a.size == 0 or b.size == 0:
        return math.nan
    return float(np.mean((a > b) + 0.5 * (a == b)))


def paired(x: pd.Series, y: pd.Series, level: float = LEVEL) -> Paired:
    """X - Y paired by seed: the mean difference, its interval and P(X > Y).

    Args:
        x: One value per seed (the index), e.g. a loss's accuracies.
        y: One value per seed, e.g. InfoNCE's accuracies in the same setting.
        level: Confidence level of the interval (already adjusted for multiplicity).
    """
    common = x.index.intersection(y.index)
    if common.empty:
        return Paired(math.nan, NO_INTERVAL, math.nan, 0)
    differences = x[common].to_numpy("float64") - y[common].to_numpy("float64")
    return Paired(
        float(differences.mean()),
        mean_interval(differences, level),
        probability_of_improvement(x[common], y[common]),
        len(common),
    )


def range_only(n: int, level: float) -> bool:
    """Whether the percentile interval of a mean of ``n`` values at ``level`` is their whole range.

    A resample made of the smallest value only has probability ``n ** -n``; where that exceeds
    the tail, the lower end is the minimum (and the upper the maximum).
    """
    return n >= 1 and n ** -float(n) > (1 - level) / 2


def sign_chance(n: int) -> float:
    """Chance that ``n`` paired differences share a sign when there is no true difference."""
    return 2 / 2**n


def bonferroni_level(level: float, comparisons: int) -> float:
    """The level each of ``comparisons`` intervals needs for all to hold together at ``level``."""
    return 1 - (1 - level) / max(comparisons, 1)
