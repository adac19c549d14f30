"""The statistics of the tables, against computations written here independently of it.

The t interval from first principles (scipy.stats.t.ppf), Holm's step-down by hand on a planted
list, the power of the paired t-test by brute-force simulation, and small A/A simulations: the
chosen method holds its error rate where the percentile bootstrap it replaced does not, and the
sequential schedule holds its family-wise error under optional stopping.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analysis import power, sequential
from analysis import statistics as st


def test_mean_interval_is_the_student_t_interval() -> None:
    values = np.array([0.71, 0.74, 0.69, 0.80, 0.77])
    for level in (0.95, 0.99):
        half = stats.t.ppf(1 - (1 - level) / 2, 4) * values.std(ddof=1) / math.sqrt(5)
        interval = st.mean_interval(values, level)
        assert (interval.low, interval.high) == pytest.approx((values.mean() - half, values.mean() + half))
        assert interval.level == level and "over 5 seeds" in interval.label
    assert not st.mean_interval(np.array([0.3])).exists and not st.mean_interval(np.array([])).exists


def holm_by_hand(p_values: list[float]) -> list[float]:
    """The k-th smallest p-value times (m - k + 1), a running maximum along that order, capped at 1."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, (len(p_values) - rank) * p_values[i])
        adjusted[i] = min(running, 1.0)
    return adjusted


def test_holm_matches_the_step_down_by_hand() -> None:
    planted = [0.03, 0.01, 0.5, 0.02]
    # 0.01·4 = 0.04; 0.02·3 = 0.06; max(0.06, 0.03·2) = 0.06; 0.5.
    assert list(st.holm(np.array(planted))) == pytest.approx([0.06, 0.04, 0.5, 0.06])
    rng = np.random.default_rng(1)
    for _ in range(20):
        p = rng.uniform(0, 0.2, 7)
        assert list(st.holm(p)) == pytest.approx(holm_by_hand(list(p)))


def test_verdicts_are_paired_t_with_holm_and_simultaneous_intervals() -> None:
    rng = np.random.default_rng(2)
    differences = {key: rng.normal(shift, 1.0, 6) for key, shift in {"a": 3.0, "b": 0.2, "c": -2.5}.items()}
    found = st.verdicts(differences)
    raw = [stats.ttest_1samp(differences[key], 0).pvalue for key in "abc"]
    for key, adjusted in zip("abc", holm_by_hand(raw)):
        verdict, values = found[key], differences[key]
        assert verdict.p_adjusted == pytest.approx(adjusted) and verdict.resolved == (adjusted <= 0.05)
        half = stats.t.ppf(1 - 0.05 / (2 * 3), 5) * values.std(ddof=1) / math.sqrt(6)
        assert (verdict.interval.low, verdict.interval.high) == pytest.approx((values.mean() - half, values.mean() + half))
        assert verdict.interval.label == "95 % simultaneous paired-t interval over 6 seeds"
        assert verdict.sign == (int(np.sign(values.mean())) if verdict.resolved else 0)
    assert found["a"].resolved and found["c"].sign == -1 and not found["b"].resolved
    assert found["b"].smallest_resolvable == pytest.approx(power.smallest_resolvable(found["b"].sd, 6, 3))


def test_what_cannot_be_resolved_says_so_and_leaves_the_family() -> None:
    found = st.verdicts({"one": np.array([0.02]), "flat": np.array([0.01, 0.01, 0.01]), "ok": np.array([0.5, 0.6, 0.55])})
    assert found["one"].note == "cannot resolve with 1 seed" and not found["one"].resolved
    assert "same amount" in found["flat"].note and not found["flat"].interval.exists
    # "ok" is alone in the family: its p-value is not multiplied.
    assert found["ok"].p_adjusted == pytest.approx(stats.ttest_1samp([0.5, 0.6, 0.55], 0).pvalue)
    assert found["ok"].interval.label == "95 % paired-t interval over 3 seeds"


def test_power_and_seeds_needed_against_brute_force() -> None:
    sd, effect, comparisons = 1.0, 1.5, 4
    needed = power.seeds_needed(sd, effect, comparisons)
    rng = np.random.default_rng(3)

    def simulated(n: int) -> float:
        draws = rng.normal(effect, sd, (40_000, n))
        t = draws.mean(1) / (draws.std(1, ddof=1) / math.sqrt(n))
        return float(np.mean(np.abs(t) > stats.t.ppf(1 - 0.05 / (2 * comparisons), n - 1)))

    assert power.paired_t_power(effect, sd, needed, 0.05 / comparisons) == pytest.approx(simulated(needed), abs=0.01)
    assert simulated(needed) >= 0.79 and simulated(needed - 1) < 0.8
    smallest = power.smallest_resolvable(sd, 10, comparisons)
    assert power.paired_t_power(smallest, sd, 10, 0.05 / comparisons) == pytest.approx(0.8)
    assert power.seeds_needed(1.0, 0.01, 16) is None and power.seeds_needed(1.0, 0.0, 1) is None
    assert power.smallest_resolvable(1.0, 1, 4) == math.inf
    with pytest.raises(ValueError, match="comparisons=0"):
        power.seeds_needed(1.0, 1.0, 0)


def test_a_a_simulation_holds_five_percent_where_the_old_bootstrap_did_not() -> None:
    # Null differences at 3 seeds: the paired t resolves 5 % of them; the percentile bootstrap's 95 %
    # interval of 3 values is their range, which excludes zero whenever all 3 share a sign (2 / 2^3 = 25 %).
    rng = np.random.default_rng(4)
    draws = rng.standard_normal((2_000, 3))
    t_rate = np.mean([st.t_p_value(row) <= 0.05 for row in draws])
    range_rate = np.mean((draws > 0).all(1) | (draws < 0).all(1))
    mcse = math.sqrt(0.05 * 0.95 / 2_000)
    assert t_rate <= 0.05 + 3 * mcse
    assert range_rate > 0.2


def test_schedule_looks_and_spending() -> None:
    schedule = sequential.Schedule(3, 3, 10)
    assert schedule.looks() == [3, 6, 9, 10]
    assert sum(schedule.alpha_at(look) for look in schedule.looks()) == pytest.approx(0.05)
    assert schedule.alpha_at(3) == pytest.approx(0.0125) and schedule.next_look(6) == 9 and schedule.next_look(10) is None
    obf = sequential.Schedule(3, 3, 12, spending="obrien-fleming")
    shares = [obf.alpha_at(look) for look in obf.looks()]
    assert sum(shares) == pytest.approx(0.05) and shares == sorted(shares)
    z = stats.norm.ppf(0.975)
    assert shares[0] == pytest.approx(2 - 2 * stats.norm.cdf(z / math.sqrt(3 / 12)))
    with pytest.raises(ValueError, match="initial=1"):
        sequential.Schedule(1, 1, 5)
    with pytest.raises(ValueError, match="look=4"):
        schedule.alpha_at(4)


def test_sequential_stops_the_resolved_and_keeps_its_error_under_optional_stopping() -> None:
    schedule = sequential.Schedule(3, 3, 9)
    rng = np.random.default_rng(5)
    false, reps = 0, 400
    for _ in range(reps):
        data = {key: rng.standard_normal(9) for key in range(4)}  # every comparison a true null
        found = sequential.sequential_verdicts(data, schedule)
        false += any(verdict.resolved for verdict in found.values())
    # The union bound gives 0.05; the simulated rate must not exceed it beyond Monte-Carlo noise.
    assert false / reps <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)
    big = {"shift": np.full(9, 1.0) + rng.normal(0, 0.01, 9), "null": rng.standard_normal(9)}
    assert sequential.sequential_verdicts(big, schedule)["shift"].n == 3  # resolved at the first look, kept
    found = sequential.sequential_verdicts({key: values[:3] for key, values in big.items()}, schedule)
    assert found["shift"].resolved and found["shift"].n == 3
    assert sequential.open_comparisons(found, schedule) == ({"null"} if not found["null"].resolved else set())
    cells = {"shift": ("FlatNCE", "InfoNCE"), "null": ("DCL", "InfoNCE")}
    if not found["null"].resolved:
        assert sequential.cells_needing_seeds(found, cells, schedule) == {"DCL", "InfoNCE"}
