"""The report's Conditions section: where a study's recorded config departs from its paper's.

The paper a study reproduces is the one whose evaluation recipe it ran (``recipe`` of its
evaluation runs: ``flatclr`` or ``attentionnce``; a study without one is compared with the
AttentionNCE lineage, whose recipe is the evaluation's default). Each line compares what the
trial and evaluation runs recorded in MLflow with that paper's recipe (``trainables/spec/papers.py``,
read from the paper's official code), and a setting that agrees with the paper gets no line: a
reader of the report learns only what differs. A setting the study sweeps (several values among
its trials) is the study's question, not a departure: its line says that it is swept.
Facts of this code that no param records (the probe's BatchNorm mode, its input) are stated
where they differ from the paper's evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from analysis import load
from analysis.labels import distinct_text, format_value
from trainables.spec import run_schema as rs
from trainables.spec.datasets import DATASETS, STATS_FROM_CONFIG, augment_defaults
from trainables.spec.papers import DEFAULT_PAPER, PAPERS, PaperRecipe

_PARAM = load.EXTRA_PARAM_PREFIX
_EVAL = load.EVAL_PARAM_PREFIX


EVAL_NAMES: dict[str, str] = {"linear": "a linear probe", "finetune": "fine-tuning", "knn": "a kNN classifier"}
PROBE_INPUTS: dict[str, str] = {
    "linear": "frozen features of unaugmented images, computed once and cached",
    "finetune": "crop-and-flip augmented images, the whole network trained",
    "knn": "frozen features of unaugmented images, nothing trained",
}


def paper_for(trials: pd.DataFrame) -> str:
    """The key of ``PAPERS`` a study is compared with: its evaluation recipe's."""
    recipes = set(trials[load.RECIPE].dropna()) & set(PAPERS)
    return recipes.pop() if len(recipes) == 1 else DEFAULT_PAPER


def conditions(trials: pd.DataFrame, metric: str = rs.M_TEST_AT_BEST_VAL) -> list[str]:
    """The Conditions section: the reference paper, then one line per departure from it.

    Args:
        trials: Frame from ``load_study``.
        metric: The accuracy the tables report (its model selection is one of the conditions).

    Returns:
        Lines of text, the first naming the paper compared with.
    """
    paper = PAPERS[paper_for(trials)]
    header = (
        f"Compared with the recipe of {paper.name}: {paper.source}; chosen by the evaluation recipe "
        f"{distinct_text(trials, load.RECIPE)}. Listed: where the configs recorded in MLflow differ from it, "
        "and the settings the study sweeps."
    )
    lines = [check(trials, paper) for check in _PRETRAINING + _EVALUATION]
    return [header, *(line for line in [*lines, _selection(metric)] if line)]


def _values(trials: pd.DataFrame, column: str) -> list[object]:
    """The distinct values of a column (a string for each, as logged), or none where it is absent."""
    if column not in trials.columns:
        return []
    return sorted({format_value(value) for value in trials[column].dropna()}, key=_numeric_first)


def _numeric_first(value: str) -> tuple[int, float, str]:
    """Sort numbers by value (32 before 128), then text."""
    try:
        return 0, float(value), ""
    except ValueError:
        return 1, 0.0, value


def _differs(values: list[object], expected: object) -> bool:
    return bool(values) and any(not _same(value, expected) for value in values)


def _same(value: object, expected: object) -> bool:
    try:
        return math.isclose(float(str(value)), float(str(expected)), rel_tol=1e-9)
    except ValueError:
        return str(value).lower() == str(expected).lower()


def _text(values: list[object]) -> str:
    return ", ".join(str(value) for value in values)


SWEPT = "the axis this study sweeps"


def _compare(label: str, column: str, attribute: str) -> Callable[[pd.DataFrame, PaperRecipe], str]:
    def check(trials: pd.DataFrame, paper: PaperRecipe) -> str:
        values, expected = _values(trials, column), getattr(paper, attribute)
        if len(values) > 1:
            return f"{label}: {_text(values)}, {SWEPT}."
        if not _differs(values, expected):
            return ""
        return f"{label}: {_text(values)} (the paper: {format_value(expected)})."

    return check


def _departing(trials: pd.DataFrame, paper: PaperRecipe, attributes: dict[str, str]) -> list[list[object]] | None:
    """The recorded values of each column (keys of ``attributes``) where any departs from the paper's attribute
    named beside it; None where all agree, as one condition line covers them together."""
    values = [_values(trials, column) for column in attributes]
    departs = any(_differs(found, getattr(paper, name)) for found, name in zip(values, attributes.values()))
    return values if departs else None


def _lr(trials: pd.DataFrame, paper: PaperRecipe) -> str:
    """The optimiser, base lr and its scaling rule; a swept lr is named as swept, and compared with
    the paper only through the optimiser and rule it is used with."""
    lrs = _values(trials, rs.P_LR)
    swept = len(lrs) > 1
    rule = "" if paper.lr_scaling == "none" else f" × B/256 ({paper.lr_scaling} scaling)"
    if swept:
        departing = _departing(trials, paper, {rs.P_OPTIMIZER: "optimizer", rs.P_LR_SCALING: "lr_scaling"})
        if departing is None:
            return f"Learning rate: {_text(lrs)}, {SWEPT}."
        optimizers, scalings = departing
        return (
            f"Optimiser and lr: {_text(optimizers)}, scaling {_text(scalings) or '—'}, lr {_text(lrs)} ({SWEPT}) "
            f"(the paper: {paper.optimizer}, lr {format_value(paper.lr)}{rule})."
        )
    departing = _departing(trials, paper, {rs.P_OPTIMIZER: "optimizer", rs.P_LR: "lr", rs.P_LR_SCALING: "lr_scaling"})
    if departing is None:
        return ""
    optimizers, lrs, scalings = departing
    return (
        f"Optimiser and lr: {_text(optimizers)}, lr {_text(lrs)}, scaling {_text(scalings) or '—'} "
        f"(the paper: {paper.optimizer}, lr {format_value(paper.lr)}{rule})."
    )


def _schedule(trials: pd.DataFrame, paper: PaperRecipe) -> str:
    departing = _departing(trials, paper, {_PARAM + "schedule": "schedule", _PARAM + "warmup_epochs": "warmup_epochs"})
    if departing is None:
        return ""
    schedules, warmups = departing
    return (
        f"lr schedule: {_text(schedules) or '—'} with {_text(warmups) or '0'} warm-up epochs "
        f"(the paper: {paper.schedule} with {paper.warmup_epochs})."
    )


def _temperature(trials: pd.DataFrame, paper: PaperRecipe) -> str:
    values = _values(trials, rs.P_TEMPERATURE)
    if not values:
        return f"τ: each loss's own default (no temperature recorded; the paper: {format_value(paper.temperature)})."
    return _compare("τ", rs.P_TEMPERATURE, "temperature")(trials, paper)


def _blur(trials: pd.DataFrame, paper: PaperRecipe) -> str:
    """The blur each trial trained with: its ``blur_prob``, or where none was set, its dataset's default."""
    values = sorted({_blur_prob(trial) for _, trial in trials.iterrows()} - {None}, key=float)
    if not _differs(values, paper.blur_prob):
        return ""
    return f"Augmentation: Gaussian blur with probability {_text(values)} (the paper: {paper.blur})."


def _blur_prob(trial: pd.Series) -> str | None:
    """A trial's blur probability as text; None where neither it nor its dataset's defaults are known."""
    given = trial.get(_PARAM + "blur_prob")
    if given is not None and not pd.isna(given):
        return format_value(given)
    spec = DATASETS.get(str(trial.get(rs.P_DATASET)))
    size = pd.to_numeric(trial.get(_PARAM + "data.image_size"), errors="coerce")
    defaults = spec.augment if spec is not None and spec.augment is not None else None
    if defaults is None and not pd.isna(size):
        defaults = augment_defaults(int(size))  # an image folder's defaults follow its resolution
    return None if defaults is None else format_value(defaults["blur_prob"])


def _precision(trials: pd.DataFrame, paper: PaperRecipe) -> str:
    precisions = set(_values(trials, _PARAM + "precision"))
    devices = set(_values(trials, rs.P_DEVICE_TYPE))
    bf16 = "bf16" in precisions or ("auto" in precisions and "cuda" in devices)
    if not bf16:
        return ""
    return f"Precision: bf16 autocast in pretraining (the paper: {paper.precision})."


def _training_set(trials: pd.DataFrame, paper: PaperRecipe) -> str:
    fractions = [value for value in _values(trials, _PARAM + "val_fraction") if float(str(value)) > 0]
    limits = _values(trials, _PARAM + "limit_train")
    parts = []
    if fractions:
        parts.append(
            f"a validation split of {_text(fractions)} of the training images is held out of pretraining and "
            "probe training, for model selection"
        )
    if limits:
        parts.append(f"training images limited to {_text(limits)}")
    if not parts:
        return ""
    return f"Training set: {'; '.join(parts)} (the paper: every training image, selection on the test set)."


def _normalisation(trials: pd.DataFrame, paper: PaperRecipe) -> str:
    """Statistics a study gave in its config (``data_mean``/``data_std``) replace the dataset's own."""
    source = _PARAM + "data.stats_source"
    given = trials[trials[source] == STATS_FROM_CONFIG] if source in trials.columns else trials.iloc[:0]
    if given.empty:
        return ""
    means, stds = _text(_values(given, _PARAM + "data.mean")), _text(_values(given, _PARAM + "data.std"))
    return (
        f"Normalisation: per-channel mean {means} and std {stds} given in the config of {len(given)} of "
        f"{len(trials)} trials (the paper: the dataset's own statistics)."
    )


def _probe(trials: pd.DataFrame, paper: PaperRecipe) -> str:
    """What the evaluation trains on, where it is not what the paper's linear probe trains on."""
    modes = [str(mode) for mode in _values(trials, load.EVAL_MODE)]
    departing = [mode for mode in modes if mode != "linear" or paper.probe_augments]
    if not departing:
        return ""
    inputs = "; ".join(f"{EVAL_NAMES.get(mode, mode)} on {PROBE_INPUTS.get(mode, mode)}" for mode in departing)
    return f"Evaluation: {inputs} (the paper: a linear probe on {paper.probe_input})."


def _batch_norm(trials: pd.DataFrame, paper: PaperRecipe) -> str:
    """Every paper's probe keeps the backbone in train mode; this code's frozen-feature evaluations do not."""
    if not set(_values(trials, load.EVAL_MODE)) & {"linear", "knn"}:
        return ""
    return (
        "Backbone BatchNorm during evaluation: eval mode, its running statistics fixed (the paper's probe: train mode, "
        "batch statistics, running statistics updated)."
    )


def _probe_recipe(trials: pd.DataFrame, paper: PaperRecipe) -> str:
    if set(_values(trials, load.EVAL_MODE)) - {"linear"}:
        return ""
    departing = _departing(trials, paper, {_probe_column(trials, name): f"probe_{name}" for name in ("batch_size", "lr", "epochs")})
    if departing is None:
        return ""
    batches, lrs, epochs = departing
    lr = _text(lrs) or f"{format_value(paper.probe_lr)} (the recipe's)"
    step = ""
    if len(batches) == 1 and not lrs and float(str(batches[0])) < paper.probe_batch_size:
        ratio = paper.probe_batch_size / float(str(batches[0]))
        step = f"; the same lr at a batch {format_value(ratio)}× smaller is {format_value(ratio)}× the step per example"
    return (
        f"Linear probe: batch {_text(batches) or '—'}, lr {lr}, {_text(epochs) or '—'} epochs "
        f"(the paper: batch {paper.probe_batch_size}, lr {format_value(paper.probe_lr)}, {paper.probe_epochs} epochs{step})."
    )


def _probe_column(trials: pd.DataFrame, name: str) -> str:
    """The frame column of an evaluation setting: ``probe_<name>`` as evaluation runs log it, or the bare
    name in stores written before the probe's settings had their own names (when no run has a probe_ one)."""
    prefixed = f"{_EVAL}{rs.PROBE_PREFIX}{name}"
    if prefixed in trials.columns or any(column.startswith(_EVAL + rs.PROBE_PREFIX) for column in trials.columns):
        return prefixed
    return _EVAL + name


def _selection(metric: str) -> str:
    if metric == rs.M_MAX_TEST_OVER_EPOCHS:
        return ""  # the papers' own selection: no departure
    return (
        "Model selection: the probe epoch with the best validation accuracy, its test accuracy reported "
        "(the papers: the best test accuracy over epochs)."
    )


_PRETRAINING: list[Callable[[pd.DataFrame, PaperRecipe], str]] = [
    _compare("Backbone", rs.P_BACKBONE, "backbone"),
    _compare("Projection head", _PARAM + "head", "head"),
    _compare("Pretraining batch size", rs.P_BATCH_SIZE, "batch_size"),
    _compare("Pretraining epochs", rs.P_EPOCHS, "epochs"),
    _lr,
    _schedule,
    _temperature,
    _blur,
    _precision,
    _training_set,
    _normalisation,
]
_EVALUATION: list[Callable[[pd.DataFrame, PaperRecipe], str]] = [_probe, _batch_norm, _probe_recipe]
