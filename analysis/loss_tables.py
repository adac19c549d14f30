"""The loss-by-axis tables: accuracy per loss against batch size, views, compute or lr.

All four are one procedure with different axes (``LossAxis``): select each cell's trials on
validation, summarise them over seeds, lay them out as a grid, add the random-init row, the
paired differences against the reference loss and against random init, and mark a column's
best loss only where it is resolved above every other. The distinct comparisons of a table
(the differences shown and the checks behind bold cells, each pair of cells once) are one
family: Holm's step-down over paired t-tests decides what is resolved, and every interval is
simultaneous over the family (``statistics``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import pandas as pd

from analysis import load, notes
from analysis.cells import Cell, Diff, Span, Stat, Table
from analysis.labels import RANDOM_INIT, REFERENCE_LOSS, hours_unit, loss_label
from analysis.selection import seed_values, summarize
from analysis.statistics import Verdict, mean_interval, paired_differences, verdicts
from trainables.spec import run_schema as rs

NOT_RECORDED = "not recorded"
SPREAD = "spread (pp)"


@dataclass(frozen=True)
class LossAxis:
    """One loss-by-axis table.

    Attributes:
        key: File stem and key in ``all_tables``.
        title: The table's title.
        column: Frame column whose values are the table's columns.
        column_name: What the columns are, in words.
        column_symbol: Prefix of column headers (``B`` gives ``B=256``).
        rows: Frame columns whose values label a row; the loss first.
        along_rows: Mark the best cell of each row (lr sensitivity) instead of each column.
        against_reference: Add a row per loss of its difference from ``REFERENCE_LOSS``.
        against_baseline: Add a row per loss of its difference from the random-init baseline.
        varied_rows_only: Keep only rows in which the column's value varied (a sensitivity table).
        spread: Add a column: best minus worst mean of the row.
        describe: Config columns every cell names in the footnotes even when they do not vary.
        hours: Name each cell's device-hours per trial in the footnotes.
        best_note: What "best" compares, for the footnote.
    """

    key: str
    title: str
    column: str
    column_name: str
    column_symbol: str
    rows: tuple[str, ...] = (rs.P_LOSS,)
    along_rows: bool = False
    against_reference: bool = True
    against_baseline: bool = True
    varied_rows_only: bool = False
    spread: bool = False
    describe: tuple[str, ...] = ()
    hours: bool = False
    best_note: str = "best loss in each column"


AXES: dict[str, LossAxis] = {
    "batch_size": LossAxis("batch_size", "Accuracy vs batch size", rs.P_BATCH_SIZE, "batch size", "B"),
    "views": LossAxis(
        "views", "Accuracy vs positive views M (equal epochs)", rs.P_VIEWS, "positive views M", "M"
    ),
    # A 6-view run costs three times a 2-view run per epoch: equal V × epochs is the fair comparison.
    "equal_compute": LossAxis(
        "equal_compute",
        "Accuracy at equal compute (encoder passes per image, V × epochs)",
        load.ENCODER_PASSES,
        "encoder passes per image (V × epochs)",
        "V·epochs",
        describe=(rs.P_VIEWS,),
        hours=True,
        best_note="best loss at each compute budget",
    ),
    "lr": LossAxis(
        "lr",
        "Accuracy vs learning rate (sensitivity)",
        rs.P_LR,
        "base learning rate",
        "lr",
        rows=(rs.P_LOSS, rs.P_BATCH_SIZE),
        along_rows=True,
        against_reference=False,
        against_baseline=False,  # learning over random init is in the other tables; here it would repeat per lr
        varied_rows_only=True,
        spread=True,
        best_note="best lr in each row",
    ),
}


@dataclass(frozen=True)
class _Comparison:
    """X - Y for one difference cell (or one check of a best cell): its place and both sides.

    ``sides`` names the two cells compared, (row, column) keys or ``RANDOM_INIT``, so that a
    pair met twice (a best check that is also a difference shown) is one member of the family.
    """

    row: Hashable
    column: Hashable
    x: pd.Series
    y: pd.Series
    sides: tuple[Hashable, Hashable]

    @property
    def pair(self) -> frozenset:
        return frozenset(self.sides)


def _family(comparisons: list[_Comparison]) -> tuple[dict[frozenset, Verdict], dict[frozenset, tuple]]:
    """Each distinct pair of cells once: its verdict (as its first orientation) and that orientation."""
    first: dict[frozenset, _Comparison] = {}
    for comparison in comparisons:
        first.setdefault(comparison.pair, comparison)
    found = verdicts({pair: paired_differences(c.x, c.y).to_numpy() for pair, c in first.items()})
    return found, {pair: c.sides for pair, c in first.items()}


def _oriented(comparison: _Comparison, family: tuple[dict, dict]) -> Verdict:
    """The family's verdict on a comparison, turned round where the family holds it as Y - X."""
    found, sides = family
    verdict = found[comparison.pair]
    if sides[comparison.pair] == comparison.sides:
        return verdict
    interval = dataclasses.replace(verdict.interval, low=-verdict.interval.high, high=-verdict.interval.low)
    return dataclasses.replace(verdict, difference=-verdict.difference, interval=interval, sign=-verdict.sign)


def loss_axis_table(
    trials: pd.DataFrame,
    axis: LossAxis,
    metric: str = rs.M_TEST_AT_BEST_VAL,
    baselines: pd.DataFrame | None = None,
) -> Table:
    """Accuracy per loss (rows) against one axis (columns), with baseline and difference rows.

    Args:
        trials: Frame from ``load_study``.
        axis: Which table.
        metric: Accuracy column to report.
        baselines: Frame from ``load_baselines``; None or empty gives a "not recorded" row.

    Returns:
        The table: loss rows (mean [interval] per cell), the random-init row, "− InfoNCE" rows
        (where ``against_reference``), "− random init" rows, and the spread column (``spread``).
    """
    baselines = load.empty_baselines() if baselines is None else baselines
    by = [*axis.rows, axis.column]
    shown = trials
    if axis.varied_rows_only:
        shown = trials[trials.groupby(list(axis.rows))[axis.column].transform("nunique") > 1]
    summary = summarize(shown, by, metric, axis.describe)
    seeds = {_key(cell, axis): cell["seeds"] for _, cell in summary[summary["n"] > 0].iterrows()}
    baseline = seed_values(baselines[baselines[metric].notna()], metric)
    row_keys = list(dict.fromkeys(_row_key(cell, axis) for _, cell in summary.iterrows()))
    columns = sorted(summary[axis.column].dropna().unique().tolist())
    # One family for the whole table: every verdict and interval is drawn knowing its size.
    checks = _best_checks(seeds, row_keys, columns, axis)
    differences = _reference_comparisons(seeds, row_keys, columns, axis) + _baseline_comparisons(
        seeds, row_keys, columns, axis, baseline
    )
    family = _family(checks + differences)
    rows = _loss_rows(summary, axis, _resolved_best(checks, family))
    rows[_labelled(row_keys[0], "", RANDOM_INIT) if row_keys else RANDOM_INIT] = _baseline_row(baseline, columns, axis)
    for comparison in differences:
        rows.setdefault(comparison.row, {})[comparison.column] = _diff(comparison, _oriented(comparison, family))
    if axis.spread:
        for key, cells in rows.items():
            cells[SPREAD] = _spread(cells.values()) if key in row_keys else None
    footnotes = _footnotes(axis, list(family[0].values()), baselines, metric) + _never_met(seeds, row_keys, columns, axis)
    unit = hours_unit(trials) if axis.hours else ""
    return Table(
        key=axis.key,
        title=axis.title,
        grid=_grid(rows, axis, [*columns, *([SPREAD] if axis.spread else [])]),
        column_name=axis.column_name,
        column_symbol=axis.column_symbol,
        caption=notes.caption(trials, metric),
        footnotes=tuple(footnotes + notes.common_footnotes(trials, summary, by, metric, hours_unit=unit)),
    )


def batch_size_table(
    trials: pd.DataFrame, metric: str = rs.M_TEST_AT_BEST_VAL, baselines: pd.DataFrame | None = None
) -> Table:
    """Accuracy per loss (rows) and batch size (columns)."""
    return loss_axis_table(trials, AXES["batch_size"], metric, baselines)


def views_table(
    trials: pd.DataFrame, metric: str = rs.M_TEST_AT_BEST_VAL, baselines: pd.DataFrame | None = None
) -> Table:
    """Accuracy per loss (rows) and positive views M (columns), at equal epochs."""
    return loss_axis_table(trials, AXES["views"], metric, baselines)


def equal_compute_table(
    trials: pd.DataFrame, metric: str = rs.M_TEST_AT_BEST_VAL, baselines: pd.DataFrame | None = None
) -> Table:
    """Accuracy per loss (rows) at equal encoder passes per image, V × epochs (columns)."""
    return loss_axis_table(trials, AXES["equal_compute"], metric, baselines)


def lr_table(
    trials: pd.DataFrame, metric: str = rs.M_TEST_AT_BEST_VAL, baselines: pd.DataFrame | None = None
) -> Table:
    """Accuracy per (loss, batch size) (rows) and base lr (columns), with the spread over lrs."""
    return loss_axis_table(trials, AXES["lr"], metric, baselines)


def _key(cell: pd.Series, axis: LossAxis) -> tuple[Hashable, Hashable]:
    return _row_key(cell, axis), cell[axis.column]


def _row_key(cell: pd.Series, axis: LossAxis) -> Hashable:
    """The grid row of a summary cell: the loss's label, or a tuple (label, batch size, ...)."""
    labels = [loss_label(str(cell[axis.rows[0]])), *(cell[column] for column in axis.rows[1:])]
    return labels[0] if len(labels) == 1 else tuple(labels)


def _labelled(row: Hashable, suffix: str, label: str | None = None) -> Hashable:
    """The row key with its loss label replaced (``label``) or extended (``suffix``)."""
    loss = row[0] if isinstance(row, tuple) else row
    text = label if label is not None else f"{loss} {suffix}"
    if not isinstance(row, tuple):
        return text
    return (text, *(("",) * (len(row) - 1) if label is not None else row[1:]))


def _reference_comparisons(
    seeds: dict[tuple, pd.Series], row_keys: list[Hashable], columns: list, axis: LossAxis
) -> list[_Comparison]:
    """Each other loss minus the reference loss, in the same row position and column."""
    if not axis.against_reference:
        return []
    reference = loss_label(REFERENCE_LOSS)
    comparisons = []
    for row in row_keys:
        base = (reference, *row[1:]) if isinstance(row, tuple) else reference
        if row == base:
            continue
        comparisons += [
            _Comparison(
                _labelled(row, f"− {reference}"), column, seeds[(row, column)], seeds[(base, column)],
                ((row, column), (base, column)),
            )
            for column in columns
            if (row, column) in seeds and (base, column) in seeds
        ]
    return comparisons


def _baseline_comparisons(
    seeds: dict[tuple, pd.Series], row_keys: list[Hashable], columns: list, axis: LossAxis, baseline: pd.Series
) -> list[_Comparison]:
    """Each cell minus the random-init baseline: what pretraining learned."""
    if baseline.empty or not axis.against_baseline:
        return []
    return [
        _Comparison(_labelled(row, f"− {RANDOM_INIT}"), column, seeds[(row, column)], baseline, ((row, column), RANDOM_INIT))
        for row in row_keys
        for column in columns
        if (row, column) in seeds
    ]


def _footnotes(axis: LossAxis, family: list[Verdict], baselines: pd.DataFrame, metric: str) -> list[str]:
    """What bold means, how the statistics were made, and what the random-init row is."""
    footnotes = [
        f"Bold: {axis.best_note}, only where its paired difference to every other is resolved above zero.",
        notes.statistics_note(family),
        notes.baseline_note(baselines, metric, axis.against_baseline),
    ]
    if axis.spread:
        footnotes.append("Spread: best minus worst mean over the lrs tried, in percentage points (no interval).")
    return footnotes


def _never_met(seeds: dict[tuple, pd.Series], row_keys: list[Hashable], columns: list, axis: LossAxis) -> list[str]:
    """A note naming the losses that never ran in a column beside the reference loss: nothing compares them."""
    if not axis.against_reference:
        return []
    reference = loss_label(REFERENCE_LOSS)
    measured = [row for row in row_keys if row != reference and any((row, column) in seeds for column in columns)]
    alone = [
        row for row in measured if not any((row, column) in seeds and (reference, column) in seeds for column in columns)
    ]
    if not alone or not any((reference, column) in seeds for column in columns):
        return []
    names = ", ".join(map(str, alone))
    return [
        f"Not compared: {names} never ran at the same {axis.column_symbol} as {reference}, so no column holds both; "
        "a bold cell there was compared only with the losses beside it."
    ]


def _best_checks(
    seeds: dict[tuple, pd.Series], row_keys: list[Hashable], columns: list, axis: LossAxis
) -> list[_Comparison]:
    """For each column (or row) of several cells, its best cell minus each other cell."""
    groups = [[(row, column) for column in columns] for row in row_keys] if axis.along_rows else [
        [(row, column) for row in row_keys] for column in columns
    ]
    checks = []
    for group in groups:
        cells = [key for key in group if key in seeds]
        if len(cells) < 2:
            continue
        top = max(cells, key=lambda key: seeds[key].mean())
        checks += [_Comparison(top[0], top[1], seeds[top], seeds[other], (top, other)) for other in cells if other != top]
    return checks


def _resolved_best(checks: list[_Comparison], family: tuple[dict, dict]) -> set[tuple]:
    """The best cells whose every check is resolved, with the best above."""
    verdicts_of: dict[tuple, bool] = {}
    for check in checks:
        verdict = _oriented(check, family)
        key = (check.row, check.column)
        verdicts_of[key] = verdicts_of.get(key, True) and verdict.resolved and verdict.sign > 0
    return {key for key, resolved in verdicts_of.items() if resolved}


def _diff(comparison: _Comparison, verdict: Verdict) -> Diff:
    differences = paired_differences(comparison.x, comparison.y)
    values = tuple((seed, float(value)) for seed, value in differences.items())
    if verdict.n == 0:
        return Diff(math.nan, note="no common seeds", verdict=verdict)
    return Diff(verdict.difference, verdict.interval, verdict.n, verdict.note, verdict=verdict, values=values)


def _stat(values: pd.Series, best: bool = False) -> Stat:
    by_seed = tuple((seed, float(value)) for seed, value in values.sort_index().items())
    return Stat(float(values.mean()), float(values.std()), len(values), mean_interval(values), best, by_seed)


def _baseline_row(baseline: pd.Series, columns: list, axis: LossAxis) -> dict[Hashable, Cell]:
    """The random-init row: its one cell spanning every column, since the untrained encoder has no column's setting."""
    row: dict[Hashable, Cell] = dict.fromkeys(columns)
    if columns:
        cell = NOT_RECORDED if baseline.empty else _stat(baseline)
        row[columns[0]] = Span(cell, len(columns), f"every {axis.column_symbol}")
    return row


def _loss_rows(summary: pd.DataFrame, axis: LossAxis, best: set[tuple]) -> dict[Hashable, dict]:
    """One row of ``Stat`` cells per loss (and row setting); a cell without a result has n = 0."""
    rows: dict[Hashable, dict] = {}
    for _, cell in summary.iterrows():
        row, column = _key(cell, axis)
        stat = _stat(cell["seeds"], (row, column) in best) if cell["n"] else Stat(math.nan, math.nan, 0)
        rows.setdefault(row, {})[column] = stat
    return rows


def _grid(rows: dict[Hashable, dict], axis: LossAxis, columns: list) -> pd.DataFrame:
    """The rows as a grid; cells no trial or comparison reached stay None."""
    keys = list(rows)
    if len(axis.rows) == 1:
        index = pd.Index(keys, name=axis.rows[0], dtype=object)
    else:
        index = pd.MultiIndex.from_tuples(keys, names=list(axis.rows))
    cells = [[rows[key].get(column) for column in columns] for key in keys]
    grid = pd.DataFrame(cells, index=index, columns=pd.Index(columns, name=axis.column), dtype=object)
    return grid.astype(object).where(grid.notna(), None)


def _spread(cells: Iterable[Cell]) -> Diff | None:
    means = [cell.mean for cell in cells if isinstance(cell, Stat) and cell.n]
    if len(means) < 2:
        return None
    return Diff(max(means) - min(means), signed=False)
