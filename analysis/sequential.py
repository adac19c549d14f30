"""Adaptive seeds: look at a study's paired comparisons at planned seed counts, stop those resolved.

A ``Schedule`` fixes the looks in advance (``initial`` seeds, then every ``step`` more, up to
``max_seeds``) and splits the family-wise error ``alpha`` across them (``alpha_at``): at each
look the comparisons still open are tested with Holm at that look's share. Whatever the data
and whenever a comparison stops, the chance of any false resolution over all looks is at most
the sum of the shares, ``alpha``: at each look, a first false resolution needs a true null's
p-value under that look's share over the number of true nulls, whose chance is at most the
share. The looks' tests are strongly correlated, so the union bound is conservative; the
measured error is in ``benchmarks/RESULTS.md`` (``benchmarks/inference.py``).

Spending rules (``SPENDING``): ``pocock`` gives every look the same share (alpha / looks), which
resolves large differences early; ``obrien-fleming`` gives early looks little (Lan-DeMets's
O'Brien-Fleming-like function, alpha(t) = 2 - 2 Φ(z_{1 - alpha/2} / √t) at t = seeds / max_seeds),
keeping almost all of alpha for the last look, where a fixed design would test.

Stateless by design: ``sequential_verdicts`` replays every look from the per-seed differences
(in seed order), so the driver only has to keep running seeds. A comparison resolved at a look
keeps that look's verdict; call it when every open comparison has reached the current look.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

from analysis.statistics import ALPHA, NO_INTERVAL, Verdict, verdicts


def _pocock(position: int, looks: list[int], alpha: float) -> float:
    """Alpha spent through look ``position``: an equal share per look."""
    return alpha * (position + 1) / len(looks)


def _obrien_fleming(position: int, looks: list[int], alpha: float) -> float:
    """Alpha spent through look ``position``: Lan-DeMets's O'Brien-Fleming-like function."""
    fraction = looks[position] / looks[-1]
    return float(2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 2) / math.sqrt(fraction)))


# Cumulative alpha spent through a look (its position among the looks); the last look spends all of alpha.
SPENDING: dict[str, Callable[[int, list[int], float], float]] = {"pocock": _pocock, "obrien-fleming": _obrien_fleming}


@dataclass(frozen=True)
class Schedule:
    """When to look at the comparisons, and the share of alpha each look spends.

    Attributes:
        initial: Seeds at the first look (at least 2, the fewest a t-test takes).
        step: Seeds added between looks (at least 1).
        max_seeds: Seeds at the last look; a comparison still open there stays unresolved.
        alpha: Family-wise error rate over all looks and comparisons.
        spending: How alpha is split across looks, a key of ``SPENDING``.
    """

    initial: int
    step: int
    max_seeds: int
    alpha: float = ALPHA
    spending: str = "pocock"

    def __post_init__(self) -> None:
        checks = {
            "initial": (self.initial >= 2, "at least 2 (a t-test needs two seeds)"),
            "step": (self.step >= 1, "at least 1"),
            "max_seeds": (self.max_seeds >= self.initial, f"at least initial ({self.initial})"),
            "alpha": (0 < self.alpha < 1, "strictly between 0 and 1"),
            "spending": (self.spending in SPENDING, f"one of {', '.join(SPENDING)}"),
        }
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"Schedule {name}={getattr(self, name)!r}: must be {allowed}")

    def looks(self) -> list[int]:
        """Seed counts at which the comparisons are tested, the last being ``max_seeds``."""
        looks = list(range(self.initial, self.max_seeds + 1, self.step))
        return looks if looks[-1] == self.max_seeds else [*looks, self.max_seeds]

    def alpha_at(self, look: int) -> float:
        """The share of ``alpha`` the look at ``look`` seeds spends (the shares sum to ``alpha``)."""
        looks = self.looks()
        if look not in looks:
            raise ValueError(f"look={look}: not a look of this schedule; looks are {looks}")
        spend, position = SPENDING[self.spending], looks.index(look)
        return spend(position, looks, self.alpha) - (spend(position - 1, looks, self.alpha) if position else 0.0)

    def next_look(self, seeds: int) -> int | None:
        """The first look after ``seeds`` seeds, or None after the last."""
        return next((look for look in self.looks() if look > seeds), None)


def sequential_verdicts(
    differences: Mapping[Hashable, np.ndarray], schedule: Schedule, comparisons: int | None = None
) -> dict[Hashable, Verdict]:
    """Which comparisons are resolved so far, replaying every look the data has reached.

    Args:
        differences: Per comparison, its per-seed paired differences X - Y in seed order (the
            seeds run so far; a comparison stopped at a look has that look's seeds).
        schedule: The looks and their alpha.
        comparisons: Size of the family, if it holds more than those given (the rest count as
            never resolved); None: those given.

    Returns:
        Per key, the verdict of the look that resolved it, or of the latest look it reached
        (its ``n``); a comparison that has not reached the first look has an untested verdict.
        ``resolved`` holds the family-wise error at ``schedule.alpha`` across all looks.
    """
    arrays = {key: np.asarray(value, dtype="float64") for key, value in differences.items()}
    family = len(arrays) if comparisons is None else comparisons
    if family < len(arrays):
        raise ValueError(f"comparisons={comparisons}: {len(arrays)} comparisons were given")
    decided: dict[Hashable, Verdict] = {}
    latest: dict[Hashable, Verdict] = {key: _untested(value) for key, value in arrays.items()}
    looks = schedule.looks()
    for look in looks:
        live = {key: value[:look] for key, value in arrays.items() if key not in decided and value.size >= look}
        if not live:
            break
        results = verdicts(live, schedule.alpha_at(look), max(family - len(decided), len(live)))
        for key, verdict in results.items():
            labelled = _relabel(verdict, len(looks))
            latest[key] = labelled
            if verdict.resolved:
                decided[key] = labelled
    return latest


def open_comparisons(results: Mapping[Hashable, Verdict], schedule: Schedule) -> set[Hashable]:
    """The comparisons that want more seeds: unresolved and short of ``max_seeds``."""
    return {key for key, verdict in results.items() if not verdict.resolved and verdict.n < schedule.max_seeds}


def cells_needing_seeds(
    results: Mapping[Hashable, Verdict], cells: Mapping[Hashable, Iterable[Hashable]], schedule: Schedule
) -> set[Hashable]:
    """The cells to run more seeds of: every cell of an open comparison.

    Args:
        results: From ``sequential_verdicts``.
        cells: Per comparison, the cells it compares (e.g. the two (loss, batch size) keys).
        schedule: The looks.
    """
    return {cell for key in open_comparisons(results, schedule) for cell in cells[key]}


def _untested(values: np.ndarray) -> Verdict:
    mean = float(values.mean()) if values.size else math.nan
    note = f"{values.size} seeds: short of the first look"
    return Verdict(mean, NO_INTERVAL, math.nan, math.nan, False, 0, values.size, math.nan, note=note)


def _relabel(verdict: Verdict, looks: int) -> Verdict:
    if not verdict.interval.exists:
        return verdict
    label = f"{verdict.interval.label}, simultaneous over {looks} looks"
    return dataclasses.replace(verdict, interval=dataclasses.replace(verdict.interval, label=label))
