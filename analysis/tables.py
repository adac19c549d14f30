"""Which tables a study's report holds: one per axis the study varied, and the published numbers.

A table over an axis that did not vary is one column repeating the batch-size table, so it is
left out; the batch-size table is always there, since it is the loss comparison itself.
"""

from __future__ import annotations

import pandas as pd

from analysis import load
from analysis.cells import Table
from analysis.loss_tables import AXES, loss_axis_table
from analysis.reported_table import effects_table, has_counterparts, reported_table
from trainables.spec import run_schema as rs


def varying_axes(trials: pd.DataFrame) -> list[str]:
    """The keys of ``AXES`` worth a table for these trials, in reading order."""
    completed = trials[trials[load.STATUS] == rs.STATUS_COMPLETED]
    views_vary = completed[rs.P_VIEWS].nunique() > 1
    passes_vary = completed[load.ENCODER_PASSES].nunique() > 1
    lr_varies = bool((completed.groupby([rs.P_LOSS, rs.P_BATCH_SIZE])[rs.P_LR].nunique() > 1).any())
    shown = {"batch_size": True, "views": views_vary, "equal_compute": views_vary and passes_vary, "lr": lr_varies}
    return [key for key in AXES if shown[key]]


def all_tables(
    trials: pd.DataFrame, metric: str = rs.M_TEST_AT_BEST_VAL, baselines: pd.DataFrame | None = None
) -> dict[str, Table]:
    """Every table of the report, by key, in reading order.

    Args:
        trials: Frame from ``load_study``.
        metric: Accuracy column to report.
        baselines: Frame from ``load_baselines`` for the random-init rows.

    Returns:
        The loss-by-axis tables of ``varying_axes``, then the papers' effects beside this study's
        and the reported numbers, where any has a measured counterpart in the study.
    """
    tables = {key: loss_axis_table(trials, AXES[key], metric, baselines) for key in varying_axes(trials)}
    effects = effects_table(trials, metric)
    if effects is not None:
        tables["reported_effects"] = effects
    if has_counterparts(trials, metric):
        tables["reported"] = reported_table(trials, metric)
    return tables
