"""The table of published numbers beside the matching cells measured in this study."""

from __future__ import annotations

import pandas as pd

from analysis import notes
from analysis.cells import Diff, Stat, Table
from analysis.labels import METRIC_LABELS, format_value, loss_label
from analysis.reported import PROVENANCE_TAGS, REPORTED, ReportedNumber
from analysis.selection import summarize
from analysis.statistics import mean_interval
from trainables.spec import run_schema as rs

COLUMNS = (
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


def has_counterparts(trials: pd.DataFrame, metric: str = rs.M_TEST_AT_BEST_VAL) -> bool:
    """Whether any reported number has a measured cell in this study (else the table is left out)."""
    summary = summarize(trials, [rs.P_DATASET, rs.P_LOSS, rs.P_BATCH_SIZE, rs.P_EPOCHS], metric)
    return any(_closest_match(entry, summary) is not None for entry in reported_entries(trials))


def reported_entries(trials: pd.DataFrame) -> list[ReportedNumber]:
    """The published numbers for the study's datasets and losses."""
    datasets = {_normalized(name) for name in trials[rs.P_DATASET].dropna()}
    losses = set(trials[rs.P_LOSS].dropna())
    return [entry for entry in REPORTED if _normalized(entry.dataset) in datasets and entry.loss in losses]


def reported_table(trials: pd.DataFrame, metric: str = rs.M_TEST_AT_BEST_VAL) -> Table:
    """Published numbers for the study's datasets and losses beside the matching measured cells.

    A reported number is matched with this study's trials of the same dataset, loss and batch
    size, at the epoch count closest to the source's (the most trials where the source gives
    none); lr and M are chosen on validation as in the other tables.

    Args:
        trials: Frame from ``load_study``.
        metric: Accuracy column of the measured side.

    Returns:
        One row per reported number with a measured counterpart here: the reported value, its
        provenance tag and source (as a footnote reference), the measured value and measured −
        reported. Reported numbers without one are counted in a footnote, not listed.
    """
    by = [rs.P_DATASET, rs.P_LOSS, rs.P_BATCH_SIZE, rs.P_EPOCHS]
    summary = summarize(trials, by, metric)
    pairs = [(entry, _closest_match(entry, summary)) for entry in reported_entries(trials)]
    matched = [(entry, match) for entry, match in pairs if match is not None]
    unmatched = [entry for entry, match in pairs if match is None]
    entries = [entry for entry, _ in matched]
    sources = list(dict.fromkeys(_source_note(entry) for entry in entries))
    rows = [_reported_row(entry, match, sources.index(_source_note(entry)) + 1) for entry, match in matched]
    index = ["dataset", "loss"]
    grid = pd.DataFrame(rows, columns=[*index, *COLUMNS]).set_index(index).astype(object)
    tags = "; ".join(f"{tag}: {meaning}" for tag, meaning in PROVENANCE_TAGS.items())
    footnotes = [
        "Reported: copied from the cited sources, not measured here. Measured here: "
        f"{METRIC_LABELS[metric]}, this study. Tags: {tags}.",
        *(f"[{number}] {note}" for number, note in enumerate(sources, start=1)),
    ]
    if unmatched:
        settings = ", ".join(sorted({f"{loss_label(entry.loss)} at B={entry.batch_size or '—'}" for entry in unmatched}))
        footnotes.append(f"Not listed: {len(unmatched)} reported numbers with no measured cell here ({settings}).")
    return Table(
        key="reported",
        title="Reported numbers beside the measured ones",
        grid=grid,
        column_name="",
        column_symbol="",
        caption=notes.caption(trials, metric),
        footnotes=tuple(footnotes),
    )


def _reported_row(entry: ReportedNumber, match: pd.Series, source_number: int) -> dict[str, object]:
    measured = Stat(float(match["mean"]), float(match["std"]), int(match["n"]), mean_interval(match["seeds"]))
    difference = Diff(float(match["mean"]) - entry.percent / 100)
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
        "our setting": _our_setting(match),
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
