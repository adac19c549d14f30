"""The statistics of the tables, against computations written here independently of it.

Bootstrap intervals are checked two ways: against a plain NumPy percentile bootstrap drawing
the same resamples from the same seed, and, on tiny samples, against the exact bootstrap
distribution (every one of the n^n resamples enumerated), which needs no random numbers at all.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from analysis import statistics as st


def numpy_bootstrap(values: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile bootstrap of the mean: resample seeds with replacement, read the quantiles."""
    rng = np.random.default_rng(st.RNG_SEED)
    indices = rng.integers(0, len(values), (st.N_RESAMPLES, len(values)))
    means = values[indices].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def exact_bootstrap(values: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Every resample of ``values`` (n^n index tuples, equally likely): its distinct means and their CDF."""
    n = len(values)
    means = np.array(sorted(sum(values[i] for i in index) / n for index in itertools.product(range(n), repeat=n)))
    atoms, counts = np.unique(np.round(means, 12), return_counts=True)
    return atoms, np.cumsum(counts) / len(means)


def exact_quantile(atoms: np.ndarray, cdf: np.ndarray, q: float) -> float:
    """The atom where the exact CDF first reaches q; the test checks q is well inside its step."""
    position = int(np.searchsorted(cdf, q))
    below = cdf[position - 1] if position else 0.0
    # 9999 resamples put the empirical CDF within about 0.002 (one s.d.) of the exact one.
    assert below + 0.007 < q < cdf[position] - 0.007, "q is too close to a step for a Monte Carlo check"
    return float(atoms[position])


@pytest.mark.parametrize("values", [[0.71, 0.74, 0.69, 0.80, 0.77], [0.1, 0.4, 0.45, 0.9], [0.5, 0.52, 0.61]])
def test_interval_is_numpys_percentile_bootstrap(values: list[float]) -> None:
    sample = np.array(values)
    for level in (0.95, 0.99):
        interval = st.mean_interval(sample, level)
        assert (interval.low, interval.high) == pytest.approx(numpy_bootstrap(sample, level), abs=1e-12)
        assert interval.level == level


@pytest.mark.parametrize(
    ("values", "level"),
    [([0.1, 0.4, 0.45, 0.9], 0.6), ([0.2, 0.2, 0.5, 0.9], 0.8), ([0.1, 0.5, 0.5, 0.5, 0.9], 0.95), ([0.5, 0.52, 0.61], 0.95)],
)
def test_interval_matches_the_exact_bootstrap_distribution(values: list[float], level: float) -> None:
    atoms, cdf = exact_bootstrap(values)
    tail = (1 - level) / 2
    interval = st.mean_interval(np.array(values), level)
    assert interval.low == pytest.approx(exact_quantile(atoms, cdf, tail), abs=1e-12)
    assert interval.high == pytest.approx(exact_quantile(atoms, cdf, 1 - tail), abs=1e-12)


def test_three_seeds_give_their_range_and_two_give_none() -> None:
    # One resample in 27 is all the smallest value: more than any tail at 95 % or above.
    assert st.range_only(3, 0.95) and st.range_only(3, 0.999) and not st.range_only(5, 0.95)
    interval = st.mean_interval(np.array([0.3, 0.1, 0.2]), 0.995)
    assert (interval.low, interval.high) == pytest.approx((0.1, 0.3))
    assert not st.mean_interval(np.array([0.3, 0.1])).exists
    assert not st.mean_interval(np.array([])).exists
    same = st.mean_interval(np.array([0.4, 0.4, 0.4]))
    assert (same.low, same.high) == (0.4, 0.4) and same.excludes_zero
    assert not st.Interval(-0.1, 0.2, 0.95).excludes_zero and st.Interval(-0.3, -0.1, 0.95).excludes_zero


def test_probability_of_improvement_counts_pairs_and_half_ties() -> None:
    # Pairs (1,2) (1,0) (2,2) (2,0): 0 + 1 + 1/2 + 1.
    assert st.probability_of_improvement([1, 2], [2, 0]) == pytest.approx(2.5 / 4)
    x, y = [0.81, 0.84, 0.80, 0.84], [0.80, 0.84, 0.79, 0.83]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in x for b in y)
    assert st.probability_of_improvement(x, y) == pytest.approx(wins / 16)
    assert math.isnan(st.probability_of_improvement([], [1.0]))


def test_paired_uses_only_common_seeds() -> None:
    x = pd.Series({0: 0.82, 1: 0.85, 2: 0.81, 3: 0.84, 7: 0.99})
    y = pd.Series({0: 0.80, 1: 0.84, 2: 0.82, 3: 0.80, 5: 0.10})
    result = st.paired(x, y, 0.99)
    differences = np.array([0.02, 0.01, -0.01, 0.04])
    assert result.n_pairs == 4 and result.difference == pytest.approx(differences.mean())
    assert (result.interval.low, result.interval.high) == pytest.approx(numpy_bootstrap(differences, 0.99), abs=1e-12)
    common = [0, 1, 2, 3]
    assert result.prob_improvement == pytest.approx(st.probability_of_improvement(x[common], y[common]))
    none = st.paired(pd.Series({1: 0.5}), pd.Series({2: 0.5}))
    assert none.n_pairs == 0 and math.isnan(none.difference) and not none.interval.exists


def test_bonferroni_level_and_sign_chance() -> None:
    assert st.bonferroni_level(0.95, 10) == pytest.approx(0.995)
    assert st.bonferroni_level(0.95, 0) == pytest.approx(0.95)
    # All n signs equal by chance: both all-positive and all-negative, each 1 / 2^n.
    assert st.sign_chance(3) == pytest.approx(0.25) and st.sign_chance(5) == pytest.approx(1 / 16)
