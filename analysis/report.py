"""A study's full report: every table and plot on disk, one HTML page, logged to MLflow."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from matplotlib.figure import Figure
from mlflow import MlflowClient

from analysis import plots, render
from analysis.load import STUDY, STUDY_RUN_ID, load_study
from analysis.tables import Table, all_tables
from trainables import run_schema as rs

TABLE_FORMATS = ("md", "csv", "latex")
TABLES_DIR = "tables"
PLOTS_DIR = "plots"
HTML_NAME = "report.html"
ARTIFACT_DIR = "report"  # where the files appear under the study run in the MLflow UI


@dataclass(frozen=True)
class Report:
    """What ``write_report`` wrote.

    Attributes:
        out_dir: The folder holding everything below.
        tables: Table files (md, csv, tex), by table key.
        plots: Plot files (png, svg), by plot stem.
        html: The page with all tables and plots.
        batch_size_markdown: The loss × batch-size table as Markdown, for printing.
        artifact_uri: Where the files were logged in MLflow, or None where they were not.
    """

    out_dir: Path
    tables: dict[str, list[Path]]
    plots: dict[str, list[Path]]
    html: Path
    batch_size_markdown: str
    artifact_uri: str | None

    @property
    def paths(self) -> list[Path]:
        """Every file written, tables first, the HTML page last."""
        files = [path for paths in self.tables.values() for path in paths]
        return files + [path for paths in self.plots.values() for path in paths] + [self.html]


def write_report(
    study: str,
    tracking_uri: str | None,
    out_dir: Path,
    *,
    log_to_mlflow: bool = True,
    eval_mode: str = "linear",
    metric: str = rs.M_TEST_AT_BEST_VAL,
) -> Report:
    """Write all tables (md, csv, tex), plots (png, svg) and ``report.html`` for a study.

    With ``log_to_mlflow`` the files are also logged as artifacts of the study's parent run,
    under ``report/``, so that they can be browsed in the MLflow UI.

    Args:
        study: The study's name or its study run id.
        tracking_uri: MLflow tracking URI; None uses MLflow's current one.
        out_dir: Folder to write into (created if needed); ``tables/`` and ``plots/`` go below it.
        log_to_mlflow: Whether to log the files to the study run.
        eval_mode: Which evaluation the cells report: linear, finetune or knn.
        metric: The accuracy reported; only the default is selected on validation.

    Returns:
        The paths written and the batch-size table as Markdown.
    """
    trials = load_study(study, tracking_uri, eval_mode=eval_mode)
    tables = all_tables(trials, metric)
    figures = plots.study_figures(trials, tracking_uri, metric)
    out_dir.mkdir(parents=True, exist_ok=True)
    table_files = {key: write_table(table, out_dir / TABLES_DIR) for key, table in tables.items()}
    plot_files = {stem: plots.save(figure, out_dir / PLOTS_DIR, stem) for stem, figure in figures.items()}
    html = out_dir / HTML_NAME
    html.write_text(page(trials, tables, figures), encoding="utf-8")
    report = Report(out_dir, table_files, plot_files, html, render.to_markdown(tables["batch_size"]), None)
    if not log_to_mlflow:
        return report
    artifact_uri = _log(report, str(trials[STUDY_RUN_ID].iloc[0]), tracking_uri)
    return Report(out_dir, table_files, plot_files, html, report.batch_size_markdown, artifact_uri)


def write_table(table: Table, out_dir: Path, formats: tuple[str, ...] = TABLE_FORMATS) -> list[Path]:
    """Write one table as ``<key>.<ext>`` in each format; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in formats:
        path = out_dir / f"{table.key}.{render.EXTENSIONS[name]}"
        path.write_text(render.FORMATS[name](table), encoding="utf-8")
        paths.append(path)
    return paths


def page(trials: pd.DataFrame, tables: dict[str, Table], figures: dict[str, Figure]) -> str:
    """The HTML page with every table and plot of a study."""
    rendered = [
        render.Figure(plots.PLOTS[stem][0], plots.PLOTS[stem][1], plots.png_bytes(figure))
        for stem, figure in figures.items()
    ]
    return render.html_page(f"NCE study {trials[STUDY].iloc[0]}", list(tables.values()), rendered)


def _log(report: Report, study_run_id: str, tracking_uri: str | None) -> str:
    client = MlflowClient(tracking_uri or mlflow.get_tracking_uri())
    for path in report.paths:
        folder = path.parent.relative_to(report.out_dir).as_posix()
        client.log_artifact(study_run_id, str(path), ARTIFACT_DIR if folder == "." else f"{ARTIFACT_DIR}/{folder}")
    return f"{client.get_run(study_run_id).info.artifact_uri}/{ARTIFACT_DIR}"
