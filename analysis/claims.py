"""A study's claims judged on its runs: supported, contradicted, or not resolved with the seeds it ran.

A claim (``trainables.spec.claims.Claim``) becomes one or more paired tests, each on one number
per seed: a difference of two cells of a loss-by-axis table (``at_least``, ``greater``: one test
per column), a difference of differences between the axis's last and first value
(``difference_trend``), or a loss's last minus first value (``monotone``). The cells are the
tables' own: the same validation-selected trials (``selection.summarize``), the same seeds, the
same random-init runs, so each test's difference is a row of a table (or two rows of one).

The family. Every test of every claim of a study is one family of its own, tested with the
tables' paired t-test and adjusted by Holm across it (``statistics.verdicts``), so that the
chance of any false verdict in the Claims section is at most 5 %. The tables' verdicts cannot be
reused: a table tests each difference against 0, while a non-inferiority claim tests it against
−margin and a trend claim tests a contrast no table holds; and adding the claims' tests to a
table's family would change the verdicts the tables print. The Claims section and each table
are therefore two families, each with its error rate controlled; a reader combining them
should know that the two are not controlled jointly.

A claim's verdict over its tests: contradicted where any test is resolved against it, supported
where every test is resolved for it, else not resolved, with the seeds that would resolve it
(``power``). A non-inferiority test is resolved for the claim when the difference is resolved
above −margin and against it when resolved below −margin: a loss resolved worse by less than the
margin still "at least matches" within it, and the verdict says so.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient

from analysis import power
from analysis.labels import RANDOM_INIT as RANDOM_INIT_LABEL
from analysis.labels import counted, format_value, loss_label
from analysis.loss_tables import AXES
from analysis.selection import seed_values, summarize
from analysis.statistics import Verdict, paired_differences, verdicts
from trainables.spec import run_schema as rs
from trainables.spec.claims import (
    CLAIMS_ARTIFACT,
    EVERY_LOSS,
    LEARNING,
    RANDOM_INIT,
    Claim,
    claims_from_json,
)

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
NOT_RESOLVED = "not resolved"
NOT_TESTABLE = "not testable"
STATUSES = (SUPPORTED, CONTRADICTED, NOT_RESOLVED, NOT_TESTABLE)


@dataclass(frozen=True)
class Evidence:
    """One paired test behind a claim.

    Attributes:
        label: The table row it reads, e.g. ``FlatNCE − InfoNCE, B=32``.
        values: The number tested, one per seed (indexed by seed), as a fraction.
        null: Its value under the null: −margin for non-inferiority, else 0.
        favoured: +1 where the claim says the value lies above ``null``, −1 below.
    """

    label: str
    values: pd.Series
    null: float
    favoured: int


@dataclass(frozen=True)
class Tested:
    """An ``Evidence`` with its verdict in the claims' family (a test without a valid test carries its note)."""

    evidence: Evidence
    verdict: Verdict

    @property
    def n(self) -> int:
        return len(self.evidence.values)

    @property
    def side(self) -> int:
        """+1 resolved for the claim, −1 resolved against it, 0 not resolved."""
        if not self.verdict.resolved:
            return 0
        return self.verdict.sign * self.evidence.favoured


@dataclass(frozen=True)
class ClaimResult:
    """A claim's verdict on one study.

    Attributes:
        claim: The claim.
        status: One of ``STATUSES``.
        tests: Every test behind it, in axis order.
        reason: Why it could not be tested (``NOT_TESTABLE`` only).
    """

    claim: Claim
    status: str
    tests: tuple[Tested, ...] = ()
    reason: str = ""

    @property
    def seeds(self) -> int:
        """The fewest seeds any of its tests had."""
        return min((test.n for test in self.tests), default=0)

    @property
    def seeds_needed(self) -> int | None:
        """Seeds that would resolve every unresolved test at its observed effect (None where unknown)."""
        needed = [test.verdict.seeds_needed for test in self.tests if test.side == 0]
        return max(needed) if needed and None not in needed else None

    @property
    def decisive(self) -> Tested | None:
        """The test the verdict turns on: a contradicting one, else the least resolved."""
        against = [test for test in self.tests if test.side < 0]
        if against:
            return against[0]
        return max(self.tests, key=_doubt, default=None)


def evaluate_claims(
    claims: tuple[Claim, ...], trials: pd.DataFrame, baselines: pd.DataFrame, metric: str = rs.M_TEST_AT_BEST_VAL
) -> list[ClaimResult]:
    """Judge every claim on a study's trials and random-init runs, all tests in one Holm family.

    Args:
        claims: The study's claims.
        trials: Frame from ``load_study`` (or several replicate studies' frames, concatenated).
        baselines: Frame from ``load_baselines``.
        metric: The accuracy judged, as in the tables.

    Returns:
        One result per claim, in the claims' order.
    """
    found = [_evidence(claim, trials, baselines, metric) for claim in claims]
    family = [item for tests in found if not isinstance(tests, str) for item in tests]
    judged = verdicts({index: (item.values - item.null).to_numpy("float64") for index, item in enumerate(family)})
    verdict_of = {id(item): judged[index] for index, item in enumerate(family)}
    results = []
    for claim, evidence in zip(claims, found):
        if isinstance(evidence, str):
            results.append(ClaimResult(claim, NOT_TESTABLE, reason=evidence))
            continue
        tests = tuple(Tested(item, verdict_of[id(item)]) for item in evidence)
        results.append(ClaimResult(claim, _status(tests), tests))
    return results


def _status(tests: tuple[Tested, ...]) -> str:
    if any(test.side < 0 for test in tests):
        return CONTRADICTED
    return SUPPORTED if all(test.side > 0 for test in tests) else NOT_RESOLVED


def _doubt(test: Tested) -> float:
    """How far a test is from resolved for the claim: unresolved first, then the largest p."""
    if not test.verdict.testable:
        return math.inf
    return (0.0 if test.side > 0 else 1.0) + test.verdict.p_adjusted


def _evidence(claim: Claim, trials: pd.DataFrame, baselines: pd.DataFrame, metric: str) -> list[Evidence] | str:
    """The claim's tests, or why the study cannot test it."""
    axis = AXES[claim.axis]
    cells = _cells(trials, axis.column, metric)
    columns = sorted({column for _, column in cells})
    if claim.kind == "monotone":
        return _monotone(claim, cells, columns, axis.column_symbol)
    losses = _losses(claim, cells)
    if not losses:
        return f"no completed {loss_label(claim.loss)} trials in this study"
    other = _other(claim, cells, baselines, metric)
    if isinstance(other, str):
        return other
    if claim.kind == "difference_trend":
        return _trend(claim, cells, other, columns, axis.column_symbol)
    null = -claim.margin if claim.kind == "at_least" else 0.0
    found = [
        Evidence(f"{loss_label(loss)} − {_against_label(claim)}, {axis.column_symbol}={format_value(column)}",
                 paired_differences(cells[(loss, column)], other(column)), null, +1)
        for loss in losses
        for column in columns
        if (loss, column) in cells and other(column) is not None
    ]
    return found or f"{loss_label(claim.loss)} and {_against_label(claim)} never ran at the same {axis.column_name}"


def _cells(trials: pd.DataFrame, column: str, metric: str) -> dict[tuple[str, object], pd.Series]:
    """(loss, axis value) -> its per-seed values, as the table over that axis selects them."""
    summary = summarize(trials, [rs.P_LOSS, column], metric)
    return {(str(cell[rs.P_LOSS]), cell[column]): cell["seeds"] for _, cell in summary[summary["n"] > 0].iterrows()}


def _losses(claim: Claim, cells: dict) -> list[str]:
    present = list(dict.fromkeys(loss for loss, _ in cells))
    if claim.loss == EVERY_LOSS:
        return [loss for loss in present if loss != claim.against]
    return [claim.loss] if claim.loss in present else []


def _other(claim: Claim, cells: dict, baselines: pd.DataFrame, metric: str):
    """A function from an axis value to the per-seed values compared against, or why there are none."""
    if claim.against == RANDOM_INIT:
        recorded = baselines[baselines[metric].notna()] if not baselines.empty else baselines
        if recorded.empty:
            return "no random-init baseline runs with this evaluation were recorded for this study"
        baseline = seed_values(recorded, metric)
        return lambda column: baseline
    if not any(loss == claim.against for loss, _ in cells):
        return f"no completed {loss_label(claim.against)} trials in this study"
    return lambda column: cells.get((claim.against, column))


def _against_label(claim: Claim) -> str:
    return RANDOM_INIT_LABEL if claim.against == RANDOM_INIT else loss_label(claim.against)


def _sign(claim: Claim) -> int:
    return +1 if claim.direction == "increasing" else -1


def _trend(claim: Claim, cells: dict, other, columns: list, symbol: str) -> list[Evidence] | str:
    both = [column for column in columns if (claim.loss, column) in cells and other(column) is not None]
    if len(both) < 2:
        return f"{loss_label(claim.loss)} and {_against_label(claim)} met at fewer than two values of {symbol}"
    first, last = both[0], both[-1]
    gap = {column: paired_differences(cells[(claim.loss, column)], other(column)) for column in (first, last)}
    label = (
        f"({loss_label(claim.loss)} − {_against_label(claim)} at {symbol}={format_value(last)}) "
        f"− (at {symbol}={format_value(first)})"
    )
    return [Evidence(label, paired_differences(gap[last], gap[first]), 0.0, _sign(claim))]


def _monotone(claim: Claim, cells: dict, columns: list, symbol: str) -> list[Evidence] | str:
    present = [column for column in columns if (claim.loss, column) in cells]
    if len(present) < 2:
        return f"{loss_label(claim.loss)} ran at fewer than two values of {symbol}"
    first, last = present[0], present[-1]
    label = f"{loss_label(claim.loss)}, {symbol}={format_value(last)} − {symbol}={format_value(first)}"
    return [Evidence(label, paired_differences(cells[(claim.loss, last)], cells[(claim.loss, first)]), 0.0, _sign(claim))]


def verdict_text(result: ClaimResult) -> str:
    """The verdict in words: ``supported``, ``contradicted``, ``not resolved with 3 seeds (about 9 would resolve it)``."""
    claim = result.claim
    margin = f" within the {100 * claim.margin:.2g}-point non-inferiority margin" if claim.kind == "at_least" else ""
    if result.status == NOT_TESTABLE:
        return f"not testable here: {result.reason}"
    if result.status == SUPPORTED:
        return f"supported{margin}"
    if result.status == CONTRADICTED:
        beyond = f" (worse by more than the {100 * claim.margin:.2g}-point margin)" if claim.kind == "at_least" else ""
        return f"contradicted{beyond}"
    needed = result.seeds_needed
    untestable = next((test.verdict.note for test in result.tests if not test.verdict.testable), "")
    more = f" (about {needed} would resolve it at the effect seen)" if needed else f" ({untestable})" if untestable else (
        f" (more than {power.MAX_SEEDS} would be needed at the effect seen)"
    )
    return f"not resolved with {counted(result.seeds, 'seed')}{more}"


def evidence_text(test: Tested) -> str:
    """A test as its table row reads: ``FlatNCE − InfoNCE, B=32: −0.46 [−1.04, +0.00] p_adj=0.12, n=10``."""
    values, verdict = test.evidence.values, test.verdict
    mean = points_text(float(values.mean())) if len(values) else "—"
    if not verdict.testable:
        return f"{test.evidence.label}: {mean} ({verdict.note})"
    shift = test.evidence.null
    interval = f"[{points_text(verdict.interval.low + shift)}, {points_text(verdict.interval.high + shift)}]"
    against = f", tested against the margin −{100 * -shift:.2f}" if shift else ""
    return f"{test.evidence.label}: {mean} {interval} p_adj={verdict.p_adjusted:.2g}, n={test.n}{against}"


def points_text(value: float) -> str:
    """A fraction as signed percentage points with a true minus sign, as the tables print differences."""
    return f"{100 * value:+.2f}".replace("-", "−")


def claims_intro(results: Sequence[ClaimResult]) -> str:
    """The section's first line: how many claims, and how many of each verdict."""
    if not results:
        return "No claims to judge."
    counts = [f"{sum(result.status == status for result in results)} {status}" for status in STATUSES]
    shown = [text for text, status in zip(counts, STATUSES) if status != NOT_TESTABLE or not text.startswith("0 ")]
    return f"{counted(len(results), 'claim')} of the study's paper judged on its runs: {', '.join(shown)}."


def recorded_claims(study_run_id: str, tracking_uri: str | None) -> tuple[tuple[Claim, ...], str]:
    """The claims a study recorded on its study run, and a note saying where they came from.

    A study started before studies recorded their claims has none; only ``LEARNING``, the claim
    every study makes, is judged then, and the note says so.
    """
    client = MlflowClient(tracking_uri or mlflow.get_tracking_uri())
    if CLAIMS_ARTIFACT not in {item.path for item in client.list_artifacts(study_run_id)}:
        return (LEARNING,), (
            f"This study recorded no claims ({CLAIMS_ARTIFACT} is not among its study run's artifacts: it was "
            "started before studies recorded them), so only the claim every study makes is judged."
        )
    with tempfile.TemporaryDirectory() as folder:
        text = Path(client.download_artifacts(study_run_id, CLAIMS_ARTIFACT, folder)).read_text(encoding="utf-8")
    return claims_from_json(text), f"The claims are those the study's preset declared when it started ({CLAIMS_ARTIFACT} of its study run)."


def family_note(results: Sequence[ClaimResult]) -> str:
    """How the Claims section's verdicts were reached, for the section's footnote."""
    tests = sum(1 for result in results for test in result.tests if test.verdict.testable)
    return (
        f"Each claim is judged by paired tests over seeds on the tables' own cells; its {counted(tests, 'test')} "
        "form one family of their own, Holm-adjusted together (the tables' families are separate), so the chance "
        "of any false verdict in this section is at most 5 %. Supported: every test resolved for the claim; "
        "contradicted: any resolved against it; a trend is the difference between the axis's last and first value. "
        "Intervals are over seeds, conditional on the fixed test set; `python -m analysis mcnemar` tests two trials "
        "image by image."
    )
