"""What a table is made of: cells of statistics over seeds, differences, and the table itself.

Formatting lives in ``render``; accuracies are fractions here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.statistics import NO_INTERVAL, Interval, Verdict


@dataclass(frozen=True)
class Stat:
    """Accuracy over the seeds of one cell, as fractions.

    Attributes:
        mean: Mean over seeds (NaN when n is 0).
        std: Sample standard deviation over seeds (NaN when n < 2).
        n: Number of seeds.
        interval: Student-t interval of the mean (``NO_INTERVAL`` when n < 2).
        best: Whether this cell is the resolved best of its column (or row, per the table).
        values: (seed, value) per seed, the evidence behind the cell.
    """

    mean: float
    std: float
    n: int
    interval: Interval = NO_INTERVAL
    best: bool = False
    values: tuple[tuple[object, float], ...] = ()


@dataclass(frozen=True)
class Diff:
    """A difference of accuracies, as a fraction, with its interval where there is one.

    Attributes:
        value: The difference (NaN where one side is missing).
        interval: Its simultaneous paired-t interval over the table's family (``NO_INTERVAL`` if none).
        n_pairs: Number of seed pairs.
        note: Why there is no test ("cannot resolve with 1 seed"), or other context.
        signed: Whether to print a sign (False for spreads, which are never negative).
        verdict: The family's verdict on this comparison (None for spreads and reported numbers).
        values: (seed, X - Y) per common seed.
    """

    value: float
    interval: Interval = NO_INTERVAL
    n_pairs: int = 0
    note: str = ""
    signed: bool = True
    verdict: Verdict | None = None
    values: tuple[tuple[object, float], ...] = ()

    @property
    def resolved(self) -> bool:
        """Whether Holm's step-down over the table's family resolved it; without a test, not resolved."""
        return self.verdict is not None and self.verdict.resolved


@dataclass(frozen=True)
class Span:
    """One cell that holds for several columns of its row, shown once across them: the random-init
    encoder is trained at no batch size (nor M, nor lr), so its one number is every column's.

    Attributes:
        cell: The cell shown.
        columns: How many columns it covers, its own first; the grid holds None in the others.
        label: What it covers, in words (``every B``).
    """

    cell: Stat | str
    columns: int
    label: str


Cell = Stat | Diff | Span | str | None


@dataclass(frozen=True)
class Table:
    """One table, ready for any output format.

    Attributes:
        key: File stem, e.g. ``batch_size``.
        title: Short title.
        grid: Cells (``Stat``, ``Diff``, ``Span``, ``str`` or None for missing or covered by a span); the index holds the row
            labels (its names label the row columns), the columns the column values.
        column_name: What the columns are, e.g. ``batch size``.
        column_symbol: Prefix of numeric column headers (``B`` gives ``B=256``); empty for none.
        caption: What, where and how was measured.
        footnotes: Exclusions, selections and statistics.
    """

    key: str
    title: str
    grid: pd.DataFrame
    column_name: str
    column_symbol: str
    caption: str
    footnotes: tuple[str, ...]
