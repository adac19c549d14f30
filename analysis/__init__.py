"""Comparison tables and plots of NCE studies, read from their MLflow runs.

``load_study`` reads a study's MLflow tree into one row per trial; the table functions turn
that frame into the papers' comparisons (accuracy vs batch size, positive views, compute and
learning rate, and the published numbers beside ours); ``write_report`` writes all of them,
with the plots and one HTML page, and logs them to the study's MLflow run.
"""

from __future__ import annotations

from analysis.load import StudyNotFoundError, load_history, load_study
from analysis.report import Report, write_report
from analysis.tables import (
    Table,
    all_tables,
    batch_size_table,
    equal_compute_table,
    lr_table,
    reported_table,
    views_table,
)

__all__ = [
    "Report",
    "StudyNotFoundError",
    "Table",
    "all_tables",
    "batch_size_table",
    "equal_compute_table",
    "load_history",
    "load_study",
    "lr_table",
    "reported_table",
    "views_table",
    "write_report",
]
