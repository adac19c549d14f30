"""Several studies side by side: cell by cell, claim by claim, and pooled where they are replicates.

Two studies are replicates when they ran the same conditions on different seeds: the same
preset, evaluation and set of trial configurations once the seed is left out, and no seed in
common. Their per-seed data are then pooled and analysed as one study (the same selection, the
same tests), which is what more seeds of one study would have given. Studies that are not
replicates (a study and its tuned variant, say ``cifar10-cpu`` and ``cifar10-cpu-tuned``) are
compared cell by cell and claim by claim only.

A claim supported in one study and contradicted in another, or a difference resolved in
opposite directions, is flagged first: the two cannot both be right about the same conditions.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Hashable
from dataclasses import dataclass

import pandas as pd

from analysis import load
from analysis.cells import Diff, Span, Table
from analysis.claims import (
    CONTRADICTED,
    SUPPORTED,
    ClaimResult,
    evaluate_claims,
    points_text,
    recorded_claims,
    verdict_text,
)
from analysis.labels import format_value
from analysis.load import load_baselines, load_study
from analysis.render import cell_text, html_document
from analysis.selection import CONFIG_COLUMNS
from analysis.tables import all_tables
from trainables.spec import run_schema as rs
from trainables.spec.claims import Claim

POOLED = "pooled"
DISAGREEMENT = "DISAGREEMENT"


class NotReplicatesError(ValueError):
    """Pooling was asked for studies that are not replicates (the message says why)."""


@dataclass(frozen=True)
class Study:
    """One study's data, as the report reads it.

    Attributes:
        name: The study's name.
        trials: Frame from ``load_study`` (for a pooled study, its replicates' frames concatenated).
        baselines: Frame from ``load_baselines``.
        claims: The claims it recorded (``recorded_claims``).
    """

    name: str
    trials: pd.DataFrame
    baselines: pd.DataFrame
    claims: tuple[Claim, ...]


@dataclass(frozen=True)
class Grid:
    """A side-by-side table of text: a title, a header, rows, notes."""

    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Comparison:
    """What ``compare`` found.

    Attributes:
        names: The studies compared, in the order given (then ``POOLED`` where they were pooled).
        replicates: Why they are not replicates, or "" where they are.
        pooled: Whether they were pooled.
        disagreements: Each claim or cell whose verdicts point in opposite directions, in words.
        claims: Claim by claim, one column per study.
        cells: Per table, cell by cell, one column per study.
    """

    names: tuple[str, ...]
    replicates: str
    pooled: bool
    disagreements: tuple[str, ...]
    claims: Grid
    cells: tuple[Grid, ...]


def load_studies(names: list[str], tracking_uris: list[str | None], eval_mode: str = "linear") -> list[Study]:
    """Every study's trials, baselines and claims, each from its own tracking store (``tracking_uris``,
    one per name: replicates are often run into separate stores); every name is looked up before any
    study is loaded.

    Raises:
        StudyNotFoundError: A name matches no study (the message lists those there are).
    """
    baselines = [load_baselines(name, uri, eval_mode=eval_mode) for name, uri in zip(names, tracking_uris)]  # a few runs each
    studies = []
    for name, uri, baseline in zip(names, tracking_uris, baselines):
        trials = load_study(name, uri, eval_mode=eval_mode)
        claims, _ = recorded_claims(str(trials[load.STUDY_RUN_ID].iloc[0]), uri)
        studies.append(Study(str(trials[load.STUDY].iloc[0]), trials, baseline, claims))
    return studies


def replicate_problem(studies: list[Study]) -> str:
    """Why the studies are not replicates of one another, or "" where they are."""
    first = studies[0]
    for other in studies[1:]:
        for what, value in (("preset", _preset), ("evaluation", _evaluation), ("trial configurations", _configurations)):
            if value(first) != value(other):
                return f"{first.name} and {other.name} differ in their {what}"
    seen: dict[int, str] = {}
    for study in studies:
        for seed in sorted(_seeds(study)):
            if seed in seen:
                return f"{seen[seed]} and {study.name} both ran seed {seed}: pooled, that seed would count twice"
            seen[seed] = study.name
    return ""


def _preset(study: Study) -> set[str]:
    return set(study.trials[load.PRESET].dropna().astype(str))


def _evaluation(study: Study) -> set[tuple]:
    return set(zip(study.trials[load.EVAL_MODE].astype(str), study.trials[load.RECIPE].astype(str)))


def _configurations(study: Study) -> set[tuple]:
    """The study's trial configurations without their seeds, compared as text (a missing param reads 'nan')."""
    columns = [column for column in CONFIG_COLUMNS if column != rs.P_SEED]
    frame = study.trials.reindex(columns=columns).astype(str)
    return set(frame.itertuples(index=False, name=None))


def _seeds(study: Study) -> set[int]:
    seeds = pd.concat([study.trials[rs.P_SEED], study.baselines[rs.P_SEED]]).dropna()
    return {int(seed) for seed in seeds}


def pooled(studies: list[Study]) -> Study:
    """The replicates' per-seed data as one study (call only where ``replicate_problem`` is empty)."""
    trials = pd.concat([study.trials for study in studies], ignore_index=True)
    baselines = pd.concat([study.baselines for study in studies if not study.baselines.empty] or [studies[0].baselines], ignore_index=True)
    return Study(POOLED, trials, baselines, studies[0].claims)


def compare(studies: list[Study], metric: str = rs.M_TEST_AT_BEST_VAL, pool: bool | None = None) -> Comparison:
    """Cell by cell and claim by claim, pooled where the studies are replicates.

    Args:
        studies: At least two studies (``load_studies``).
        metric: The accuracy compared.
        pool: True: pool (raise where they are not replicates); False: never; None: where they are.

    Raises:
        NotReplicatesError: ``pool`` is True and the studies are not replicates.
    """
    problem = replicate_problem(studies)
    if pool and problem:
        raise NotReplicatesError(f"cannot pool: {problem}")
    shown = [*studies, pooled(studies)] if pool is not False and not problem else list(studies)
    tables = [all_tables(study.trials, metric, study.baselines) for study in shown]
    claims = [evaluate_claims(study.claims, study.trials, study.baselines, metric) for study in shown]
    names = tuple(study.name for study in shown)
    claim_grid, claim_flags = _claims_grid(names, claims)
    cell_grids, cell_flags = _cell_grids(names, tables)
    return Comparison(names, problem, len(shown) > len(studies), tuple(claim_flags + cell_flags), claim_grid, cell_grids)


def _claims_grid(names: tuple[str, ...], claims: list[list[ClaimResult]]) -> tuple[Grid, list[str]]:
    by_id: dict[str, dict[str, ClaimResult]] = {}
    for name, results in zip(names, claims):
        for result in results:
            by_id.setdefault(result.claim.id, {})[name] = result
    rows, flags = [], []
    for claim_id, results in by_id.items():
        text = next(iter(results.values())).claim.text
        rows.append((text, *(_claim_cell(results.get(name)) for name in names)))
        statuses = {name: result.status for name, result in results.items() if name != POOLED}
        if SUPPORTED in statuses.values() and CONTRADICTED in statuses.values():
            sides = ", ".join(f"{status} in {name}" for name, status in statuses.items())
            flags.append(f"claim {claim_id!r} ({text}): {sides}")
    return Grid("Claims", ("claim", *names), tuple(rows)), flags


def _claim_cell(result: ClaimResult | None) -> str:
    if result is None:
        return "not claimed"
    decisive = result.decisive
    if decisive is None or not decisive.verdict.testable:
        return verdict_text(result)
    return f"{verdict_text(result)}; {decisive.evidence.label}: {points_text(decisive.verdict.difference + decisive.evidence.null)}"


def _cell_grids(names: tuple[str, ...], tables: list[dict[str, Table]]) -> tuple[tuple[Grid, ...], list[str]]:
    keys = list(dict.fromkeys(key for study_tables in tables for key in study_tables))
    grids, flags = [], []
    for key in keys:
        present = [study_tables.get(key) for study_tables in tables]
        cells = [_cells(table) if table is not None else {} for table in present]
        positions = list(dict.fromkeys(position for study_cells in cells for position in study_cells))
        title = next(table.title for table in present if table is not None)
        rows = []
        for row, column in positions:
            found = [study_cells.get((row, column)) for study_cells in cells]
            rows.append((_label(row), str(column), *(cell_text(cell) if cell is not None else "—" for cell in found)))
            signs = {name: _resolved_sign(cell) for name, cell in zip(names, found) if name != POOLED}
            if {+1, -1} <= set(signs.values()):
                sides = ", ".join(f"{'above' if sign > 0 else 'below'} 0 in {name}" for name, sign in signs.items() if sign)
                flags.append(f"{title}, {_label(row)}, {column}: resolved {sides}")
        grids.append(Grid(title, ("row", "column", *names), tuple(rows)))
    return tuple(grids), flags


def _cells(table: Table) -> dict[tuple[Hashable, str], object]:
    """(row label, column header) -> cell, for every cell a trial or comparison reached."""
    found = {}
    for row, cells in table.grid.iterrows():
        for column, cell in cells.items():
            if cell is not None:
                found[(row, cell.label if isinstance(cell, Span) else _column(table, column))] = cell
    return found


def _column(table: Table, column: object) -> str:
    return str(column) if isinstance(column, str) or not table.column_symbol else f"{table.column_symbol}={format_value(column)}"


def _label(row: Hashable) -> str:
    return " ".join(format_value(part) for part in row if part != "") if isinstance(row, tuple) else str(row)


def _resolved_sign(cell: object) -> int:
    if not isinstance(cell, Diff) or not cell.resolved or math.isnan(cell.value):
        return 0
    return 1 if cell.value > 0 else -1


def heading(comparison: Comparison) -> str:
    studies = [name for name in comparison.names if name != POOLED]
    return f"NCE studies compared: {', '.join(studies)}"


def overview(comparison: Comparison) -> list[str]:
    """The lines above the grids: the disagreements, loudly, then whether the studies were pooled."""
    lines = [f"{DISAGREEMENT}: {flag}" for flag in comparison.disagreements]
    if comparison.pooled:
        lines.append(f"Replicates (same preset, evaluation and trial configurations, disjoint seeds): the column {POOLED!r} "
                     "analyses their per-seed data as one study.")
    elif comparison.replicates:
        lines.append(f"Not replicates, so not pooled: {comparison.replicates}; compared cell by cell and claim by claim only.")
    else:
        lines.append("Replicates, not pooled (pooling was turned off).")
    return lines


def to_markdown(comparison: Comparison) -> str:
    """The comparison as Markdown: disagreements first, then the claims and every table, side by side."""
    lines = [f"# {heading(comparison)}", ""]
    lines += [f"- **{line}**" if line.startswith(DISAGREEMENT) else f"- {line}" for line in overview(comparison)] + [""]
    for grid in (comparison.claims, *comparison.cells):
        lines += [f"## {grid.title}", "", _md_row(grid.header), _md_row(["--"] * len(grid.header))]
        lines += [_md_row(row) for row in grid.rows] + [""]
    return "\n".join(lines)


def to_csv(comparison: Comparison) -> str:
    """Tidy CSV: one line per (section, row, column, study) with the cell's text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["section", "row", "column", "study", "text"])
    for row in comparison.claims.rows:
        for name, text in zip(comparison.names, row[1:]):
            writer.writerow(["Claims", row[0], "", name, text])
    for grid in comparison.cells:
        for row in grid.rows:
            for name, text in zip(comparison.names, row[2:]):
                writer.writerow([grid.title, row[0], row[1], name, text])
    return buffer.getvalue()


def to_html(comparison: Comparison) -> str:
    """One self-contained page, in the report's style."""
    lines = "".join(_html_line(line) for line in overview(comparison))
    sections = [f'<section id="overview"><ul class="overview">{lines}</ul></section>']
    sections += [_html_grid(grid) for grid in (comparison.claims, *comparison.cells)]
    return html_document(heading(comparison), sections)


def _html_line(line: str) -> str:
    if line.startswith(DISAGREEMENT):
        return f'<li class="disagreement"><b>{html.escape(line)}</b></li>'
    return f"<li>{html.escape(line)}</li>"


def _html_grid(grid: Grid) -> str:
    head = "".join(f'<th class="l">{html.escape(text)}</th>' for text in grid.header)
    body = "".join("<tr>" + "".join(f'<td class="l">{html.escape(text)}</td>' for text in row) + "</tr>" for row in grid.rows)
    return (
        f"<section><h2>{html.escape(grid.title)}</h2><div class=\"scroll\"><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table></div></section>"
    )


def _md_row(texts: tuple[str, ...] | list[str]) -> str:
    return "| " + " | ".join(str(text).replace("|", r"\|") for text in texts) + " |"


FORMATS = {"md": to_markdown, "csv": to_csv, "html": to_html}
