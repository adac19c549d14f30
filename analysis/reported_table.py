"""The tables of published numbers beside this study's: the papers' effects beside ours, and their
absolute numbers beside ours, compared only where the conditions match.

A short CPU study (8 epochs of a small CNN) measures absolute accuracies tens of points below a
paper's 100-500 epochs of a ResNet; set side by side they read as a failure to reproduce. What
such a study can test is the papers' *relative* claim: FlatNCE (or DCL, its gradient twin) minus
InfoNCE at each batch size, measured on the same seeds.
"""

from __future__ import annotations

import pandas as pd

from analysis import notes
from analysis.cells import Diff, Stat, Table
from analysis.labels import METRIC_LABELS, REFERENCE_LOSS, format_value, loss_label
from analysis.reported import PROVENANCE_TAGS, REPORTED, ReportedNumber
from analysis.selection import seed_values, selected_trials, summarize
from analysis.statistics import Verdict, mean_interval, paired_differences, verdicts
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
    "conditions",
    "measured − reported (pp)",
)
EFFECT_COLUMNS = ("the paper's comparison", "the paper (pp)", "source", "epochs there", "here (pp)", "epochs here")


BACKBONE = rs.P_BACKBONE
BY = [rs.P_DATASET, rs.P_LOSS, rs.P_BATCH_SIZE, rs.P_EPOCHS, BACKBONE]


def has_counterparts(trials: pd.DataFrame, metric: str = rs.M_TEST_AT_BEST_VAL) -> bool:
    """Whether any reported number has a measured cell in this study (else the table is left out)."""
    summary = summarize(trials, BY, metric)
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
    summary = summarize(trials, BY, metric)
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
        f"{METRIC_LABELS[metric]}, this study. Tags: {tags}. Measured − reported is given only where the "
        "conditions match (epochs and backbone); elsewhere the absolute numbers measure the conditions, "
        "and the papers' effects table compares what such a study can.",
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
    departures = _departures(entry, match)
    difference = Diff(float(match["mean"]) - entry.percent / 100) if not departures else None
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
        "conditions": "match" if not departures else f"differ: {departures}",
        "measured − reported (pp)": difference,
    }


def _departures(entry: ReportedNumber, match: pd.Series) -> str:
    """Where the source's setting and this cell's differ (epochs, backbone), in words; empty where they match."""
    parts = []
    if entry.epochs is not None and int(match[rs.P_EPOCHS]) != entry.epochs:
        parts.append(f"{format_value(match[rs.P_EPOCHS])} epochs against {entry.epochs}")
    backbone = str(match[BACKBONE])
    if _normalized(backbone) not in _normalized(entry.setting):
        parts.append(f"backbone {backbone} against the source's ({entry.setting.split(',')[0]})")
    return "; ".join(parts)


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


def effects_table(trials: pd.DataFrame, metric: str = rs.M_TEST_AT_BEST_VAL) -> Table | None:
    """The papers' effect of a loss against InfoNCE at each batch size beside the same effect here.

    For each source that reports InfoNCE and another loss at the same dataset, batch size and
    epochs: the other minus InfoNCE in points, beside this study's paired difference over the seeds
    both cells share at that batch size (the validation-selected configuration of each cell), judged
    as the loss tables judge theirs: Holm over the family of this table's comparisons, simultaneous
    paired-t intervals. None where no pair has both cells here.
    """
    selected = selected_trials(trials, BY, metric)
    found = []
    for reference, other in _reported_pairs(trials):
        cells = [_seeds(selected, entry, metric) for entry in (other, reference)]
        if all(cell is not None for cell in cells):
            differences = paired_differences(cells[0][0], cells[1][0])
            if not differences.empty:
                found.append((reference, other, differences, cells[0][1]))
    if not found:
        return None
    family = verdicts({(o.dataset, o.loss, o.batch_size): d.to_numpy() for _, o, d, _ in found})
    sources = list(dict.fromkeys(_source_note(other) for _, other, _, _ in found))
    rows = [
        {
            "dataset": other.dataset,
            "loss": f"{loss_label(other.loss)} − {loss_label(reference.loss)}",
            "B": str(other.batch_size),
            "the paper's comparison": f"{other.method} − {reference.method}",
            "the paper (pp)": Diff((other.percent - reference.percent) / 100),
            "source": f"[{sources.index(_source_note(other)) + 1}]",
            "epochs there": "—" if other.epochs is None else str(other.epochs),
            "here (pp)": _effect(differences, family[(other.dataset, other.loss, other.batch_size)]),
            "epochs here": epochs,
        }
        for reference, other, differences, epochs in found
    ]
    index = ["dataset", "loss", "B"]
    grid = pd.DataFrame(rows, columns=[*index, *EFFECT_COLUMNS]).set_index(index).astype(object)
    footnotes = [
        "The paper (pp): the source's two numbers subtracted (single runs unless the source says otherwise). Here (pp): "
        f"the mean over seeds of the paired differences of {METRIC_LABELS[metric]}; "
        f"{notes.statistics_note(list(family.values()))}",
        *(f"[{number}] {note}" for number, note in enumerate(sources, start=1)),
    ]
    return Table("reported_effects", "The papers' effects beside this study's", grid, "", "", notes.caption(trials, metric), tuple(footnotes))


def _effect(differences: pd.Series, verdict: Verdict) -> Diff:
    return Diff(verdict.difference, verdict.interval, verdict.n, verdict.note, verdict=verdict, values=tuple(differences.items()))


def _reported_pairs(trials: pd.DataFrame) -> list[tuple[ReportedNumber, ReportedNumber]]:
    """(InfoNCE's, another loss's) reported numbers from one source at one dataset, batch size and epochs."""
    entries = [entry for entry in reported_entries(trials) if entry.batch_size is not None]
    setting = lambda entry: (entry.source, _normalized(entry.dataset), entry.batch_size, entry.epochs)  # noqa: E731
    references = {setting(entry): entry for entry in entries if entry.loss == REFERENCE_LOSS}
    return [(references[setting(entry)], entry) for entry in entries if entry.loss != REFERENCE_LOSS and setting(entry) in references]


def _seeds(selected: pd.DataFrame, entry: ReportedNumber, metric: str) -> tuple[pd.Series, str] | None:
    """The seeds' values of this study's cell of the entry's dataset, loss and batch size (the most seeds'
    epochs where it ran several), and those epochs as text; None where it has none."""
    cell = selected[
        (selected[rs.P_DATASET].map(_normalized) == _normalized(entry.dataset))
        & (selected[rs.P_LOSS] == entry.loss)
        & (selected[rs.P_BATCH_SIZE] == entry.batch_size)
    ]
    if cell.empty:
        return None
    epochs = cell[rs.P_EPOCHS].value_counts().index[0]
    chosen = cell[cell[rs.P_EPOCHS] == epochs]
    return seed_values(chosen, metric), format_value(epochs)
