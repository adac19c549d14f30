"""The captions and footnotes the tables share: what was measured, what was left out, and why."""

from __future__ import annotations

import math

import pandas as pd

from analysis import load
from analysis.labels import (
    EVAL_LABELS,
    METRIC_LABELS,
    commits_text,
    distinct_text,
    format_value,
    loss_label,
)
from analysis.selection import CONFIG_SYMBOLS
from analysis.statistics import ALPHA, LEVEL, Verdict
from trainables.spec import run_schema as rs

_MAX_REASONS = 5  # distinct failure reasons named in a footnote


def caption(trials: pd.DataFrame, metric: str) -> str:
    """Names the study, dataset, backbone, epochs, evaluation protocol and code version."""
    mode = str(trials[load.EVAL_MODE].iloc[0])
    recipes = distinct_text(trials, load.RECIPE)
    protocol = EVAL_LABELS.get(mode, mode) + (f" (recipe {recipes})" if recipes != "—" else "")
    return (
        f"Study {trials[load.STUDY].iloc[0]} (preset {distinct_text(trials, load.PRESET)}); "
        f"dataset {distinct_text(trials, rs.P_DATASET)}; backbone {distinct_text(trials, rs.P_BACKBONE)}; "
        f"{distinct_text(trials, rs.P_EPOCHS)} pretraining epochs; evaluation: {protocol}; "
        f"cells: {METRIC_LABELS[metric]} in %, mean over seeds [{100 * LEVEL:g} % t interval] (n = seeds); "
        f"code {commits_text(trials, load.CODE_VERSION)}."
    )


def statistics_note(family: list[Verdict]) -> str:
    """How cells and differences were computed and judged, with the family named.

    Args:
        family: The verdict of each distinct comparison of the table.
    """
    tested = [verdict for verdict in family if verdict.testable]
    text = (
        f"Intervals: Student t over seeds; cells at {100 * LEVEL:g} %. Differences are paired by seed (the seeds "
        "both sides ran, n in each cell, per-seed values in the CSV): mean difference in percentage points "
        "[interval]. All intervals are over seeds for the one fixed test set: they say how much another set of "
        "seeds could move the result, not another test set. "
    )
    if len(tested) == 1:
        text += f"This table has one testable comparison: a paired t-test at {100 * ALPHA:g} %, its {100 * LEVEL:g} % interval. "
    elif tested:
        text += (
            f"Resolved: Holm's step-down over the table's {len(tested)} distinct paired t-tests (the differences shown "
            f"and the checks behind bold cells, each pair of cells once), family-wise error {100 * ALPHA:g} %; each "
            f"interval is one of {len(tested)} Bonferroni-simultaneous {100 * LEVEL:g} % paired-t intervals, so Holm "
            "may resolve a difference whose interval touches 0. "
        )
    text += (
        "“Not resolved” cells give the smallest difference their seeds would resolve with 80 % power at the "
        "table's level (from the spread of the paired differences) and the seeds the observed difference would "
        "need. Under 2 common seeds, or where every seed's difference is the same, no valid test exists: "
        "“cannot resolve”."
    )
    return text


def baseline_note(baselines: pd.DataFrame, metric: str, differences: bool = True) -> str:
    """What the random-init row is (and the rows of differences from it), or that the study recorded none."""
    if baselines.empty or baselines[metric].notna().sum() == 0:
        return (
            "Random init: no random-init baseline runs with this evaluation were recorded for this study, "
            "so learning over an untrained encoder cannot be shown."
        )
    text = (
        "Random init: the same architecture, evaluation, split and seeds, without pretraining (the study's "
        f"baseline runs, {_seeds(baselines)})"
    )
    return text + ("; “− random init” rows are trained minus untrained over shared seeds." if differences else ".")


def _seeds(baselines: pd.DataFrame) -> str:
    return "seeds " + ", ".join(format_value(seed) for seed in sorted(baselines[rs.P_SEED].dropna().unique()))


def exclusion_note(trials: pd.DataFrame) -> str:
    """The footnote counting trials left out of every mean because they did not complete."""
    excluded = trials[trials[load.STATUS] != rs.STATUS_COMPLETED]
    if excluded.empty:
        return "Excluded: none (all trials completed)."
    first = [rs.STATUS_FAILED, rs.STATUS_EARLY_STOPPED]
    present = set(excluded[load.STATUS])
    order = [status for status in first if status in present] + sorted(present - set(first))
    return "Excluded from means: " + ", ".join(_status_count(excluded, status) for status in order) + "."


def common_footnotes(
    trials: pd.DataFrame, summary: pd.DataFrame, by: list[str], metric: str, hours_unit: str = ""
) -> list[str]:
    """Exclusions, missing or repeated evaluations, and the configuration behind each cell."""
    notes = [exclusion_note(trials)]
    notes += [note for note in (_missing_eval_note(trials, metric), _several_evals_note(trials)) if note]
    selection = _selection_note(summary, by, hours_unit)
    return notes + ([selection] if selection else [])


def _status_count(excluded: pd.DataFrame, status: str) -> str:
    group = excluded[excluded[load.STATUS] == status]
    reasons = group[load.FAILURE_REASON].dropna().astype(str).value_counts()
    text = f"{len(group)} {status.replace('_', '-')}"
    if reasons.empty:
        return text
    if len(reasons) == 1 and reasons.iloc[0] == len(group):
        return f"{text} (reason: {reasons.index[0]})"
    shown = [f"{reason} ×{count}" for reason, count in reasons.head(_MAX_REASONS).items()]
    more = len(reasons) - _MAX_REASONS
    return f"{text} (reasons: {'; '.join(shown)}{f'; {more} more' if more > 0 else ''})"


def _missing_eval_note(trials: pd.DataFrame, metric: str) -> str:
    completed = trials[trials[load.STATUS] == rs.STATUS_COMPLETED]
    missing = int(completed[metric].isna().sum())
    if not missing:
        return ""
    mode = trials[load.EVAL_MODE].iloc[0]
    return (
        f"Missing: {missing} completed trial(s) have no {metric} from a {mode} evaluation; "
        "they are not counted, and a cell without any shows —."
    )


def _several_evals_note(trials: pd.DataFrame) -> str:
    several = int((trials[load.N_EVALS] > 1).sum())
    if not several:
        return ""
    mode = trials[load.EVAL_MODE].iloc[0]
    return f"{several} trial(s) have several {mode} evaluations: the latest of each is used."


def _selection_note(summary: pd.DataFrame, by: list[str], hours_unit: str = "") -> str:
    """Names the configuration behind each cell that held several, or whose config is described."""
    described = summary[summary["config"] != ""]
    if described.empty:
        return ""
    parts = [_cell_config(cell, by, hours_unit) for _, cell in described.iterrows()]
    return "Configuration per cell (where several were run, the best by mean validation accuracy): " + "; ".join(
        parts
    ) + "."


def _cell_config(cell: pd.Series, by: list[str], hours_unit: str) -> str:
    label = ", ".join(key_text(column, cell[column]) for column in by)
    text = f"{label}: {cell['config']}"
    if cell["n_configs"] > 1:
        text += f" (of {cell['n_configs']})"
    if hours_unit and not math.isnan(cell["device_hours"]):
        text += f", {cell['device_hours']:.3g} {hours_unit} per trial"
    return text


def key_text(column: str, value: object) -> str:
    """A cell coordinate as text: the loss's label, or ``B=256``."""
    if column == rs.P_LOSS:
        return loss_label(str(value))
    return f"{CONFIG_SYMBOLS.get(column, column)}={format_value(value)}"
