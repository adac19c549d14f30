"""Accuracy against compute: what each loss and batch size reached, and at what cost.

The small-batch papers argue on compute: FlatCLR (Chen et al. 2021) for small batches at a fraction
of the compute, and dkobak/simclr-cifar10 reports the minutes to 83 % and 90 % kNN accuracy. Per
(loss, batch size) cell, over the seeds of the validation-selected configuration (the batch-size
table's cells), this gives the headline accuracy, the device-hours and wall clock a trial took,
and the device-hours and minutes until its validation kNN accuracy first reached each threshold,
each as a mean with its t interval over seeds (``statistics.mean_interval``, as the tables' cells).

Per-epoch cost is the trial's ``rs.M_ELAPSED`` (wall clock up to each epoch's end, restarts
included); runs logged before it was recorded use the running sum of ``rs.M_EPOCH_TIME`` (training
time alone), and the table says so. Device-hours follow from wall clock by the trial's own ratio
(``rs.M_DEVICE_HOURS`` / ``rs.M_WALL_CLOCK``: its workers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import load
from analysis.cells import Stat, Table
from analysis.labels import counted, hours_unit, loss_label, loss_order
from analysis.selection import seed_values, selected_trials
from analysis.statistics import LEVEL, mean_interval
from trainables.spec import run_schema as rs

CELL = [rs.P_LOSS, rs.P_BATCH_SIZE]
HISTORY_METRICS = (rs.M_VAL_KNN, rs.M_ELAPSED, rs.M_EPOCH_TIME)
VARIES = 1.05  # compute varies across cells where the costliest cell's mean is this many times the cheapest's
DEVICE_HOURS_AT = "device_hours_at"  # per-epoch columns of ``curves``
MINUTES_AT = "minutes_at"


@dataclass(frozen=True)
class Compute:
    """The selected trials' per-epoch curves and the thresholds read off them.

    Attributes:
        selected: The cells' trials (``selection.selected_trials`` over loss and batch size).
        curves: One row per selected trial and epoch with validation kNN accuracy: run_id, step,
            val_knn_acc, ``DEVICE_HOURS_AT`` and ``MINUTES_AT`` (the cost of reaching that epoch).
        thresholds: Validation kNN accuracies the time-to columns read, as fractions.
        summed_epochs: Run ids whose cost is the sum of epoch training times (no ``rs.M_ELAPSED``).
    """

    selected: pd.DataFrame
    curves: pd.DataFrame
    thresholds: tuple[float, ...]
    summed_epochs: frozenset[str]


def compute_varies(trials: pd.DataFrame, metric: str = rs.M_TEST_AT_BEST_VAL) -> bool:
    """Whether the cells differ in compute: in batch size (another number of steps an epoch, each
    of another cost, whether or not one machine's timings show it), or in mean device-hours per
    trial by more than ``VARIES``."""
    selected = selected_trials(trials, CELL, metric)
    if selected[rs.P_BATCH_SIZE].nunique() > 1:
        return True
    hours = selected.groupby(CELL)[rs.M_DEVICE_HOURS].mean().dropna()
    return len(hours) > 1 and hours.min() > 0 and hours.max() / hours.min() > VARIES


def load_compute(
    trials: pd.DataFrame, tracking_uri: str | None, metric: str = rs.M_TEST_AT_BEST_VAL, thresholds: Sequence[float] | None = None
) -> Compute:
    """The per-epoch cost curves of the cells' trials, read from MLflow; ``thresholds`` default to
    ``default_thresholds``."""
    selected = selected_trials(trials, CELL, metric)
    history = load.load_history(list(selected[load.RUN_ID]), HISTORY_METRICS, tracking_uri)
    curves, summed = _curves(history, selected)
    chosen = tuple(thresholds) if thresholds else default_thresholds(selected)
    return Compute(selected, curves, chosen, frozenset(summed))


def default_thresholds(selected: pd.DataFrame) -> tuple[float, ...]:
    """Two levels every cell reached on average: the lowest of the cells' mean best validation kNN
    accuracy, and 90 % of it, each rounded down to a whole percent."""
    top = selected.groupby(CELL)[rs.M_BEST_VAL_KNN].mean().min()
    if pd.isna(top):
        return ()
    return tuple(sorted({math.floor(90 * top) / 100, math.floor(100 * top) / 100}))


def reached(compute: Compute, threshold: float) -> pd.DataFrame:
    """Per selected trial, the cost of its first epoch at or above ``threshold`` (NaN where it never got there)."""
    above = compute.curves[compute.curves[rs.M_VAL_KNN] >= threshold]
    first = above.sort_values("step").drop_duplicates(load.RUN_ID)[[load.RUN_ID, DEVICE_HOURS_AT, MINUTES_AT]]
    return compute.selected[[load.RUN_ID, *CELL, rs.P_SEED]].merge(first, on=load.RUN_ID, how="left")


def compute_table(compute: Compute, trials: pd.DataFrame, metric: str = rs.M_TEST_AT_BEST_VAL) -> Table:
    """Rows: loss and batch size; columns: the headline, the cost per trial, the cost to each threshold."""
    unit = hours_unit(trials)
    selected = compute.selected.assign(_minutes=compute.selected[rs.M_WALL_CLOCK] / 60)
    rows: dict[tuple[str, int], dict[str, object]] = {}
    for (loss, batch), cell in selected.groupby(CELL, sort=False):
        row: dict[str, object] = {"test accuracy (%)": _accuracy(seed_values(cell, metric))}
        row[f"{unit} per trial"] = _cost(seed_values(cell, rs.M_DEVICE_HOURS), "{:.3g}")
        row["min per trial"] = _cost(seed_values(cell, "_minutes"), "{:.1f}")
        rows[(loss, int(batch))] = row
    for threshold in compute.thresholds:
        first = reached(compute, threshold)
        for (loss, batch), cell in first.groupby(CELL, sort=False):
            row = rows[(loss, int(batch))]
            row[f"{unit} to kNN ≥ {100 * threshold:.0f} %"] = _cost(seed_values(cell, DEVICE_HOURS_AT), "{:.3g}", len(cell))
            row[f"min to kNN ≥ {100 * threshold:.0f} %"] = _cost(seed_values(cell, MINUTES_AT), "{:.1f}", len(cell))
    rank = {loss: position for position, loss in enumerate(loss_order(loss for loss, _ in rows))}
    keys = sorted(rows, key=lambda key: (rank[key[0]], key[1]))
    index = pd.MultiIndex.from_tuples([(loss_label(loss), batch) for loss, batch in keys], names=[rs.P_LOSS, rs.P_BATCH_SIZE])
    grid = pd.DataFrame([rows[key] for key in keys], index=index, dtype=object)
    grid = grid.astype(object).where(grid.notna(), None)
    return Table("accuracy_vs_compute", "Accuracy against compute", grid, "", "", _caption(unit), _footnotes(compute, unit))


def _curves(history: pd.DataFrame, selected: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    wide = history.pivot_table(index=[load.RUN_ID, "step"], columns="metric", values="value").reset_index()
    for column in HISTORY_METRICS:
        if column not in wide:
            wide[column] = np.nan
    wide = wide.sort_values([load.RUN_ID, "step"])
    summed_time = wide.groupby(load.RUN_ID)[rs.M_EPOCH_TIME].cumsum()
    summed = sorted(set(wide.loc[wide[rs.M_ELAPSED].isna(), load.RUN_ID]))
    seconds = wide[rs.M_ELAPSED].where(wide[load.RUN_ID].map(lambda run: run not in summed), summed_time)
    workers = selected.set_index(load.RUN_ID).eval(f"{rs.M_DEVICE_HOURS} * 3600 / {rs.M_WALL_CLOCK}")
    wide[DEVICE_HOURS_AT] = seconds * wide[load.RUN_ID].map(workers) / 3600
    wide[MINUTES_AT] = seconds / 60
    curves = wide[wide[rs.M_VAL_KNN].notna()][[load.RUN_ID, "step", rs.M_VAL_KNN, DEVICE_HOURS_AT, MINUTES_AT]]
    return curves.reset_index(drop=True), summed


def _accuracy(seeds: pd.Series) -> Stat:
    return Stat(seeds.mean(), seeds.std(), len(seeds), mean_interval(seeds), values=tuple(seeds.items()))


def _cost(seeds: pd.Series, number: str, of: int | None = None) -> str | None:
    """``mean [low, high] (n=k)``; with ``of``, how many of the cell's seeds got there."""
    present = seeds.dropna()
    if present.empty:
        return f"not reached (0 of {of} seeds)" if of else None
    interval = mean_interval(present)
    span = f" [{number.format(interval.low)}, {number.format(interval.high)}]" if interval.exists else ""
    count = f"{len(present)} of {of} seeds" if of and len(present) < of else f"n={len(present)}"
    return f"{number.format(present.mean())}{span} ({count})"


def _caption(unit: str) -> str:
    return (
        f"Per loss and batch size, the validation-selected configuration's seeds: test accuracy at the validation-selected "
        f"epoch, the {unit} and wall-clock minutes a trial's pretraining took, and the {unit} and minutes until its "
        f"validation kNN accuracy first reached each level. Mean [{100 * LEVEL:g} % t interval over seeds]."
    )


def _footnotes(compute: Compute, unit: str) -> tuple[str, ...]:
    notes = [
        "Levels: the lowest of the cells' mean best validation kNN accuracies, and 90 % of it, rounded down; "
        "validation kNN is measured only on evaluation epochs, so a time to a level is that of the first evaluated epoch at or above it.",
        f"{unit}: workers × wall clock ({'GPU' if unit == 'GPU-h' else 'CPU'} workers); a trial's time excludes its evaluation.",
    ]
    if compute.summed_epochs:
        notes.append(
            f"{counted(len(compute.summed_epochs), 'trial')} logged no per-epoch elapsed time (an older store): "
            "their cost to a level is the sum of their epochs' training times, without validation and checkpoints."
        )
    return tuple(notes)
