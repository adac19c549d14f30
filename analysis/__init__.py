"""Comparison tables and plots of NCE studies, read from their MLflow runs.

``load_study`` reads a study's MLflow tree into one row per trial and ``load_baselines`` its
random-init baseline runs; ``loss_tables`` turns them into the papers' comparisons (accuracy
vs batch size, positive views, compute and learning rate) with the ``statistics`` a reviewer
expects, ``reported_table`` puts the published numbers beside ours, ``conditions`` lists where
the runs depart from the paper; ``write_report`` writes all of them, with the plots and one
HTML page, and logs them to the study's MLflow run.
"""

from __future__ import annotations

from analysis.cells import Diff, Stat, Table
from analysis.load import StudyNotFoundError, load_baselines, load_history, load_study
from analysis.loss_tables import AXES, batch_size_table, equal_compute_table, loss_axis_table, lr_table, views_table
from analysis.report import Report, write_report
from analysis.reported_table import reported_table
from analysis.tables import all_tables

__all__ = [
    "AXES",
    "Diff",
    "Report",
    "Stat",
    "StudyNotFoundError",
    "Table",
    "all_tables",
    "batch_size_table",
    "equal_compute_table",
    "load_baselines",
    "load_history",
    "load_study",
    "loss_axis_table",
    "lr_table",
    "reported_table",
    "views_table",
    "write_report",
]
