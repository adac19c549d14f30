"""Comparison tables and plots of NCE studies, read from their MLflow runs.

``load_study`` reads a study's MLflow tree into one row per trial and ``load_baselines`` its
random-init baseline runs; ``loss_tables`` turns them into the papers' comparisons (accuracy
vs batch size, positive views, compute and learning rate) with the ``statistics`` a reviewer
expects, ``reported_table`` puts the published numbers beside ours, ``conditions`` lists where
the runs depart from the paper; ``write_report`` writes all of them, with the plots and one
HTML page, and logs them to the study's MLflow run.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from trainables.spec.lazy import by_name, lazy_getattr

# Submodule -> the names it exports, each imported on first use: ``python -m analysis --help`` reads
# this package without importing pandas or MLflow.
_EXPORTS = by_name(
    {
        "cells": ("Diff", "Stat", "Table"),
        "load": ("StudyNotFoundError", "load_baselines", "load_history", "load_study"),
        "loss_tables": ("AXES", "batch_size_table", "equal_compute_table", "loss_axis_table", "lr_table", "views_table"),
        "report": ("Report", "write_report"),
        "reported_table": ("reported_table",),
        "tables": ("all_tables",),
    }
)
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)


class _Package(types.ModuleType):
    """Keeps an exported function whose name is also its submodule's (``reported_table``): importing
    the submodule binds it on the package, which would otherwise hide the function."""

    def __setattr__(self, name: str, value: Any) -> None:
        if not (name in _EXPORTS and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
