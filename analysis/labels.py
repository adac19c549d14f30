"""How the tables and plots name things: losses, metrics, evaluations, config values, commits."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from trainables.spec import run_schema as rs
from trainables.spec.losses import BASELINE, CATALOG

if TYPE_CHECKING:  # the command line's --help reads the labels without importing pandas
    import pandas as pd

LOSS_LABELS: dict[str, str] = {name: entry.label for name, entry in CATALOG.items()}
REFERENCE_LOSS = BASELINE  # every other loss is compared with it, as every paper of the study does
RANDOM_INIT = "random init"  # the row label of the random-init baseline

METRIC_LABELS: dict[str, str] = {
    rs.M_TEST_AT_BEST_VAL: "test accuracy at the validation-selected epoch",
    rs.M_MAX_TEST_OVER_EPOCHS: "maximum test accuracy over epochs (test-set-selected, as in the original papers)",
}
EVAL_LABELS: dict[str, str] = {"linear": "linear probe", "finetune": "fine-tuning", "knn": "kNN classifier"}
SHORT_COMMIT = 12  # characters of a git commit shown; the full one is in MLflow


def loss_label(loss: str) -> str:
    """Display name of a loss registry name (the name itself when unknown)."""
    return LOSS_LABELS.get(loss, loss)


def loss_order(losses: Iterable[str]) -> list[str]:
    """The distinct losses in ``LOSS_LABELS`` order, unknown ones after, alphabetically."""
    import pandas as pd

    present = {str(loss) for loss in losses if not pd.isna(loss)}
    return [loss for loss in LOSS_LABELS if loss in present] + sorted(present - set(LOSS_LABELS))


def format_value(value: object) -> str:
    """A config value as short text: ints without decimals, floats in %g."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def short_commit(version: str) -> str:
    """A git commit shortened to ``SHORT_COMMIT`` characters, keeping a ``+dirty`` mark."""
    commit, plus, rest = str(version).partition("+")
    return commit[:SHORT_COMMIT] + plus + rest


def distinct_text(trials: pd.DataFrame, column: str) -> str:
    """The distinct values of a column as comma-separated text, or a dash where there are none."""
    values = sorted({format_value(value) for value in trials[column].dropna()})
    return ", ".join(values) if values else "—"


def commits_text(trials: pd.DataFrame, column: str) -> str:
    """The distinct code versions, shortened."""
    values = sorted({short_commit(value) for value in trials[column].dropna()})
    return ", ".join(values) if values else "—"


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``1 common seed``, ``2 common seeds``."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def hours_unit(trials: pd.DataFrame) -> str:
    """GPU-h or CPU-h, after the device the trials ran on (``device_hours`` is either)."""
    devices = set(trials[rs.P_DEVICE_TYPE].dropna())
    return {frozenset({"cuda"}): "GPU-h", frozenset({"cpu"}): "CPU-h"}.get(frozenset(devices), "device-h")
