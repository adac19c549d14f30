"""Table output formats: Markdown, CSV, LaTeX (booktabs) and an HTML page with the plots.

Accuracies are fractions in the tables and percentages (two decimals) in every output.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files

import pandas as pd

from analysis.cells import Cell, Diff, Span, Stat, Table
from analysis.claims import ClaimResult, claims_intro, evidence_text, verdict_text
from analysis.labels import RANDOM_INIT, format_value
from analysis.latex import latex_escape
from analysis.power import MAX_SEEDS
from analysis.statistics import Interval

MISSING = "—"
_COVERED = object()  # a grid column that a span of the same row already shows
SPAN_CSV_NOTE = "A row whose column field is empty holds one value for every column (the random-init encoder has none)."
NOT_RESOLVED = "not resolved"
ROW_NAMES: dict[str, str] = {"batch_size": "batch size", "loss": "loss", "dataset": "dataset"}
CSV_FIELDS = (
    "text", "mean_pct", "std_pct", "n", "best", "difference_pp", "low_pct", "high_pct", "level", "interval",
    "resolved", "p_adjusted", "smallest_resolvable_pp", "seeds_needed", "n_pairs", "note", "values",
)

# Kept readable in report.css, inlined on one line: every page stays self-contained and carries it short.
_CSS = " ".join(line.strip() for line in files("analysis").joinpath("report.css").read_text("utf-8").splitlines() if line.strip())


@dataclass(frozen=True)
class Figure:
    """A rendered plot for the HTML page.

    Attributes:
        title: Heading shown above the image.
        caption: What the plot shows.
        png: The image, PNG bytes.
    """

    title: str
    caption: str
    png: bytes


def cell_text(cell: Cell) -> str:
    """A cell as plain text: ``81.23 [80.70, 81.60] (n=3)``, ``+1.20 [+0.40, +2.00] (n=10)``, or a dash."""
    if isinstance(cell, Stat):
        return _stat_text(cell)
    if isinstance(cell, Diff):
        return _diff_text(cell)
    if isinstance(cell, Span):
        return f"{cell_text(cell.cell)}, {cell.label}"
    return MISSING if _is_missing(cell) else str(cell)


def to_markdown(table: Table) -> str:
    """GitHub-flavoured Markdown: title, caption, the table (best cells bold), the notes as a list."""
    alignment = {"l": ":--", "r": "--:"}
    lines = [f"### {table.title}", "", table.caption, ""]
    lines.append(_md_row(_header(table)))
    lines.append(_md_row([alignment[side] for side in _alignments(table)]))
    for labels, cells in _rows(table):
        lines.append(_md_row([*labels, *(_md_cell(cell) for cell in cells)]))  # a covered column shows empty
    lines += ["", *(f"- {note}" for note in table.footnotes)]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """Tidy CSV, one line per cell, under ``#`` lines carrying the title, caption and notes.

    Read it back with ``pandas.read_csv(path, comment="#")``; ``row`` numbers the table's rows,
    percentages are in ``mean_pct``, ``std_pct`` and ``difference_pp``. A cell that holds for every
    column (the random-init row's) is one line whose column field is empty.
    """
    buffer = io.StringIO()
    for line in (table.title, table.caption, *table.footnotes, SPAN_CSV_NOTE):
        buffer.write(f"# {line}\n")
    row_names = [ROW_NAMES.get(name, name) for name in table.grid.index.names]
    writer = csv.DictWriter(buffer, ["row", *row_names, table.column_name or "column", *CSV_FIELDS])
    writer.writeheader()
    for number, (labels, cells) in enumerate(_rows(table)):
        for column, cell in zip(table.grid.columns, cells):
            if cell is _COVERED:
                continue
            shown = "" if isinstance(cell, Span) else column
            record = {"row": number, **dict(zip(row_names, labels)), table.column_name or "column": shown}
            writer.writerow(record | _csv_fields(cell.cell if isinstance(cell, Span) else cell))
    return buffer.getvalue()


def to_latex(table: Table) -> str:
    """A booktabs ``table`` float: caption and label on top, notes under the tabular."""
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        r"\small",
        rf"\caption{{{latex_escape(table.title)}. {latex_escape(table.caption)}}}",
        rf"\label{{tab:{table.key.replace('_', '-')}}}",
        rf"\begin{{tabular}}{{{''.join(_alignments(table))}}}",
        r"\toprule",
        " & ".join(latex_escape(text) for text in _header(table)) + r" \\",
        r"\midrule",
    ]
    previous = ""
    for labels, cells in _rows(table):
        section = _section(labels, cells)
        if previous and section != previous:
            lines.append(r"\midrule")
        previous = section
        texts = [*(latex_escape(label) for label in labels), *(_latex_cell(cell) for cell, _ in _spanned(cells))]
        lines.append(" & ".join(texts) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    notes = [rf"\par\smallskip{{\footnotesize {latex_escape(note)}}}" for note in table.footnotes]
    return "\n".join(lines + notes + [r"\end{table}"]) + "\n"


def to_html(table: Table) -> str:
    """One table as an HTML ``section``: heading, caption, the table (scrolling if wider than the page), notes."""
    sides = _alignments(table)
    data_sides = sides[table.grid.index.nlevels :]
    body = "".join(
        "<tr>"
        + "".join(f'<th scope="row">{html.escape(label)}</th>' for label in labels)
        + "".join(_html_td(cell, width, side) for (cell, width), side in zip(_spanned(cells), _span_sides(cells, data_sides)))
        + "</tr>"
        for labels, cells in _rows(table)
    )
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in table.footnotes)
    head_cells = "".join(f'<th class="{side}">{html.escape(text)}</th>' for side, text in zip(sides, _header(table)))
    return (
        f'<section id="{html.escape(table.key)}"><h2>{html.escape(table.title)}</h2>'
        f'<p class="caption">{html.escape(table.caption)}</p>'
        f'<div class="scroll"><table><thead><tr>{head_cells}</tr></thead><tbody>{body}</tbody></table></div>'
        f'<ul class="notes">{notes}</ul></section>'
    )


def html_page(
    heading: str,
    summary: Sequence[tuple[str, str]],
    conditions: Sequence[str],
    tables: Sequence[Table],
    figures: Sequence[Figure],
    claims: Sequence[ClaimResult] = (),
    claims_notes: Sequence[str] = (),
) -> str:
    """A self-contained page (plots embedded as PNG data): claims, summary, conditions, tables, plots.

    Self-contained so that it also displays inside the MLflow UI's artifact viewer, which does
    not resolve links to sibling files.
    """
    sections = [_html_claims(claims, claims_notes), _html_summary(summary), _html_conditions(conditions)]
    sections += [to_html(table) for table in tables] + [_html_figure(figure) for figure in figures]
    return html_document(heading, sections)


def html_document(heading: str, sections: Sequence[str]) -> str:
    """A self-contained page with the report's style: the heading, then the sections' HTML."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(heading)}</title><style>{_CSS}</style></head>\n"
        f"<body><h1>{html.escape(heading)}</h1>\n" + "\n".join(sections) + "\n</body></html>\n"
    )


def summary_markdown(
    heading: str,
    summary: Sequence[tuple[str, str]],
    conditions: Sequence[str],
    claims: Sequence[ClaimResult] = (),
    claims_notes: Sequence[str] = (),
) -> str:
    """The report's Claims section, header and Conditions section as Markdown."""
    lines = [f"# {heading}", "", claims_markdown(claims, claims_notes)]
    lines += [*(f"- **{name}:** {value}" for name, value in summary), "", "## Conditions", ""]
    return "\n".join(lines + [f"- {line}" for line in conditions]) + "\n"


def claims_markdown(claims: Sequence[ClaimResult], notes: Sequence[str] = ()) -> str:
    """The Claims section: each claim, its verdict in bold, and the table rows that are its evidence."""
    lines = ["## Claims", "", claims_intro(claims), ""]
    for number, result in enumerate(claims, 1):
        source = f" ({result.claim.source})" if result.claim.source else ""
        lines.append(f"{number}. {result.claim.text}{source}: **{verdict_text(result)}**")
        lines += [f"   - {evidence_text(test)}" for test in result.tests]
    lines += ["", *(f"- {note}" for note in notes), ""]
    return "\n".join(lines)


FORMATS: dict[str, Callable[[Table], str]] = {"md": to_markdown, "csv": to_csv, "latex": to_latex}
EXTENSIONS: dict[str, str] = {"md": "md", "csv": "csv", "latex": "tex", "html": "html"}


def _header(table: Table) -> list[str]:
    rows = [ROW_NAMES.get(name, name) for name in table.grid.index.names]
    return rows + [_column_header(table, column) for column in table.grid.columns]


def _column_header(table: Table, column: object) -> str:
    if isinstance(column, str) or not table.column_symbol:
        return str(column)
    return f"{table.column_symbol}={format_value(column)}"


def _rows(table: Table) -> list[tuple[list[str], list[Cell]]]:
    """Each grid row as (row labels as text, cells), the columns a span covers holding ``_COVERED``."""
    rows = []
    for key, cells in table.grid.iterrows():
        labels = list(key) if isinstance(key, tuple) else [key]
        shown, covered = [], 0
        for cell in cells:
            shown.append(_COVERED if covered else cell)
            covered = cell.columns - 1 if isinstance(cell, Span) else max(covered - 1, 0)
        rows.append(([format_value(label) for label in labels], shown))
    return rows


def _spanned(cells: list[Cell]) -> list[tuple[Cell, int]]:
    """The cells a row shows, each with the columns it covers (a span's, else 1)."""
    return [(cell, cell.columns if isinstance(cell, Span) else 1) for cell in cells if cell is not _COVERED]


def _span_sides(cells: list[Cell], sides: list[str]) -> list[str]:
    """The alignment of each shown cell: a span is centred across its columns."""
    return ["c" if isinstance(cell, Span) else side for cell, side in zip(cells, sides) if cell is not _COVERED]


def _alignments(table: Table) -> list[str]:
    """``l`` for row labels and text columns, ``r`` for columns of numbers."""
    text_columns = [_is_text(table.grid[column]) for column in table.grid.columns]
    return ["l"] * table.grid.index.nlevels + ["l" if text else "r" for text in text_columns]


def _is_text(cells: pd.Series) -> bool:
    present = [cell for cell in cells if not _is_missing(cell)]
    return bool(present) and all(isinstance(cell, str) for cell in present)


def _is_missing(cell: object) -> bool:
    return cell is None or (isinstance(cell, float) and math.isnan(cell))


def _stat_text(
    stat: Stat, emphasis: Callable[[str], str] = str, escape: Callable[[str], str] = str, detail: str = " "
) -> str:
    """Mean [interval] in percent and the seed count; ``emphasis`` marks the best cell's mean.

    ``detail`` goes between the mean and the rest (HTML puts the rest on a second, smaller line).
    """
    if not stat.n:
        return escape(MISSING)
    mean = escape(f"{100 * stat.mean:.2f}")
    interval = f"[{100 * stat.interval.low:.2f}, {100 * stat.interval.high:.2f}] " if stat.interval.exists else ""
    return f"{emphasis(mean) if stat.best else mean}{detail}{escape(f'{interval}(n={stat.n})')}"


def _section(labels: list[str], cells: list[Cell]) -> str:
    """Which block of a table a row belongs to: losses, the baseline, or differences."""
    if labels and labels[0] == RANDOM_INIT:
        return "baseline"
    present = [cell for cell in cells if not _is_missing(cell)]
    return "differences" if present and all(isinstance(cell, Diff) for cell in present) else "cells"


def _signed(value: float) -> str:
    # A true minus sign, not a hyphen; LaTeX output turns it into $-$.
    return f"{100 * value:+.2f}".replace("-", "−")


def _diff_text(diff: Diff) -> str:
    value, rest = _diff_parts(diff)
    return f"{value} {rest}" if rest else value


def _diff_parts(diff: Diff) -> tuple[str, str]:
    """The difference itself, and what qualifies it (interval, n, verdict, or why there is none)."""
    if math.isnan(diff.value):
        return MISSING, f"({diff.note})" if diff.note else ""
    if not diff.signed:
        return f"{100 * diff.value:.2f}", ""
    value = _signed(diff.value)
    if diff.note:
        return value, f"(n={diff.n_pairs}, {diff.note})"
    if not diff.interval.exists:
        return value, ""
    interval = f"[{_signed(diff.interval.low)}, {_signed(diff.interval.high)}] (n={diff.n_pairs})"
    return value, interval + ("" if diff.resolved else f", {NOT_RESOLVED}{_planning(diff)}")


def _planning(diff: Diff) -> str:
    """What the seeds could resolve, and what the observed difference would need."""
    verdict = diff.verdict
    if verdict is None or math.isnan(verdict.smallest_resolvable):
        return ""
    needed = f"more than {MAX_SEEDS}" if verdict.seeds_needed is None else str(verdict.seeds_needed)
    return f": resolvable from {100 * verdict.smallest_resolvable:.2f} pp; this one needs {needed} seeds"


def _md_cell(cell: Cell) -> str:
    if isinstance(cell, Stat):
        return _stat_text(cell, lambda body: f"**{body}**")
    if isinstance(cell, Span):
        return f"{_md_cell(cell.cell)}, {cell.label}"
    return "" if cell is _COVERED else cell_text(cell)


def _md_row(texts: Sequence[str]) -> str:
    return "| " + " | ".join(text.replace("|", r"\|") for text in texts) + " |"


def _latex_cell(cell: Cell) -> str:
    if isinstance(cell, Stat):
        return _stat_text(cell, lambda body: rf"\textbf{{{body}}}", latex_escape)
    if isinstance(cell, Span):
        return rf"\multicolumn{{{cell.columns}}}{{c}}{{{_latex_cell(cell.cell)}, {latex_escape(cell.label)}}}"
    return latex_escape(cell_text(cell))


def _html_td(cell: Cell, width: int, side: str) -> str:
    if isinstance(cell, Span):
        return f'<td class="{side}" colspan="{width}">{_html_cell(cell.cell)}<br><span class="d">{html.escape(cell.label)}</span></td>'
    return f'<td class="{side}">{_html_cell(cell)}</td>'


def _html_cell(cell: Cell) -> str:
    """Two lines where there is more than a number, so that wide tables still fit the page."""
    if isinstance(cell, Stat) and cell.n:
        return _stat_text(cell, lambda body: f"<b>{body}</b>", html.escape, '<br><span class="d">') + "</span>"
    if isinstance(cell, Diff):
        value, rest = _diff_parts(cell)
        return html.escape(value) + (f'<br><span class="d">{html.escape(rest)}</span>' if rest else "")
    return html.escape(cell_text(cell))


def _html_claims(claims: Sequence[ClaimResult], notes: Sequence[str]) -> str:
    items = "".join(
        f'<li class="{html.escape(result.status.replace(" ", "-"))}">{html.escape(result.claim.text)}'
        + (f' <span class="d">({html.escape(result.claim.source)})</span>' if result.claim.source else "")
        + f': <b>{html.escape(verdict_text(result))}</b>'
        + "".join(f'<br><span class="evidence">{html.escape(evidence_text(test))}</span>' for test in result.tests)
        + "</li>"
        for result in claims
    )
    footnotes = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    return (
        f'<section id="claims"><h2>Claims</h2><p class="caption">{html.escape(claims_intro(claims))}</p>'
        f'<ol class="claims">{items}</ol><ul class="notes">{footnotes}</ul></section>'
    )


def _html_summary(summary: Sequence[tuple[str, str]]) -> str:
    rows = "".join(f"<dt>{html.escape(name)}</dt><dd>{_linked(value)}</dd>" for name, value in summary)
    return f'<section id="summary"><dl class="summary">{rows}</dl></section>'


def _linked(value: str) -> str:
    if value.startswith(("http://", "https://")):
        return f'<a href="{html.escape(value)}">{html.escape(value)}</a>'
    return html.escape(value)


def _html_conditions(conditions: Sequence[str]) -> str:
    items = "".join(f"<li>{html.escape(line)}</li>" for line in conditions)
    return f'<section id="conditions"><h2>Conditions</h2><ul class="conditions">{items}</ul></section>'


def _html_figure(figure: Figure) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    return (
        f"<section><h2>{html.escape(figure.title)}</h2><figure>"
        f'<img src="data:image/png;base64,{data}" alt="{html.escape(figure.title)}">'
        f"<figcaption>{html.escape(figure.caption)}</figcaption></figure></section>"
    )


def _csv_fields(cell: Cell) -> dict[str, object]:
    fields: dict[str, object] = dict.fromkeys(CSV_FIELDS, "")
    fields["text"] = cell_text(cell)
    if isinstance(cell, Stat) and cell.n:
        fields |= {"mean_pct": _pct(cell.mean), "std_pct": _pct(cell.std), "n": cell.n, "best": cell.best}
        fields |= _interval_fields(cell.interval) | {"values": _values(cell.values)}
    elif isinstance(cell, Stat):
        fields["n"] = 0
    elif isinstance(cell, Diff):
        fields |= {"difference_pp": _pct(cell.value), "n_pairs": cell.n_pairs or "", "note": cell.note}
        fields |= _interval_fields(cell.interval) | {"values": _values(cell.values)}
        fields |= _verdict_fields(cell)
    return fields


def _verdict_fields(diff: Diff) -> dict[str, object]:
    verdict = diff.verdict
    if verdict is None or not verdict.testable:
        return {}
    fields: dict[str, object] = {"resolved": verdict.resolved, "p_adjusted": f"{verdict.p_adjusted:.6g}"}
    if not verdict.resolved:
        needed = f"more than {MAX_SEEDS}" if verdict.seeds_needed is None else verdict.seeds_needed
        fields |= {"smallest_resolvable_pp": _pct(verdict.smallest_resolvable), "seeds_needed": needed}
    return fields


def _values(values: tuple[tuple[object, float], ...]) -> str:
    """Per-seed values as ``seed:percent`` pairs, space-separated."""
    return " ".join(f"{format_value(seed)}:{100 * value:.4f}" for seed, value in values)


def _interval_fields(interval: Interval) -> dict[str, object]:
    if not interval.exists:
        return {}
    return {
        "low_pct": _pct(interval.low), "high_pct": _pct(interval.high), "level": f"{interval.level:.6g}",
        "interval": interval.label,
    }


def _pct(value: float) -> str:
    """A fraction as a percentage with four decimals (the CSV keeps more than the tables)."""
    return "" if math.isnan(value) else f"{100 * value:.4f}"
