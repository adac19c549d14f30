"""The typed configurations of a run (pretraining, evaluation), validated before anything starts.

Defaults follow the AttentionNCE seed's command line (``--epochs 400 --batch_size 256
--lr 1e-3``, Adam, no schedule). ``views`` is M, the positive views per anchor.

One validation path: every config dataclass runs :func:`validate` in ``__post_init__``, which
coerces each field to its annotated type and applies the class's checks. A check returns
:class:`Problem` objects that carry the offending fields as data; :class:`ConfigError` holds
them all and renders one bounded message. The driver refuses here whatever a worker would
refuse later (ranges the augmentation, the losses and the data need), and bounds what has no
natural bound (views, batch, epochs, names, tags), so a typo cannot start Ray or exhaust memory.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import reprlib
import sys
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from trainables.spec.datasets import CHANNELS, DATASETS, DEFAULT_IN_MEMORY_GB
from trainables.spec.losses import (
    BASELINE,
    CATALOG,
    HYPERPARAMETERS,
    LossEntry,
    hyperparameter_names,
    preset_hyperparameters,
    preset_names,
    takes,
)
from trainables.spec.lr_scaling import LR_SCALING, scaled_lr

PRECISION_NAMES = ("auto", "fp32", "bf16")
# attention_preset's value for "the hyperparameters published for the run's own dataset", so that a study
# run on another dataset (--set dataset=tinyimagenet) takes that dataset's, from the loss catalog.
FROM_DATASET = "dataset"
# Registry names of the torch modules (trainables/core/models.py, trainables/core/optim.py), kept here so that
# validation and --help never import torch; tests/test_config.py checks they equal the registries. Once a
# module is imported its registry is read instead (see ``registry``), so a name registered at run time counts.
BACKBONE_NAMES = ("resnet18", "resnet50", "small")
HEAD_NAMES = ("mlp", "mlp_bn")
OPTIMIZER_NAMES = ("lars", "sgd", "adam")
SCHEDULE_NAMES = ("cosine", "constant")

# Bounds on what has no natural bound: far beyond any paper's setting, small enough that a typo
# fails here instead of exhausting memory inside a worker.
MAX_VIEWS = 64  # M; the papers go to M = 8 (AttentionNCE) and every view is an encoder pass
MAX_BATCH_SIZE = 1 << 17  # SimCLR's largest batch is 8,192
MAX_EPOCHS = 100_000
RAY_RESOURCE_STEP = 0.0001
MAX_WORKERS = 4096
MAX_PROJ_DIM = 1 << 16
MAX_IMAGE_SIZE = 4096  # pixels a side; ImageNet trains at 224
MAX_KNN_K = 100_000
MAX_TAGS = 100
MAX_TEXT = 1000  # characters of a free-text value (paths, URIs, tag values)
# Hue jitter is 0.2 s and torchvision's hue shift must stay within [-0.5, 0.5]; trainables/core/augment.py
# reads the same bound, so the driver refuses what the augmentation would.
MAX_JITTER_STRENGTH = 2.5

# Run, study and experiment names: one character set, safe as a folder name, inside an MLflow
# filter string and in Ray's metric names. Starts with a letter or digit, so never "." or "..".
NAME_CHARS = "letters, digits, '.', '_', '-' (starting with a letter or digit, at most 100 characters)"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
TAG_KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,249}")

MAX_MESSAGE_CHARS = 4000  # an error message stays readable, whatever the input
_VALUE_REPR = reprlib.Repr()
_VALUE_REPR.maxstring, _VALUE_REPR.maxother, _VALUE_REPR.maxlevel = 80, 80, 3
_VALUE_REPR.maxlist = _VALUE_REPR.maxtuple = _VALUE_REPR.maxdict = _VALUE_REPR.maxset = 8


def shown(value: Any) -> str:
    """``repr(value)``, shortened: a value from a file or a flag can be arbitrarily large."""
    return _VALUE_REPR.repr(value)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: the fields it involves, the value, and the sentence that says so.

    Attributes:
        fields: the offending fields (two for a rule between fields, e.g. batch_size and workers).
        message: the full sentence, naming field, value and what is allowed.
    """

    fields: tuple[str, ...]
    message: str

    def __str__(self) -> str:
        return self.message


def problem(name: str, value: Any, allowed: str) -> Problem:
    """The usual problem: ``name=value is not allowed; allowed``."""
    return Problem((name,), f"{name}={shown(value)} is not allowed; {allowed}")


class ConfigError(ValueError):
    """Bad configuration; ``problems`` names every bad field as data, the message says the rest.

    ``ConfigError("text")`` is one problem without a field (a missing file, a flag clash).
    """

    def __init__(self, problems: str | Problem | Iterable[Problem], *, header: str = "invalid configuration") -> None:
        if isinstance(problems, str):
            problems = [Problem((), problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        self.header = header
        super().__init__(self._text())

    @property
    def fields(self) -> set[str]:
        return {name for p in self.problems for name in p.fields}

    def within(self, context: str) -> ConfigError:
        """The same problems, with ``context`` (a file, a trial) in front of the message."""
        return ConfigError(self.problems, header=f"{context}: {self.header}" if self.header else context)

    def _text(self) -> str:
        lines = [p.message for p in self.problems]
        if len(lines) == 1 and not lines[0].startswith(self.header):
            text = f"{self.header}: {lines[0]}" if self.header and self.problems[0].fields else lines[0]
        else:
            text = f"{self.header}:\n  - " + "\n  - ".join(lines)
        if len(text) > MAX_MESSAGE_CHARS:
            text = text[: MAX_MESSAGE_CHARS - 40] + f" ... ({len(text):,} characters in all)"
        return text


def registry(module: str, name: str, names: tuple[str, ...]) -> Callable[[], tuple[str, ...]]:
    """The keys of ``module.name`` if that module is loaded (it may have grown), else ``names``, without importing it."""
    return lambda: tuple(getattr(sys.modules[module], name)) if module in sys.modules else names


# --- checks: each returns the problems of one rule ------------------------------------------------

Check = Callable[[Any], list[Problem]]


def one_of(name: str, registry: Iterable[str] | Callable[[], Iterable[str]], *, optional: bool = False) -> Check:
    """The field's value must be a name in ``registry``, read at check time (registries may grow)."""

    def check(cfg: Any) -> list[Problem]:
        value, allowed = getattr(cfg, name), tuple(registry() if callable(registry) else registry)
        if value in allowed or (optional and value is None):
            return []
        close = difflib.get_close_matches(value, allowed, 1) if isinstance(value, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return [problem(name, value, f"allowed: {', '.join(allowed)}{hint}")]

    check.field, check.allowed = name, lambda: f"one of {', '.join(registry() if callable(registry) else registry)}"  # type: ignore[attr-defined]
    return check


def finite(value: float) -> bool:
    return isinstance(value, int) or math.isfinite(value)  # ints are finite, however large


def number(value: float) -> str:
    """A bound as people write it: 4294967296 rather than 4.29497e+09, 0.5 rather than 0.500000."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _bounded(value: float, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    above = low is None or (value > low if low_open else value >= low)
    below = high is None or (value < high if high_open else value <= high)
    return finite(value) and above and below


def between(name: str, low: float | None, high: float | None = None, *, low_open: bool = False, high_open: bool = False) -> Check:
    """low <= value <= high (either end open or absent); None passes (the field's own default)."""
    if high is None:
        allowed = f"it must be a finite number {'>' if low_open else '>='} {low}"
    else:
        allowed = f"it must be in {'(' if low_open else '['}{number(low)}, {number(high)}{')' if high_open else ']'}"

    def check(cfg: Any) -> list[Problem]:
        value = getattr(cfg, name)
        if value is None or _bounded(value, low, high, low_open, high_open):
            return []
        return [problem(name, value, allowed)]

    check.field, check.allowed = name, lambda: allowed.removeprefix("it must be ")  # type: ignore[attr-defined]
    return check


def at_least(name: str, low: float, *, strict: bool = False) -> Check:
    return between(name, low, low_open=strict)


def a_name(name: str, *, optional: bool = False) -> Check:
    """A run, study or experiment name: NAME_CHARS, so it is safe as a folder and in a query."""

    def check(cfg: Any) -> list[Problem]:
        value = getattr(cfg, name)
        if (value is None and optional) or NAME_PATTERN.fullmatch(value):
            return []
        return [problem(name, value, f"a name is made of {NAME_CHARS}")]

    check.field, check.allowed = name, lambda: f"a name of {NAME_CHARS}"  # type: ignore[attr-defined]
    return check


def a_text(name: str) -> Check:
    """Free text (a path, a URI): bounded, and without the NUL byte that no file system accepts."""

    def check(cfg: Any) -> list[Problem]:
        value = getattr(cfg, name)
        if value is None or (len(value) <= MAX_TEXT and "\0" not in value and value.strip()):
            return []
        return [problem(name, value, f"it must be non-empty text of at most {MAX_TEXT} characters without NUL bytes")]

    return check


def channel_values(name: str, *, positive: bool = False) -> Check:
    """A per-channel statistic: None (the dataset's own) or one finite number per channel, each > 0 if ``positive``."""
    allowed = f"None (the dataset's own) or a list of {CHANNELS} finite numbers{' > 0' if positive else ''}, one per channel (R, G, B)"

    def check(cfg: Any) -> list[Problem]:
        value = getattr(cfg, name)
        if value is None or (len(value) == CHANNELS and (not positive or min(value) > 0)):  # coerce made them finite floats
            return []
        return [problem(name, list(value), f"allowed: {allowed}")]

    check.field, check.allowed = name, lambda: allowed  # type: ignore[attr-defined]
    return check


def statistics_together(cfg: Any) -> list[Problem]:
    """data_mean and data_std both given or both None: a mean of one's own with the dataset's std (or the
    reverse) would normalise with statistics of two different origins."""
    if (cfg.data_mean is None) == (cfg.data_std is None):
        return []
    given, missing = ("data_mean", "data_std") if cfg.data_std is None else ("data_std", "data_mean")
    message = (
        f"{given}={shown(list(getattr(cfg, given)))} was given but {missing}=None; "
        "allowed: both (statistics of your own) or neither (the dataset's own)"
    )
    return [Problem(("data_mean", "data_std"), message)]


def tags_are_bounded(cfg: Any) -> list[Problem]:
    bad = [k for k, v in cfg.tags.items() if not TAG_KEY_PATTERN.fullmatch(k) or len(v) > MAX_TEXT]
    if len(cfg.tags) <= MAX_TAGS and not bad:
        return []
    return [problem("tags", cfg.tags, f"at most {MAX_TAGS} tags; keys of letters, digits, '._/-', values of at most {MAX_TEXT} characters")]


# --- the pretraining config --------------------------------------------------------------------------


def with_loss_hyperparameters(cls: type) -> type:
    """``cls`` with one field per hyperparameter the catalog's losses take, after ``views``.

    Each is ``float | None``, None meaning the loss's own default. Generated (before
    ``@dataclass`` reads the annotations) so that a loss with a new hyperparameter needs no edit
    here: ``--set tau_plus=0.1``, YAML keys, flags and MLflow params all follow from the field.
    """
    annotations: dict[str, Any] = {}
    for name, kind in cls.__annotations__.items():
        annotations[name] = kind
        if name == "views":
            for hyperparameter in hyperparameter_names():
                annotations[hyperparameter] = "float | None"
                setattr(cls, hyperparameter, None)
    cls.__annotations__ = annotations
    return cls


@dataclass(frozen=True)
@with_loss_hyperparameters
class PretrainConfig:
    # What is compared. The losses' hyperparameters follow views (see with_loss_hyperparameters).
    loss: str = BASELINE
    views: int = 1
    attention_preset: str | None = None  # a dataset whose published hyperparameters the loss takes; FROM_DATASET: the run's
    # Data.
    dataset: str = "cifar10"
    data_dir: str = "data"
    download: bool = False
    limit_train: int | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    image_size: int | None = None  # None: the dataset's own; an image folder's is measured from its files
    load_size: int | None = None  # None: follows from image_size (trainables/core/data/folders.py)
    in_memory_gb: float = DEFAULT_IN_MEMORY_GB  # image folders up to this size are decoded once and held in memory
    cache_dir: str | None = None  # decoded images and statistics of image folders; None: DATA_DIR/.nce-cache
    # Per-channel statistics the images are normalised with, for pretraining and evaluation alike; they win over
    # the dataset's constants and computed ones. None: the dataset's constants, else computed from its images.
    data_mean: tuple[float, ...] | None = None
    data_std: tuple[float, ...] | None = None
    # Model.
    backbone: str = "resnet18"
    head: str = "mlp_bn"
    proj_dim: int = 128
    # Optimisation. batch_size is the global batch, split evenly over the workers.
    epochs: int = 400
    batch_size: int = 256
    lr: float = 1e-3
    optimizer: str = "adam"
    lr_scaling: str = "none"
    weight_decay: float = 1e-6
    momentum: float = 0.9
    schedule: str = "constant"
    warmup_epochs: int = 0
    # Augmentation (None: the dataset's default).
    jitter_strength: float | None = None
    blur_prob: float | None = None
    # Evaluation and checkpoints.
    n_eval_epochs: int = 5
    n_save_epochs: int = 20
    knn_k: int = 200
    knn_temperature: float = 0.1
    save_dir: str = "checkpoints"
    # Resources and numerics.
    workers: int = 1
    gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 1.0  # with gpu: a fraction lets several trials' workers share one GPU
    seed: int = 0
    precision: str = "auto"
    compile: bool = False
    gather: bool = True
    # Tracking.
    tracking_uri: str | None = None
    experiment: str = "nce-study"
    run_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(self, PRETRAIN_CHECKS)

    @property
    def views_per_image(self) -> int:
        """V, the encoder passes per image (M + 1, or M + 2 for AttentionNCE: the catalog's rule)."""
        return CATALOG[self.loss].views_per_image(self.views)

    @property
    def effective_lr(self) -> float:
        """The learning rate after the lr_scaling rule, as the optimiser sees it."""
        return scaled_lr(self.lr, self.batch_size, self.lr_scaling)

    def loss_hyperparameters(self) -> dict[str, float]:
        """The hyperparameters given for this loss (its own defaults fill the rest)."""
        given = {name: getattr(self, name) for name in hyperparameter_names() if getattr(self, name) is not None}
        published = CATALOG[self.loss].presets.get(self.published_for or "", {})
        return dict(published) | given

    @property
    def published_for(self) -> str | None:
        """The dataset whose published hyperparameters the loss takes (``attention_preset`` resolved)."""
        return self.dataset if self.attention_preset == FROM_DATASET else self.attention_preset

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> PretrainConfig:
        return from_dict(self.to_dict() | changes)


def hyperparameters_in_range(cfg: PretrainConfig) -> list[Problem]:
    """Each loss hyperparameter within the range the catalog allows every loss taking it."""
    found = ((name, HYPERPARAMETERS[name].problem(getattr(cfg, name))) for name in hyperparameter_names())
    return [Problem((name,), message) for name, message in found if message]


def hyperparameters_fit_the_loss(cfg: PretrainConfig) -> list[Problem]:
    if cfg.loss not in CATALOG:
        return []
    entry = CATALOG[cfg.loss]
    given = [n for n in hyperparameter_names() if getattr(cfg, n) is not None and n not in entry.hyperparameters]
    if cfg.attention_preset is not None and not entry.presets:
        given.append("attention_preset")
    problems = [
        Problem((n,), f"{n}={shown(getattr(cfg, n))} does not apply to loss={cfg.loss!r}, which takes: {takes(cfg.loss)}") for n in given
    ]
    if entry.presets and cfg.attention_preset in set(preset_names()) - set(entry.presets):  # published for another loss only
        allowed = ", ".join(entry.presets)
        message = f"attention_preset={cfg.attention_preset!r} is not published for loss={cfg.loss!r}; allowed: {allowed}"
        problems.append(Problem(("attention_preset",), message))
    return problems + unpublished_dataset(cfg, entry)


def unpublished_dataset(cfg: PretrainConfig, entry: LossEntry) -> list[Problem]:
    """attention_preset=FROM_DATASET on a dataset the loss's paper published nothing for, unless every value is given."""
    unset = [name for name in preset_hyperparameters() if name in entry.hyperparameters and getattr(cfg, name) is None]
    if cfg.attention_preset != FROM_DATASET or not entry.presets or cfg.dataset in entry.presets or not unset:
        return []
    message = (
        f"attention_preset={FROM_DATASET!r} takes the values loss={cfg.loss!r} published for dataset={cfg.dataset!r}, and there are "
        f"none; allowed: a dataset it published them for ({', '.join(entry.presets)}), or {', '.join(unset)} given"
    )
    return [Problem(("attention_preset", "dataset"), message)]


def workers_divide_batch(cfg: PretrainConfig) -> list[Problem]:
    if cfg.workers >= 1 and cfg.batch_size % cfg.workers:
        message = f"batch_size={cfg.batch_size} is not divisible by workers={cfg.workers}: each worker takes batch_size / workers images"
        return [Problem(("batch_size", "workers"), message)]
    return []


def warmup_fits(cfg: PretrainConfig) -> list[Problem]:
    if cfg.warmup_epochs >= cfg.epochs >= 1 and cfg.schedule == "cosine":
        return [problem("warmup_epochs", cfg.warmup_epochs, f"it must be < epochs={cfg.epochs}")]
    return []


PRETRAIN_CHECKS: list[Check] = [
    one_of("loss", CATALOG),
    one_of("dataset", DATASETS),
    one_of("backbone", registry("trainables.core.models", "BACKBONES", BACKBONE_NAMES)),
    one_of("head", registry("trainables.core.models", "HEADS", HEAD_NAMES)),
    one_of("optimizer", registry("trainables.core.optim", "OPTIMIZERS", OPTIMIZER_NAMES)),
    one_of("lr_scaling", LR_SCALING),
    one_of("schedule", registry("trainables.core.optim", "SCHEDULES", SCHEDULE_NAMES)),
    one_of("precision", PRECISION_NAMES),
    one_of("attention_preset", lambda: (*preset_names(), FROM_DATASET), optional=True),
    between("views", 1, MAX_VIEWS),
    between("batch_size", 2, MAX_BATCH_SIZE),
    between("epochs", 1, MAX_EPOCHS),
    at_least("lr", 0, strict=True),
    hyperparameters_in_range,
    at_least("limit_train", 1),
    between("val_fraction", 0, 1, low_open=True, high_open=True),  # both train and val need images
    at_least("split_seed", 0),
    between("image_size", 1, MAX_IMAGE_SIZE),
    between("load_size", 1, MAX_IMAGE_SIZE),
    at_least("in_memory_gb", 0),
    a_text("cache_dir"),
    channel_values("data_mean"),
    channel_values("data_std", positive=True),
    statistics_together,
    between("proj_dim", 1, MAX_PROJ_DIM),
    at_least("weight_decay", 0),
    between("momentum", 0, 1, high_open=True),
    at_least("warmup_epochs", 0),
    at_least("n_eval_epochs", 1),
    at_least("n_save_epochs", 1),
    between("knn_k", 1, MAX_KNN_K),
    at_least("knn_temperature", 0, strict=True),
    between("workers", 1, MAX_WORKERS),
    between("seed", 0, 2**32, high_open=True),  # SeedSequence takes seeds >= 0 (trainables/core/data/order.py)
    # Ray counts resources in steps of 0.0001: a smaller share is no share at all.
    between("cpus_per_worker", RAY_RESOURCE_STEP, MAX_WORKERS),
    between("gpus_per_worker", RAY_RESOURCE_STEP, 1),  # one process drives one device
    between("jitter_strength", 0, MAX_JITTER_STRENGTH),
    between("blur_prob", 0, 1),
    a_text("data_dir"),
    a_text("save_dir"),
    a_text("tracking_uri"),
    a_name("experiment"),
    a_name("run_name", optional=True),
    tags_are_bounded,
    hyperparameters_fit_the_loss,
    workers_divide_batch,
    warmup_fits,
]


def allowed_text(checks: list[Check]) -> dict[str, str]:
    """Field -> what its single-field rule allows, in words (for --help, from the rules themselves)."""
    return {check.field: check.allowed() for check in checks if hasattr(check, "field")}


# --- types and the one validation path --------------------------------------------------------------


def annotation_kinds(annotation: Any) -> tuple[Any, ...]:
    """The types a field's annotation allows: each member of ``X | Y``, else the annotation itself."""
    return typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)


def coerce(name: str, value: Any, annotation: Any) -> Any:
    """``value`` as the field's type, or a ConfigError naming the field; ints widen to floats."""
    allowed = annotation_kinds(annotation)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        base = typing.get_origin(kind) or kind
        if base is bool and isinstance(value, bool):
            return value
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            number = finite_float(value)
            if number is None:
                raise ConfigError(problem(name, value, "it must be a finite number"))
            return number
        if base is tuple and isinstance(value, (list, tuple)):  # a YAML list; a tuple keeps the frozen config immutable
            numbers = [finite_float(v) for v in value]
            if None in numbers:
                raise ConfigError(problem(name, value, "it must be a list of finite numbers"))
            return tuple(numbers)
        if base is str and isinstance(value, str):
            return value
        if base is dict and isinstance(value, dict):
            if all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                return value
            raise ConfigError(problem(name, value, "its keys and values must be strings (quote numbers in YAML)"))
    names = " or ".join(type_name(k) for k in allowed)
    raise ConfigError(Problem((name,), f"{name}={shown(value)} has type {type(value).__name__}; expected {names}"))


def finite_float(value: Any) -> float | None:
    """``value`` as a float, or None where it is not a finite number (a bool, inf, an int beyond any float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float (e.g. 400 digits in a YAML file)
        return None
    return number if math.isfinite(number) else None


def type_name(annotation: Any) -> str:
    """A field type as a config's author writes it: a YAML list, not a Python tuple."""
    if annotation is type(None):
        return "None"
    base = typing.get_origin(annotation) or annotation
    return "list of numbers" if base is tuple else getattr(base, "__name__", str(annotation))


def type_problems(config_class: type, values: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """(the values coerced to their fields' types, the problems of those that could not be)."""
    hints, typed, problems = typing.get_type_hints(config_class), {}, []
    for key, value in values.items():
        try:
            typed[key] = coerce(key, value, hints[key])
        except ConfigError as err:
            problems += err.problems
    return typed, problems


def validate(instance: Any, checks: list[Check]) -> None:
    """The one validation path of every config dataclass: types first, then every check at once."""
    typed, problems = type_problems(type(instance), {f.name: getattr(instance, f.name) for f in fields(instance)})
    if problems:
        raise ConfigError(problems)
    for name, value in typed.items():
        object.__setattr__(instance, name, value)  # ints widened to floats where the field is a float
    problems = [p for check in checks for p in check(instance)]
    if problems:
        raise ConfigError(problems)


def unknown_keys(values: dict[Any, Any], known: Iterable[str], kind: str = "config key") -> list[Problem]:
    """A problem per unknown key, with the closest known one when there is one."""
    known = sorted(known)
    problems = []
    for key in sorted(set(values) - set(known), key=str):
        close = difflib.get_close_matches(key, known, 1) if isinstance(key, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(Problem((str(key),), f"unknown {kind} {shown(key)}{hint}; allowed: {', '.join(known)}"))
    return problems


def build(config_class: type, values: dict[str, Any], checks: list[Check]) -> Any:
    """A validated ``config_class`` from plain values; every problem (unknown key, wrong type, range) at once."""
    known = {f.name for f in fields(config_class)}
    problems = unknown_keys(values, known)
    typed, type_errors = type_problems(config_class, {k: v for k, v in values.items() if k in known})
    problems += type_errors
    if not problems:
        return config_class(**typed)
    # Check the well-typed values too, leaving out what involves a field already reported.
    mistyped = {k for k in values if k in known and k not in typed}
    defaults = {f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default for f in fields(config_class)}  # type: ignore[misc]
    given = types.SimpleNamespace(**(defaults | typed))
    problems += [p for check in checks for p in check(given) if not mistyped & set(p.fields)]
    raise ConfigError(problems)


def from_dict(values: dict[str, Any]) -> PretrainConfig:
    """A validated pretraining config from plain values; unknown keys and wrong types are errors."""
    return build(PretrainConfig, values, PRETRAIN_CHECKS)


# --- evaluation ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """How the classifier is trained, from a seed's evaluation script."""

    optimizer: str
    lr: float
    weight_decay: float
    momentum: float = 0.0
    schedule: str = "constant"


RECIPES: dict[str, Recipe] = {
    "attentionnce": Recipe("adam", lr=1e-3, weight_decay=1e-6),  # linear.py of the AttentionNCE lineage
    "flatclr": Recipe("sgd", lr=1.6, weight_decay=0.0, momentum=0.9, schedule="cosine"),  # train_fc.py
}
EVAL_MODES = ("linear", "finetune", "knn")


@dataclass(frozen=True)
class EvalConfig:
    mode: str = "linear"
    recipe: str = "attentionnce"
    epochs: int = 100
    batch_size: int = 512
    lr: float | None = None  # None: the recipe's
    data_dir: str | None = None  # None: the pretraining run's
    knn_k: int = 200
    knn_temperature: float = 0.1
    gpu: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        validate(self, EVAL_CHECKS)


EVAL_CHECKS: list[Check] = [
    one_of("mode", EVAL_MODES),
    one_of("recipe", RECIPES),
    between("epochs", 1, MAX_EPOCHS),
    between("batch_size", 1, MAX_BATCH_SIZE),
    at_least("lr", 0, strict=True),
    a_text("data_dir"),
    between("knn_k", 1, MAX_KNN_K),
    at_least("knn_temperature", 0, strict=True),
    between("seed", 0, 2**32, high_open=True),
]


def eval_from_dict(values: dict[str, Any]) -> EvalConfig:
    """A validated evaluation config from plain values; unknown keys and wrong types are errors."""
    return build(EvalConfig, values, EVAL_CHECKS)


# --- YAML ---------------------------------------------------------------------------------------------

MAX_CONFIG_BYTES = 1 << 20  # a config file is a few hundred bytes; a larger one is not a config
MAX_YAML_VALUES = 10_000  # values after alias expansion: a 270-byte alias bomb expands to millions


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that 1e-3 and 5e+2 are floats, as in YAML 1.2 (PyYAML follows
    YAML 1.1, which wants a dot and a signed exponent, and reads 1e-3 as the string '1e-3')."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"), list("-+0123456789.")
)


def _expanded_size(value: Any, budget: int) -> int:
    """How many values ``value`` holds once aliases are expanded, counting no further than ``budget``."""
    count, stack = 0, [value]
    while stack and count <= budget:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple)):
            stack += item
    return count


def load_yaml(text: str, source: str = "YAML") -> Any:
    """YAML as config values: safe (no Python objects), 1e-3 read as a number, sizes bounded.

    Raises:
        ConfigError: naming ``source``, for text that is too long, not YAML, or expands beyond
            MAX_YAML_VALUES values through aliases.
    """
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: {len(text):,} characters; a configuration holds at most {MAX_CONFIG_BYTES:,}")
    try:
        value = yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, RecursionError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{source} is not valid YAML: {first[:200]}") from None
    if _expanded_size(value, MAX_YAML_VALUES) > MAX_YAML_VALUES:
        raise ConfigError(f"{source} expands to more than {MAX_YAML_VALUES:,} values (YAML aliases?); a configuration is smaller")
    return value


def read_yaml_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file, or a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config={str(path)!r}: no such file")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config={str(path)!r}: {path.stat().st_size:,} bytes; a configuration holds at most {MAX_CONFIG_BYTES:,}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config={str(path)!r} is not UTF-8 text") from None
    loaded = load_yaml(text, source=f"config={str(path)!r}")
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config={str(path)!r} must hold a mapping of field: value, not {type(loaded).__name__}")
    return loaded


def from_file(problems: list[Problem], path: str | Path, keys: Iterable[str]) -> list[Problem]:
    """``problems``, those that involve only ``keys`` read from the file at ``path`` said to be that file's."""
    keys = set(keys)
    return [Problem(p.fields, f"in config={str(path)!r}: {p.message}") if p.fields and set(p.fields) <= keys else p for p in problems]


def from_yaml(path: str | Path, overrides: dict[str, Any] | None = None) -> PretrainConfig:
    """A config from a YAML mapping, with ``overrides`` (e.g. from flags) on top; a bad key names the file."""
    loaded, overrides = read_yaml_file(path), overrides or {}
    try:
        return from_dict(loaded | overrides)
    except ConfigError as err:
        raise ConfigError(from_file(err.problems, path, set(loaded) - set(overrides))) from None
