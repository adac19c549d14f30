"""A study's full report: every table and plot on disk, one HTML page, logged to MLflow.

The page opens with the Claims section (each claim of the study's paper, judged on its runs:
``analysis/claims.py``), then a summary (trials, wall-clock, the MLflow study run, the code) and
the Conditions under which the numbers were measured, then the tables and plots; where compute
differs across cells, accuracy against compute (``analysis/compute.py``) among them.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from matplotlib.figure import Figure
from mlflow import MlflowClient

from analysis import load, plots, render
from analysis.cells import Table
from analysis.claims import ClaimResult, evaluate_claims, family_note, recorded_claims
from analysis.compute import compute_table, compute_varies, load_compute
from analysis.conditions import conditions
from analysis.labels import (
    EVAL_LABELS,
    commits_text,
    counted,
    distinct_text,
    hours_unit,
)
from analysis.load import STUDY, STUDY_RUN_ID, load_baselines, load_study
from analysis.tables import all_tables
from trainables.integration.tracking import redact_url, run_url
from trainables.spec import run_schema as rs

TABLE_FORMATS = ("md", "csv", "latex")
TABLES_DIR = "tables"
PLOTS_DIR = "plots"
HTML_NAME = "report.html"
SUMMARY_NAME = "summary.md"
ARTIFACT_DIR = "report"  # where the files appear under the study run in the MLflow UI


@dataclass(frozen=True)
class Report:
    """What ``write_report`` wrote.

    Attributes:
        out_dir: The folder holding everything below.
        tables: Table files (md, csv, tex), by table key.
        plots: Plot files (png, svg), by plot stem.
        html: The page with the summary, conditions, tables and plots.
        summary: The Claims, summary and Conditions sections as Markdown.
        claims_markdown: The Claims section as Markdown, for printing.
        batch_size_markdown: The loss × batch-size table as Markdown, for printing.
        artifact_uri: Where the files were logged in MLflow, or None where they were not.
    """

    out_dir: Path
    tables: dict[str, list[Path]]
    plots: dict[str, list[Path]]
    html: Path
    summary: Path
    claims_markdown: str
    batch_size_markdown: str
    artifact_uri: str | None

    @property
    def paths(self) -> list[Path]:
        """Every file written, tables first, the HTML page last."""
        files = [path for paths in self.tables.values() for path in paths]
        return files + [path for paths in self.plots.values() for path in paths] + [self.summary, self.html]


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
    baselines = load_baselines(study, tracking_uri, eval_mode=eval_mode)
    tables = all_tables(trials, metric, baselines)
    figures = plots.study_figures(trials, tracking_uri, metric, baselines=baselines)
    if compute_varies(trials, metric):  # which loss and batch size reach an accuracy soonest
        found = load_compute(trials, tracking_uri, metric)
        reported = {key: tables.pop(key) for key in ["reported"] if key in tables}  # the published numbers stay last
        tables |= {"accuracy_vs_compute": compute_table(found, trials, metric)} | reported
        figures = {"accuracy_vs_compute": plots.compute_figure(found, trials, metric)} | figures
    out_dir.mkdir(parents=True, exist_ok=True)
    table_files = {key: write_table(table, out_dir / TABLES_DIR) for key, table in tables.items()}
    plot_files = {stem: plots.save(figure, out_dir / PLOTS_DIR, stem) for stem, figure in figures.items()}
    uri = tracking_uri or mlflow.get_tracking_uri()
    items, lines = summary_items(trials, baselines, uri), conditions(trials, metric)
    claims, notes = judged_claims(trials, baselines, uri, metric)
    summary = write_text(out_dir / SUMMARY_NAME, render.summary_markdown(heading(trials), items, lines, claims, notes))
    html = write_text(out_dir / HTML_NAME, page(trials, tables, figures, items, lines, claims, notes))
    claims_md, batch_md = render.claims_markdown(claims, notes), render.to_markdown(tables["batch_size"])
    report = Report(out_dir, table_files, plot_files, html, summary, claims_md, batch_md, None)
    if not log_to_mlflow:
        return report
    artifact_uri = _log(report, str(trials[STUDY_RUN_ID].iloc[0]), tracking_uri)
    return dataclasses.replace(report, artifact_uri=artifact_uri)


def judged_claims(
    trials: pd.DataFrame, baselines: pd.DataFrame, tracking_uri: str, metric: str = rs.M_TEST_AT_BEST_VAL
) -> tuple[list[ClaimResult], list[str]]:
    """The study's recorded claims judged on its runs, and the Claims section's notes."""
    claims, provenance = recorded_claims(str(trials[STUDY_RUN_ID].iloc[0]), tracking_uri)
    results = evaluate_claims(claims, trials, baselines, metric)
    return results, [provenance, family_note(results)]


def write_table(table: Table, out_dir: Path, formats: tuple[str, ...] = TABLE_FORMATS) -> list[Path]:
    """Write one table as ``<key>.<ext>`` in each format; returns the paths."""
    return [
        write_text(out_dir / f"{table.key}.{render.EXTENSIONS[name]}", render.FORMATS[name](table))
        for name in formats
    ]


def write_text(path: Path, text: str) -> Path:
    """Write a file atomically (a temporary file beside it, then renamed), so no reader sees half of it;
    readable as the user's umask allows any new file to be (mkstemp's own 0600 would hide a report
    on shared storage from everyone else)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def heading(trials: pd.DataFrame) -> str:
    """The report's title."""
    return f"NCE study {trials[STUDY].iloc[0]}"


def summary_items(trials: pd.DataFrame, baselines: pd.DataFrame, tracking_uri: str) -> list[tuple[str, str]]:
    """The report's header: what ran, how long it took, where it lives in MLflow, which code."""
    mode = str(trials[load.EVAL_MODE].iloc[0])
    recipes = distinct_text(trials, load.RECIPE)
    return [
        ("Preset", distinct_text(trials, load.PRESET)),
        ("Trials", _trial_counts(trials)),
        ("Wall-clock", _wall_clock(trials)),
        ("Compute", _compute(trials)),
        ("Evaluation", EVAL_LABELS.get(mode, mode) + ("" if recipes == "—" else f", recipe {recipes}")),
        ("Random-init baseline", counted(int(baselines[rs.M_TEST_AT_BEST_VAL].notna().sum()), "run") + " recorded"),
        ("MLflow study run", study_run_link(trials, tracking_uri)),
        ("Code", commits_text(trials, load.CODE_VERSION)),
    ]


def study_run_link(trials: pd.DataFrame, tracking_uri: str) -> str:
    """A link to the study run in the MLflow UI where the store is a server, else its id and store;
    never with the URI's password (a report is shared)."""
    run_id, experiment = trials[STUDY_RUN_ID].iloc[0], trials[load.EXPERIMENT_ID].iloc[0]
    where = redact_url(tracking_uri)
    if tracking_uri.startswith(("http://", "https://")):
        return run_url(where, experiment, run_id)
    return f"run {run_id} (experiment {experiment}) in {where}"


def _trial_counts(trials: pd.DataFrame) -> str:
    counts = trials[load.STATUS].value_counts()
    parts = ", ".join(f"{count} {status.replace('_', '-')}" for status, count in counts.items())
    return f"{len(trials)} ({parts})"


def _wall_clock(trials: pd.DataFrame) -> str:
    start, end = trials[load.STUDY_START].iloc[0], trials[load.STUDY_END].iloc[0]
    source = "study run"
    if pd.isna(end):
        start, end, source = trials[load.START_TIME].min(), trials[load.END_TIME].max(), "first trial start to last end"
    if pd.isna(start) or pd.isna(end):
        return "unknown (the study has not ended)"
    minutes = (end - start).total_seconds() / 60
    text = f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
    return f"{text} ({source}, {start:%Y-%m-%d %H:%M} to {end:%H:%M} UTC)"


def _compute(trials: pd.DataFrame) -> str:
    hours = trials[rs.M_DEVICE_HOURS].sum(min_count=1)
    return "not recorded" if pd.isna(hours) else f"{hours:.3g} {hours_unit(trials)} of pretraining"


def page(
    trials: pd.DataFrame,
    tables: dict[str, Table],
    figures: dict[str, Figure],
    summary: list[tuple[str, str]],
    condition_lines: list[str],
    claims: list[ClaimResult] = (),
    claims_notes: list[str] = (),
) -> str:
    """The HTML page: claims, summary, conditions, every table and plot of a study."""
    rendered = [
        render.Figure(plots.PLOTS[stem][0], plots.PLOTS[stem][1], plots.png_bytes(figure))
        for stem, figure in figures.items()
    ]
    return render.html_page(heading(trials), summary, condition_lines, list(tables.values()), rendered, claims, claims_notes)


def _log(report: Report, study_run_id: str, tracking_uri: str | None) -> str:
    client = MlflowClient(tracking_uri or mlflow.get_tracking_uri())
    for path in report.paths:
        folder = path.parent.relative_to(report.out_dir).as_posix()
        client.log_artifact(study_run_id, str(path), ARTIFACT_DIR if folder == "." else f"{ARTIFACT_DIR}/{folder}")
    return f"{client.get_run(study_run_id).info.artifact_uri}/{ARTIFACT_DIR}"
