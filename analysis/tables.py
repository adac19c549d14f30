"""The comparison tables of a study, as plain data (formatting lives in ``render``).

Every table cell is a group of trials (say, one loss at one batch size). Only completed trials
count. A study usually sweeps more than the table's two axes (lr, M, ...), so a cell can hold
several configurations; the one with the best mean validation accuracy of its evaluation is
shown, so that the test set never chooses, and the footnotes say which one was chosen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
from scipy import stats

from analysis import load
from analysis.reported import PROVENANCE_TAGS, REPORTED, ReportedNumber
from trainables import run_schema as rs

LOSS_LABELS: dict[str, str] = {
    "infonce": "InfoNCE",
    "flatnce": "FlatNCE",
    "dcl": "Debiased CL",
    "hcl": "HCL",
    "attentionnce": "AttentionNCE",
}
INFONCE = "infonce"
FLATNCE = "flatnce"
MIN_PAIRED_SEEDS = 3

METRIC_LABELS: dict[str, str] = {
    rs.M_TEST_AT_BEST_VAL: "test accuracy at the validation-selected epoch",
    rs.M_MAX_TEST_OVER_EPOCHS: "maximum test accuracy over epochs (test-set-selected, as in the original papers)",
}
EVAL_LABELS: dict[str, str] = {"linear": "linear probe", "finetune": "fine-tuning", "knn": "kNN classifier"}

# Hyperparameters that may vary inside one cell, with the symbols that name them in footnotes:
# run_schema's config params, then logged params outside it (the losses' own hyperparameters
# and optimiser settings a study may sweep).
CONFIG_SYMBOLS: dict[str, str] = {
    rs.P_LOSS: "loss",
    rs.P_DATASET: "dataset",
    rs.P_BACKBONE: "backbone",
    rs.P_BATCH_SIZE: "B",
    rs.P_VIEWS: "M",
    rs.P_VIEWS_PER_IMAGE: "V",
    rs.P_LR: "lr",
    rs.P_LR_SCALING: "lr scaling",
    rs.P_OPTIMIZER: "optimizer",
    rs.P_TEMPERATURE: "τ",
    rs.P_EPOCHS: "epochs",
    load.ENCODER_PASSES: "V·epochs",
    load.EXTRA_PARAM_PREFIX + "d_pos": "d_pos",
    load.EXTRA_PARAM_PREFIX + "d_neg": "d_neg",
    load.EXTRA_PARAM_PREFIX + "tau_plus": "τ⁺",
    load.EXTRA_PARAM_PREFIX + "beta": "β",
    load.EXTRA_PARAM_PREFIX + "weight_decay": "wd",
    load.EXTRA_PARAM_PREFIX + "schedule": "schedule",
}
CONFIG_COLUMNS = tuple(column for column in CONFIG_SYMBOLS if column != load.ENCODER_PASSES)

_REPORTED_COLUMNS = (
    "method (as reported)",
    "B",
    "epochs",
    "reported (%)",
    "tag",
    "source",
    "measured here (%)",
    "our setting",
    "measured − reported (pp)",
)
_MAX_REASONS = 5  # distinct failure reasons named in a footnote

_CONFIG_KEY = "_config"
_IDENTICAL = 1e-12
_MEAN_VAL = "_mean_val"


@dataclass(frozen=True)
class Stat:
    """Accuracy over the seeds of one cell, as fractions.

    Attributes:
        mean: Mean over seeds (NaN when n is 0).
        std: Sample standard deviation (NaN when n < 2).
        n: Number of seeds.
        best: Whether this is the best cell of its column (or row, per the table).
    """

    mean: float
    std: float
    n: int
    best: bool = False


@dataclass(frozen=True)
class Diff:
    """A difference of accuracies, as a fraction, with its test where there is one.

    Attributes:
        value: The difference (NaN where one side is missing).
        p_value: Two-sided p-value of the paired test, or None where none was run.
        n_pairs: Number of seed pairs tested.
        note: Why there is no test, or other context.
        signed: Whether to print a sign (False for spreads, which are never negative).
    """

    value: float
    p_value: float | None = None
    n_pairs: int = 0
    note: str = ""
    signed: bool = True


Cell = Stat | Diff | str | None


@dataclass(frozen=True)
class Table:
    """One table, ready for any output format.

    Attributes:
        key: File stem, e.g. ``batch_size``.
        title: Short title.
        grid: Cells (``Stat``, ``Diff``, ``str`` or None for missing); the index holds the row
            labels (its names label the row columns), the columns the column values.
        column_name: What the columns are, e.g. ``batch size``.
        column_symbol: Prefix of numeric column headers (``B`` gives ``B=256``); empty for none.
        caption: What, where and how was measured.
        footnotes: Exclusions, selections and test details.
    """

    key: str
    title: str
    grid: pd.DataFrame
    column_name: str
    column_symbol: str
    caption: str
    footnotes: tuple[str, ...]


def loss_label(loss: str) -> str:
    """Display name of a loss registry name (the name itself when unknown)."""
    return LOSS_LABELS.get(loss, loss)


def loss_order(losses: Iterable[str]) -> list[str]:
    """The distinct losses in ``LOSS_LABELS`` order, unknown ones after, alphabetically."""
    present = {str(loss) for loss in losses if not pd.isna(loss)}
    return [loss for loss in LOSS_LABELS if loss in present] + sorted(present - set(LOSS_LABELS))


def format_value(value: object) -> str:
    """A config value as short text: ints without decimals, floats in %g."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def selected_trials(
    trials: pd.DataFrame, by: list[str], metric: str, describe: tuple[str, ...] = ()
) -> pd.DataFrame:
    """The trials each cell reports: completed, evaluated, of the validation-selected config.

    Within each group of ``by``, trials are grouped by the remaining ``CONFIG_COLUMNS``; the
    configuration with the highest mean ``best_val_acc`` wins (ties: more seeds, then the first
    in sort order). A configuration with no validation accuracy ranks last.

    Args:
        trials: Frame from ``load_study``.
        by: Columns that define a cell.
        metric: The accuracy column the cell reports; trials without it are not counted.
        describe: Config columns to name in ``config`` even where they do not vary in a cell.

    Returns:
        The chosen trials, with ``n_configs`` (configurations the cell held) and ``config``
        (the chosen values of the config columns that varied within the cell, as text).
    """
    usable = trials[(trials[load.STATUS] == rs.STATUS_COMPLETED) & trials[metric].notna()]
    if usable.empty:
        return usable.assign(n_configs=pd.Series(dtype="int64"), config=pd.Series(dtype="str"))
    config = [column for column in CONFIG_COLUMNS if column not in by and column in trials.columns]
    shown = _shown_columns(usable, by, config, describe)
    keyed = usable.assign(**{_CONFIG_KEY: usable[config].map(str).agg("|".join, axis=1)})
    selected = keyed.merge(_best_configs(keyed, by, metric), on=[*by, _CONFIG_KEY])
    selected["config"] = [_describe(trial, shown.loc[trial[load.RUN_ID]]) for _, trial in selected.iterrows()]
    return selected.drop(columns=_CONFIG_KEY)


def summarize(
    trials: pd.DataFrame, by: list[str], metric: str, describe: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Mean, std and count of ``metric`` per cell, over the seeds of the selected config.

    Every cell that has any trial (of any status) appears; cells without a usable trial have
    n = 0 and NaN statistics.

    Args:
        trials: Frame from ``load_study``.
        by: Columns that define a cell.
        metric: The accuracy column to summarize.
        describe: Config columns always named in ``config`` (see ``selected_trials``).

    Returns:
        Columns ``by`` + mean, std, n, n_configs, config, device_hours (mean per trial),
        sorted by ``by`` with losses in ``LOSS_LABELS`` order.
    """
    selected = selected_trials(trials, by, metric, describe)
    aggregated = (
        selected.groupby(by, dropna=False)
        .agg(
            mean=(metric, "mean"),
            std=(metric, "std"),
            n=(metric, "size"),
            n_configs=("n_configs", "first"),
            config=("config", "first"),
            device_hours=(rs.M_DEVICE_HOURS, "mean"),
        )
        .reset_index()
    )
    summary = trials[by].drop_duplicates().merge(aggregated, on=by, how="left")
    summary["n"] = summary["n"].fillna(0).astype("int64")
    summary["n_configs"] = summary["n_configs"].fillna(0).astype("int64")
    summary["config"] = summary["config"].fillna("").astype(str)
    return _sorted(summary, by)


def batch_size_table(trials: pd.DataFrame, metric: str = rs.M_TEST_AT_BEST_VAL) -> Table:
    """Accuracy per loss (rows) and batch size (columns), with FlatNCE − InfoNCE below.

    The difference row pairs FlatNCE and InfoNCE trials of the same seed within a column and
    runs ``scipy.stats.ttest_rel`` where they share at least ``MIN_PAIRED_SEEDS`` seeds;
    elsewhere it shows the difference of the two cell means without a p-value, and says why.

    Args:
        trials: Frame from ``load_study``.
        metric: Accuracy column to report.

    Returns:
        The table; the best cell of each column is marked.
    """
    by = [rs.P_LOSS, rs.P_BATCH_SIZE]
    summary = summarize(trials, by, metric)
    grid = _mark_best(_grid(summary, [rs.P_LOSS], rs.P_BATCH_SIZE), axis=0)
    footnotes = [f"Bold: best loss in each column. {_diff_footnote()}"]
    if {INFONCE, FLATNCE} <= set(trials[rs.P_LOSS]):
        grid.loc[_diff_label()] = None
        for batch_size in grid.columns:
            grid.at[_diff_label(), batch_size] = paired_difference(trials, metric, {rs.P_BATCH_SIZE: batch_size})
    return Table(
        key="batch_size",
        title="Accuracy vs batch size",
        grid=grid,
        column_name="batch size",
        column_symbol="B",
        caption=caption(trials, metric),
        footnotes=tuple(footnotes + _common_footnotes(trials, summary, by, metric)),
    )


def views_table(trials: pd.DataFrame, metric: str = rs.M_TEST_AT_BEST_VAL) -> Table:
    """Accuracy per loss (rows) and number of positive views M (columns), at equal epochs.

    Args:
        trials: Frame from ``load_study``.
        metric: Accuracy column to report.

    Returns:
        The table; the best cell of each column is marked. See ``equal_compute_table`` for the
        same comparison at equal encoder passes.
    """
    by = [rs.P_LOSS, rs.P_VIEWS]
    summary = summarize(trials, by, metric)
    return Table(
        key="views",
        title="Accuracy vs positive views M (equal epochs)",
        grid=_mark_best(_grid(summary, [rs.P_LOSS], rs.P_VIEWS), axis=0),
        column_name="positive views M",
        column_symbol="M",
        caption=caption(trials, metric),
        footnotes=tuple(["Bold: best loss in each column."] + _common_footnotes(trials, summary, by, metric)),
    )


def equal_compute_table(trials: pd.DataFrame, metric: str = rs.M_TEST_AT_BEST_VAL) -> Table:
    """Accuracy per loss (rows) at equal compute: columns are encoder passes per image, V × epochs.

    A 6-view run costs three times a 2-view run per epoch; comparing them at equal V × epochs
    instead of equal epochs is the fair comparison. The footnotes name the M of every cell and
    its mean device-hours per trial.

    Args:
        trials: Frame from ``load_study``.
        metric: Accuracy column to report.

    Returns:
        The table; the best cell of each column is marked.
    """
    by = [rs.P_LOSS, load.ENCODER_PASSES]
    summary = summarize(trials, by, metric, describe=(rs.P_VIEWS,))
    return Table(
        key="equal_compute",
        title="Accuracy at equal compute (encoder passes per image, V × epochs)",
        grid=_mark_best(_grid(summary, [rs.P_LOSS], load.ENCODER_PASSES), axis=0),
        column_name="encoder passes per image (V × epochs)",
        column_symbol="V·epochs",
        caption=caption(trials, metric),
        footnotes=tuple(
            ["Bold: best loss at each compute budget."]
            + _common_footnotes(trials, summary, by, metric, hours_unit=hours_unit(trials))
        ),
    )


def lr_table(trials: pd.DataFrame, metric: str = rs.M_TEST_AT_BEST_VAL) -> Table:
    """Accuracy per (loss, batch size) (rows) and base learning rate (columns).

    The last column, the spread, is the best minus the worst mean across learning rates: how
    much a poorly chosen lr costs that loss at that batch size.

    Args:
        trials: Frame from ``load_study``.
        metric: Accuracy column to report.

    Returns:
        The table; the best lr of each row is marked.
    """
    by = [rs.P_LOSS, rs.P_BATCH_SIZE, rs.P_LR]
    summary = summarize(trials, by, metric)
    grid = _mark_best(_grid(summary, [rs.P_LOSS, rs.P_BATCH_SIZE], rs.P_LR), axis=1)
    grid["spread (pp)"] = [_spread(row) for _, row in grid.iterrows()]
    return Table(
        key="lr",
        title="Accuracy vs learning rate (sensitivity)",
        grid=grid,
        column_name="base learning rate",
        column_symbol="lr",
        caption=caption(trials, metric),
        footnotes=tuple(
            ["Bold: best lr in each row. Spread: best minus worst mean over the lrs tried, in percentage points."]
            + _common_footnotes(trials, summary, by, metric)
        ),
    )


def reported_table(trials: pd.DataFrame, metric: str = rs.M_TEST_AT_BEST_VAL) -> Table:
    """Published numbers for the study's datasets and losses beside the matching measured cells.

    A reported number is matched with this study's trials of the same dataset, loss and batch
    size, at the epoch count closest to the source's (the most trials where the source gives
    none); lr and M are chosen on validation as in the other tables.

    Args:
        trials: Frame from ``load_study``.
        metric: Accuracy column of the measured side.

    Returns:
        One row per reported number, with the reported value, its provenance tag and source
        (as a footnote reference), the measured value and measured − reported.
    """
    by = [rs.P_DATASET, rs.P_LOSS, rs.P_BATCH_SIZE, rs.P_EPOCHS]
    summary = summarize(trials, by, metric)
    datasets = {_normalized(name) for name in trials[rs.P_DATASET].dropna()}
    losses = set(trials[rs.P_LOSS].dropna())
    entries = [entry for entry in REPORTED if _normalized(entry.dataset) in datasets and entry.loss in losses]
    sources = list(dict.fromkeys(_source_note(entry) for entry in entries))
    rows = [_reported_row(entry, summary, sources.index(_source_note(entry)) + 1) for entry in entries]
    index = ["dataset", "loss"]
    grid = pd.DataFrame(rows, columns=[*index, *_REPORTED_COLUMNS]).set_index(index).astype(object)
    tags = "; ".join(f"{tag}: {meaning}" for tag, meaning in PROVENANCE_TAGS.items())
    footnotes = [
        "Reported: copied from the cited sources, not measured here. Measured here: "
        f"{METRIC_LABELS[metric]}, this study. Tags: {tags}.",
        *(f"[{number}] {note}" for number, note in enumerate(sources, start=1)),
    ]
    if not entries:
        footnotes.append("No reported numbers are on file for this study's datasets and losses.")
    return Table(
        key="reported",
        title="Reported numbers beside the measured ones",
        grid=grid,
        column_name="",
        column_symbol="",
        caption=caption(trials, metric),
        footnotes=tuple(footnotes),
    )


def all_tables(trials: pd.DataFrame, metric: str = rs.M_TEST_AT_BEST_VAL) -> dict[str, Table]:
    """Every table of the report, by key, in reading order."""
    builders = (batch_size_table, views_table, equal_compute_table, lr_table, reported_table)
    tables = [build(trials, metric) for build in builders]
    return {table.key: table for table in tables}


def paired_difference(trials: pd.DataFrame, metric: str, where: dict[str, object]) -> Diff:
    """FlatNCE − InfoNCE within the trials matching ``where``, paired by seed.

    Args:
        trials: Frame from ``load_study``.
        metric: Accuracy column.
        where: Column values that select the cell, e.g. ``{"batch_size": 256}``.

    Returns:
        The mean paired difference and ``ttest_rel`` p-value where at least
        ``MIN_PAIRED_SEEDS`` seeds are common; otherwise the difference of the cell means with
        a note saying why there is no test.
    """
    mask = pd.Series(True, index=trials.index)
    for column, value in where.items():
        mask &= (trials[column] == value).fillna(False).astype(bool)
    by = [rs.P_LOSS, *where]
    chosen = selected_trials(trials[mask], by, metric)
    flat = _by_seed(chosen, FLATNCE, metric)
    info = _by_seed(chosen, INFONCE, metric)
    if flat.empty or info.empty:
        return Diff(math.nan, note="missing")
    common = flat.index.intersection(info.index)
    if len(common) < MIN_PAIRED_SEEDS:
        return Diff(
            flat.mean() - info.mean(),
            note=f"no test: {len(common)} common seeds, needs {MIN_PAIRED_SEEDS}",
        )
    differences = flat[common] - info[common]
    if differences.max() - differences.min() < _IDENTICAL:
        # ttest_rel divides by the spread of the differences; without one it has no answer.
        return Diff(float(differences.mean()), n_pairs=len(common), note="no test: identical differences")
    p_value = float(stats.ttest_rel(flat[common], info[common]).pvalue)
    return Diff(float(differences.mean()), p_value, len(common))


def caption(trials: pd.DataFrame, metric: str) -> str:
    """Names the study, dataset, backbone, epochs, evaluation protocol and code version."""
    mode = str(trials[load.EVAL_MODE].iloc[0])
    recipes = distinct_text(trials, load.RECIPE)
    protocol = EVAL_LABELS.get(mode, mode) + (f" (recipe {recipes})" if recipes != "—" else "")
    return (
        f"Study {trials[load.STUDY].iloc[0]} (preset {distinct_text(trials, load.PRESET)}); "
        f"dataset {distinct_text(trials, rs.P_DATASET)}; backbone {distinct_text(trials, rs.P_BACKBONE)}; "
        f"{distinct_text(trials, rs.P_EPOCHS)} pretraining epochs; evaluation: {protocol}; "
        f"cells: {METRIC_LABELS[metric]} in %, mean ± std over seeds (n = seeds); "
        f"code {distinct_text(trials, load.CODE_VERSION)}."
    )


def exclusion_note(trials: pd.DataFrame) -> str:
    """The footnote counting trials left out of every mean because they did not complete."""
    excluded = trials[trials[load.STATUS] != rs.STATUS_COMPLETED]
    if excluded.empty:
        return "Excluded: none (all trials completed)."
    first = [rs.STATUS_FAILED, rs.STATUS_EARLY_STOPPED]
    present = set(excluded[load.STATUS])
    order = [status for status in first if status in present] + sorted(present - set(first))
    return "Excluded from means: " + ", ".join(_status_count(excluded, status) for status in order) + "."


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


def _reported_row(entry: ReportedNumber, summary: pd.DataFrame, source_number: int) -> dict[str, object]:
    match = _closest_match(entry, summary)
    measured = None if match is None else Stat(float(match["mean"]), float(match["std"]), int(match["n"]))
    difference = None if match is None else Diff(float(match["mean"]) - entry.percent / 100)
    return {
        "dataset": entry.dataset,
        "loss": loss_label(entry.loss),
        "method (as reported)": entry.method,
        "B": "—" if entry.batch_size is None else str(entry.batch_size),
        "epochs": "—" if entry.epochs is None else str(entry.epochs),
        "reported (%)": entry.accuracy,
        "tag": entry.tag,
        "source": f"[{source_number}]",
        "measured here (%)": measured,
        "our setting": "not run" if match is None else _our_setting(match),
        "measured − reported (pp)": difference,
    }


def _closest_match(entry: ReportedNumber, summary: pd.DataFrame) -> pd.Series | None:
    candidates = summary[
        (summary[rs.P_DATASET].map(_normalized) == _normalized(entry.dataset))
        & (summary[rs.P_LOSS] == entry.loss)
        & (summary["n"] > 0)
    ]
    if entry.batch_size is not None:
        candidates = candidates[candidates[rs.P_BATCH_SIZE] == entry.batch_size]
    if candidates.empty:
        return None
    if entry.epochs is None:
        ranked = candidates.sort_values(["n", rs.P_EPOCHS], ascending=False)
    else:
        distance = (candidates[rs.P_EPOCHS].astype("float64") - entry.epochs).abs()
        ranked = candidates.assign(_distance=distance).sort_values(["_distance", "n"], ascending=[True, False])
    return ranked.iloc[0]


def _our_setting(match: pd.Series) -> str:
    parts = [f"B={format_value(match[rs.P_BATCH_SIZE])}", f"{format_value(match[rs.P_EPOCHS])} epochs"]
    return ", ".join(parts + ([match["config"]] if match["config"] else []))


def _source_note(entry: ReportedNumber) -> str:
    return f"{entry.source}. {entry.setting}." + (f" {entry.note}." if entry.note else "")


def _normalized(dataset: str) -> str:
    return "".join(character for character in str(dataset).lower() if character.isalnum())


def _by_seed(chosen: pd.DataFrame, loss: str, metric: str) -> pd.Series:
    rows = chosen[chosen[rs.P_LOSS] == loss]
    return rows.groupby(rs.P_SEED)[metric].mean()


def _diff_label() -> str:
    return f"{loss_label(FLATNCE)} − {loss_label(INFONCE)}"


def _diff_footnote() -> str:
    return (
        f"{_diff_label()}: percentage points; p from a paired t-test (scipy.stats.ttest_rel) over the "
        f"seeds both losses share, where they share at least {MIN_PAIRED_SEEDS}."
    )


def _grid(summary: pd.DataFrame, rows: list[str], column: str) -> pd.DataFrame:
    """Pivot a summary into a grid of ``Stat`` cells; cells no trial reached stay None."""
    labelled = summary.assign(**{rs.P_LOSS: summary[rs.P_LOSS].map(loss_label)})
    if len(rows) == 1:
        index = pd.Index(labelled[rows[0]].drop_duplicates().tolist(), name=rows[0], dtype=object)
    else:
        index = pd.MultiIndex.from_frame(labelled[rows].drop_duplicates())
    columns = pd.Index(labelled[column].drop_duplicates().sort_values().tolist(), name=column)
    grid = pd.DataFrame([[None] * len(columns)] * len(index), index=index, columns=columns, dtype=object)
    for _, cell in labelled.iterrows():
        key = cell[rows[0]] if len(rows) == 1 else tuple(cell[rows])
        grid.at[key, cell[column]] = Stat(float(cell["mean"]), float(cell["std"]), int(cell["n"]))
    return grid


def _mark_best(grid: pd.DataFrame, axis: int) -> pd.DataFrame:
    """Mark the highest mean of each column (axis 0) or row (axis 1) that compares several cells.

    Ties are all marked; a lone cell is not, since it was compared with nothing.
    """
    means = grid.map(lambda cell: cell.mean if isinstance(cell, Stat) and cell.n else math.nan).astype("float64")
    contested = means.notna().sum(axis=axis) >= 2
    best = means.eq(means.max(axis=axis), axis=1 - axis) & means.notna() & _broadcast(contested, means, axis)
    return grid.where(~best, grid.map(_with_best))


def _broadcast(flags: pd.Series, like: pd.DataFrame, axis: int) -> pd.DataFrame:
    """Per-column (axis 0) or per-row (axis 1) flags spread to the shape of ``like``."""
    if axis == 0:
        return pd.DataFrame([flags.to_numpy()] * len(like), index=like.index, columns=like.columns)
    return pd.DataFrame({column: flags.to_numpy() for column in like.columns}, index=like.index)


def _with_best(cell: Cell) -> Cell:
    return Stat(cell.mean, cell.std, cell.n, best=True) if isinstance(cell, Stat) else cell


def _spread(row: pd.Series) -> Diff | None:
    means = [cell.mean for cell in row if isinstance(cell, Stat) and cell.n]
    if len(means) < 2:
        return None
    return Diff(max(means) - min(means), signed=False)


def _common_footnotes(
    trials: pd.DataFrame, summary: pd.DataFrame, by: list[str], metric: str, hours_unit: str = ""
) -> list[str]:
    notes = [exclusion_note(trials)]
    notes += [note for note in (_missing_eval_note(trials, metric), _several_evals_note(trials)) if note]
    selection = _selection_note(summary, by, hours_unit)
    return notes + ([selection] if selection else [])


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
    label = ", ".join(_key_text(column, cell[column]) for column in by)
    text = f"{label}: {cell['config']}"
    if cell["n_configs"] > 1:
        text += f" (of {cell['n_configs']})"
    if hours_unit and not math.isnan(cell["device_hours"]):
        text += f", {cell['device_hours']:.3g} {hours_unit} per trial"
    return text


def _key_text(column: str, value: object) -> str:
    if column == rs.P_LOSS:
        return loss_label(str(value))
    return f"{CONFIG_SYMBOLS.get(column, column)}={format_value(value)}"


def _best_configs(keyed: pd.DataFrame, by: list[str], metric: str) -> pd.DataFrame:
    """Per cell, the config key with the best mean validation accuracy, and how many there were."""
    ranked = (
        keyed.groupby([*by, _CONFIG_KEY], dropna=False)
        .agg(**{_MEAN_VAL: (rs.M_BEST_VAL_ACC, "mean"), "_n": (metric, "size")})
        .reset_index()
    )
    ranked[_MEAN_VAL] = ranked[_MEAN_VAL].fillna(-math.inf)
    ranked = ranked.sort_values([_MEAN_VAL, "_n", _CONFIG_KEY], ascending=[False, False, True])
    counts = ranked.groupby(by, dropna=False).size().rename("n_configs").reset_index()
    return ranked.drop_duplicates(by)[[*by, _CONFIG_KEY]].merge(counts, on=by)


def _shown_columns(
    usable: pd.DataFrame, by: list[str], config: list[str], describe: tuple[str, ...]
) -> pd.DataFrame:
    """Per trial (indexed by run id), which config columns its cell's description names."""
    grouped = usable.groupby(by, dropna=False)
    # V follows from M and the loss, so naming it beside M adds nothing.
    named = [column for column in config if column != rs.P_VIEWS_PER_IMAGE]
    varies = {column: grouped[column].transform("nunique", dropna=False) > 1 for column in named}
    shown = pd.DataFrame({column: flags | (column in describe) for column, flags in varies.items()})
    return shown.set_axis(usable[load.RUN_ID].to_numpy())


def _describe(trial: pd.Series, shown: pd.Series) -> str:
    return ", ".join(f"{CONFIG_SYMBOLS[column]}={format_value(trial[column])}" for column in shown.index[shown])


def _sorted(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    rank = {loss: position for position, loss in enumerate(loss_order(frame[rs.P_LOSS]))}
    return frame.sort_values(
        by, key=lambda column: column.map(rank) if column.name == rs.P_LOSS else column, ignore_index=True
    )


def distinct_text(trials: pd.DataFrame, column: str) -> str:
    """The distinct values of a column as comma-separated text, or a dash where there are none."""
    values = sorted({format_value(value) for value in trials[column].dropna()})
    return ", ".join(values) if values else "—"


def hours_unit(trials: pd.DataFrame) -> str:
    """GPU-h or CPU-h, after the device the trials ran on (``device_hours`` is either)."""
    devices = set(trials[rs.P_DEVICE_TYPE].dropna())
    return {frozenset({"cuda"}): "GPU-h", frozenset({"cpu"}): "CPU-h"}.get(frozenset(devices), "device-h")
