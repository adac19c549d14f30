"""Intervals over seeds and the verdicts of a table's paired comparisons.

A cell of a table is a handful of seeds (2 to 12), so every statistic here is computed over
seeds, never over images or epochs, and is conditional on the one fixed test set.

Choices, and why (the numbers are ``benchmarks/inference.py``'s, in ``benchmarks/RESULTS.md``):

- **Paired Student t over seeds.** Two cells are compared on the seeds both ran (a seed fixes
  the initialisation and data order of every loss), through the per-seed differences. The
  t-test is exact for normal differences, and the differences of two exchangeable cells are
  symmetric whatever the shape of the seed noise, where the t-test at small levels errs on
  the conservative side. Measured, its family-wise error stays within 0.05 + 2 MCSE at every n
  from 2 to 12 under normal, Student-t(3) and skewed seed noise. The percentile bootstrap the
  tables used before does not: it called a null difference "resolved" 22 % of the time at 3
  seeds (its 95 % interval of 3 values is their range), and an exact sign-flip test cannot
  reach 5 % below 5 seeds (its smallest p-value is 2 / 2^n).
- **Holm's step-down** across a table's family decides what is resolved: it controls the
  family-wise error at ``ALPHA`` like Bonferroni, and resolves at least as much.
- **Simultaneous intervals**: each difference's interval is the paired-t interval at the
  Bonferroni level 1 - ALPHA / m, so all m hold together at 1 - ALPHA. Holm can resolve a
  difference whose simultaneous interval still touches zero; the footnote says so.
- **Cannot resolve**: under 2 seeds, or when every seed's difference is the same (no spread to
  estimate the noise from), no valid test exists; such a comparison is outside the family and
  the table says so.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis import power

ALPHA = 0.05
LEVEL = 1 - ALPHA
MIN_SEEDS = 2  # a t interval needs one degree of freedom


@dataclass(frozen=True)
class Interval:
    """A t interval of a mean over seeds.

    Attributes:
        low: Lower end (NaN where there is no interval).
        high: Upper end (NaN where there is no interval).
        level: Confidence level of this interval alone, e.g. 0.95 (0.995 for one of 10 simultaneous).
        label: What it is, in words, e.g. "95 % simultaneous paired-t interval over 10 seeds".
    """

    low: float
    high: float
    level: float
    label: str = ""

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
class Verdict:
    """One paired comparison X - Y of a family, as the table reports it.

    Attributes:
        difference: Mean of the per-seed differences X - Y (NaN without common seeds).
        interval: Its paired-t interval, simultaneous over the family (``NO_INTERVAL`` if none).
        p_value: Two-sided paired-t p-value of this comparison alone (NaN where untestable).
        p_adjusted: Holm-adjusted p-value over the family (NaN where untestable).
        resolved: Whether ``p_adjusted`` <= the family's alpha.
        sign: +1 (X above Y) or -1 where resolved, else 0.
        n: Number of common seeds.
        sd: Sample standard deviation of the per-seed differences (NaN under 2 seeds).
        smallest_resolvable: Smallest true difference these n seeds resolve with 80 % power
            at the family's level, from ``sd`` (NaN where resolved or untestable).
        seeds_needed: Seeds the observed difference would need for 80 % power at that level;
            None where more than ``power.MAX_SEEDS`` would, or where resolved or untestable.
        note: Why there is no test ("cannot resolve with 1 seed"), else empty.
    """

    difference: float
    interval: Interval
    p_value: float
    p_adjusted: float
    resolved: bool
    sign: int
    n: int
    sd: float
    smallest_resolvable: float = math.nan
    seeds_needed: int | None = None
    note: str = ""

    @property
    def testable(self) -> bool:
        """Whether the comparison had a test (and so belongs to the family)."""
        return not math.isnan(self.p_value)


def mean_interval(values: np.ndarray | pd.Series, level: float = LEVEL) -> Interval:
    """Student-t interval of the mean of ``values`` (one value per seed).

    Shape:
        values: [seeds]

    Returns:
        mean ± t_{n-1, (1+level)/2} · s / √n, or ``NO_INTERVAL`` for fewer than ``MIN_SEEDS`` values.
    """
    sample = np.asarray(values, dtype="float64")
    if sample.size < MIN_SEEDS:
        return NO_INTERVAL
    half = _t_quantile(level, sample.size) * float(sample.std(ddof=1)) / math.sqrt(sample.size)
    mean = float(sample.mean())
    return Interval(mean - half, mean + half, level, f"{100 * level:.3g} % t interval over {sample.size} seeds")


def t_p_value(differences: np.ndarray) -> float:
    """Two-sided one-sample t-test of mean zero (NaN under 2 values or without spread).

    Shape:
        differences: [seeds]
    """
    sample = np.asarray(differences, dtype="float64")
    if sample.size < MIN_SEEDS or np.ptp(sample) == 0:
        return math.nan
    t = sample.mean() / (sample.std(ddof=1) / math.sqrt(sample.size))
    return float(2 * stats.t.sf(abs(t), sample.size - 1))


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values: reject where adjusted <= alpha.

    The k-th smallest p-value is multiplied by (m - k + 1), made non-decreasing along the
    sorted order, and capped at 1.

    Shape:
        p_values: [m]
    """
    p = np.asarray(p_values, dtype="float64")
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def bonferroni_level(level: float, comparisons: int) -> float:
    """The level each of ``comparisons`` intervals needs for all to hold together at ``level``."""
    return 1 - (1 - level) / max(comparisons, 1)


def paired_differences(x: pd.Series, y: pd.Series) -> pd.Series:
    """X - Y on the seeds (the index) both share, in seed order."""
    common = x.index.intersection(y.index).sort_values()
    return x[common].astype("float64") - y[common].astype("float64")


def cannot_resolve(differences: np.ndarray) -> str:
    """Why no valid test exists for these per-seed differences, or "" where one does."""
    n = len(differences)
    if n < MIN_SEEDS:
        return f"cannot resolve with {n} seed{'' if n == 1 else 's'}"
    if np.ptp(np.asarray(differences, dtype="float64")) == 0:
        return f"cannot resolve: all {n} seeds differ by the same amount"
    return ""


def verdicts(
    differences: Mapping[Hashable, np.ndarray], alpha: float = ALPHA, comparisons: int | None = None
) -> dict[Hashable, Verdict]:
    """The family's verdicts: Holm over its testable comparisons, simultaneous t intervals.

    Args:
        differences: Per comparison, its per-seed paired differences X - Y.
        alpha: Family-wise error rate.
        comparisons: Size of the family, where it holds more than the testable comparisons
            given here (the rest count as never resolved); None: just those given.

    Returns:
        A ``Verdict`` per key; comparisons without a valid test carry their ``note`` and are
        not counted in the family.
    """
    arrays = {key: np.asarray(value, dtype="float64") for key, value in differences.items()}
    testable = [key for key, value in arrays.items() if not cannot_resolve(value)]
    m = len(testable) if comparisons is None else comparisons
    if m < len(testable):
        raise ValueError(f"comparisons={comparisons}: the family has {len(testable)} testable comparisons")
    raw = np.array([t_p_value(arrays[key]) for key in testable] + [1.0] * (m - len(testable)))
    adjusted = dict(zip(testable, holm(raw)))
    return {key: _verdict(value, adjusted.get(key, math.nan), m, alpha) for key, value in arrays.items()}


def _verdict(differences: np.ndarray, p_adjusted: float, comparisons: int, alpha: float) -> Verdict:
    n = differences.size
    mean = float(differences.mean()) if n else math.nan
    sd = float(differences.std(ddof=1)) if n >= MIN_SEEDS else math.nan
    note = cannot_resolve(differences)
    if note:
        return Verdict(mean, NO_INTERVAL, math.nan, math.nan, False, 0, n, sd, note=note)
    level = bonferroni_level(1 - alpha, comparisons)
    interval = mean_interval(differences, level)
    label = f"{100 * (1 - alpha):g} % simultaneous paired-t interval over {n} seeds"
    if comparisons == 1:
        label = f"{100 * (1 - alpha):g} % paired-t interval over {n} seeds"
    resolved = bool(p_adjusted <= alpha)
    planning = {} if resolved else {
        "smallest_resolvable": power.smallest_resolvable(sd, n, comparisons, alpha),
        "seeds_needed": power.seeds_needed(sd, abs(mean), comparisons, alpha),
    }
    return Verdict(
        difference=mean,
        interval=Interval(interval.low, interval.high, level, label),
        p_value=t_p_value(differences),
        p_adjusted=float(p_adjusted),
        resolved=resolved,
        sign=int(np.sign(mean)) if resolved else 0,
        n=n,
        sd=sd,
        **planning,
    )


def _t_quantile(level: float, n: int) -> float:
    return float(stats.t.ppf((1 + level) / 2, n - 1))
