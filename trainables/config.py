"""The one typed configuration of a pretraining run, validated before anything starts.

Defaults follow the AttentionNCE seed's command line (``--epochs 400 --batch_size 256
--lr 1e-3``, Adam, no schedule). ``views`` is M, the positive views per anchor.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

import yaml

from trainables.data import DATASETS, DEFAULT_IN_MEMORY_GB
from trainables.losses.catalog import BASELINE, CATALOG, HYPERPARAMETERS, hyperparameter_names, preset_names, takes
from trainables.models import BACKBONES, HEADS
from trainables.optim import LR_SCALING, OPTIMIZERS, SCHEDULES, scaled_lr

PRECISION_NAMES = ("auto", "fp32", "bf16")


class ConfigError(ValueError):
    """Bad configuration; the message names every bad field, its value and what is allowed."""


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
    attention_preset: str | None = None  # a dataset name whose hyperparameters the loss's paper published
    # Data.
    dataset: str = "cifar10"
    data_dir: str = "data"
    download: bool = False
    limit_train: int | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    image_size: int | None = None  # None: the dataset's own; an image folder's is measured from its files
    load_size: int | None = None  # None: follows from image_size (trainables/data/folders.py)
    in_memory_gb: float = DEFAULT_IN_MEMORY_GB  # image folders up to this size are decoded once and held in memory
    cache_dir: str | None = None  # decoded images and statistics of image folders; None: DATA_DIR/.nce-cache
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
        problems = [p for check in CHECKS for p in check(self)]
        if problems:
            raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))

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
        if self.attention_preset is not None:
            given = dict(CATALOG[self.loss].presets[self.attention_preset]) | given
        return given

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> PretrainConfig:
        return from_dict(self.to_dict() | changes)


def one_of(name: str, registry: Iterable[str], *, optional: bool = False):
    """The field's value must be a name in ``registry``, read at check time (registries may grow)."""

    def check(cfg: PretrainConfig) -> list[str]:
        value, allowed = getattr(cfg, name), tuple(registry)
        if value in allowed or (optional and value is None):
            return []
        return [f"{name}={value!r} is not allowed; allowed: {', '.join(allowed)}"]

    return check


def _finite(value: float) -> bool:
    return isinstance(value, int) or math.isfinite(value)  # ints are finite, however large


def at_least(name: str, low: float, *, strict: bool = False):
    def check(cfg: PretrainConfig) -> list[str]:
        value = getattr(cfg, name)
        if value is None or (_finite(value) and (value > low if strict else value >= low)):
            return []
        finite = "" if _finite(value) else "a finite number "
        return [f"{name}={value!r} is not allowed; it must be {finite}{'>' if strict else '>='} {low}"]

    return check


def in_range(name: str, low: float, high: float, *, closed: bool = False, open_low: bool = False):
    def check(cfg: PretrainConfig) -> list[str]:
        value = getattr(cfg, name)
        if value is None or (low < value if open_low else low <= value) and (value <= high if closed else value < high):
            return []
        return [f"{name}={value!r} is not allowed; it must be in {'(' if open_low else '['}{low}, {high}{']' if closed else ')'}"]

    return check


def non_empty(name: str):
    def check(cfg: PretrainConfig) -> list[str]:
        value = getattr(cfg, name)
        return [] if value.strip() else [f"{name}={value!r} is not allowed; it must be a non-empty name"]

    return check


def hyperparameters_in_range(cfg: PretrainConfig) -> list[str]:
    """Each loss hyperparameter within the range the catalog allows every loss taking it."""
    problems = (HYPERPARAMETERS[name].problem(getattr(cfg, name)) for name in hyperparameter_names())
    return [problem for problem in problems if problem]


def hyperparameters_fit_the_loss(cfg: PretrainConfig) -> list[str]:
    if cfg.loss not in CATALOG:
        return []
    entry = CATALOG[cfg.loss]
    given = [n for n in hyperparameter_names() if getattr(cfg, n) is not None and n not in entry.hyperparameters]
    if cfg.attention_preset is not None and not entry.presets:
        given.append("attention_preset")
    problems = [f"{n}={getattr(cfg, n)!r} does not apply to loss={cfg.loss!r}, which takes: {takes(cfg.loss)}" for n in given]
    if entry.presets and cfg.attention_preset in set(preset_names()) - set(entry.presets):  # published for another loss only
        allowed = ", ".join(entry.presets)
        problems.append(f"attention_preset={cfg.attention_preset!r} is not published for loss={cfg.loss!r}; allowed: {allowed}")
    return problems


def workers_divide_batch(cfg: PretrainConfig) -> list[str]:
    if cfg.workers >= 1 and cfg.batch_size % cfg.workers:
        return [f"batch_size={cfg.batch_size} is not divisible by workers={cfg.workers}: each worker takes batch_size / workers images"]
    return []


def warmup_fits(cfg: PretrainConfig) -> list[str]:
    if cfg.warmup_epochs >= cfg.epochs >= 1 and cfg.schedule == "cosine":
        return [f"warmup_epochs={cfg.warmup_epochs} is not allowed; it must be < epochs={cfg.epochs}"]
    return []


CHECKS = [
    one_of("loss", CATALOG),
    one_of("dataset", DATASETS),
    one_of("backbone", BACKBONES),
    one_of("head", HEADS),
    one_of("optimizer", OPTIMIZERS),
    one_of("lr_scaling", LR_SCALING),
    one_of("schedule", SCHEDULES),
    one_of("precision", PRECISION_NAMES),
    one_of("attention_preset", preset_names(), optional=True),
    at_least("views", 1),
    at_least("batch_size", 2),
    at_least("epochs", 1),
    at_least("lr", 0, strict=True),
    hyperparameters_in_range,
    at_least("limit_train", 1),
    in_range("val_fraction", 0, 1, open_low=True),  # both train and val need images
    at_least("image_size", 1),
    at_least("load_size", 1),
    at_least("in_memory_gb", 0),
    at_least("proj_dim", 1),
    at_least("weight_decay", 0),
    in_range("momentum", 0, 1),
    at_least("warmup_epochs", 0),
    at_least("n_eval_epochs", 1),
    at_least("n_save_epochs", 1),
    at_least("knn_k", 1),
    at_least("knn_temperature", 0, strict=True),
    at_least("workers", 1),
    in_range("seed", 0, 2**32),  # SeedSequence takes seeds >= 0 (trainables/data/order.py)
    at_least("cpus_per_worker", 0, strict=True),
    in_range("gpus_per_worker", 0, 1, closed=True, open_low=True),  # one process drives one device
    at_least("jitter_strength", 0),
    in_range("blur_prob", 0, 1, closed=True),
    non_empty("experiment"),
    hyperparameters_fit_the_loss,
    workers_divide_batch,
    warmup_fits,
]


def _types() -> dict[str, Any]:
    return typing.get_type_hints(PretrainConfig)


def coerce(name: str, value: Any, annotation: Any) -> Any:
    """``value`` as the field's type, or a ConfigError naming the field; ints widen to floats."""
    allowed = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        base = typing.get_origin(kind) or kind
        if base is bool and isinstance(value, bool):
            return value
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:  # an int beyond any float (e.g. 400 digits in a YAML file)
                raise ConfigError(f"{name}={value!r} is not allowed; it must be a finite number") from None
        if base is str and isinstance(value, str):
            return value
        if base is dict and isinstance(value, dict):
            if all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                return value
            raise ConfigError(f"{name}={value!r} is not allowed; its keys and values must be strings (quote numbers in YAML)")
    names = " or ".join("None" if k is type(None) else getattr(typing.get_origin(k) or k, "__name__", str(k)) for k in allowed)
    raise ConfigError(f"{name}={value!r} has type {type(value).__name__}; expected {names}")


def _defaults() -> dict[str, Any]:
    return {f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default for f in fields(PretrainConfig)}  # type: ignore[misc]


def from_dict(values: dict[str, Any]) -> PretrainConfig:
    """A validated config from plain values; unknown keys and wrong types are errors.

    The message names every bad field at once: unknown keys, wrong types, and the values out
    of range among the rest.
    """
    known = {f.name for f in fields(PretrainConfig)}
    problems = []
    unknown = sorted(set(values) - known, key=str)
    if unknown:
        hints = [f"{k!r}" + (f" (did you mean {close[0]!r}?)" if isinstance(k, str) and (close := difflib.get_close_matches(k, known, 1)) else "") for k in unknown]
        problems.append(f"unknown config key(s): {', '.join(hints)}")
    hints_by_field, typed = _types(), {}
    for key, value in values.items():
        if key in known:
            try:
                typed[key] = coerce(key, value, hints_by_field[key])
            except ConfigError as err:
                problems.append(str(err))
    if not problems:
        return PretrainConfig(**typed)
    # Check the well-typed values too, leaving out what involves a field already reported.
    mistyped = [re.compile(rf"\b{re.escape(k)}=") for k in values if k in known and k not in typed]
    given = types.SimpleNamespace(**(_defaults() | typed))
    problems += [p for check in CHECKS for p in check(given) if not any(m.search(p) for m in mistyped)]  # type: ignore[arg-type]
    raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that 1e-3 and 5e+2 are floats, as in YAML 1.2 (PyYAML follows
    YAML 1.1, which wants a dot and a signed exponent, and reads 1e-3 as the string '1e-3')."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"), list("-+0123456789.")
)


def load_yaml(text: str) -> Any:
    """YAML as config values: safe (no Python objects), with 1e-3 read as a number."""
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass


def from_yaml(path: str | Path, overrides: dict[str, Any] | None = None) -> PretrainConfig:
    """A config from a YAML mapping, with ``overrides`` (e.g. from flags) on top."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config={str(path)!r}: no such file")
    try:
        loaded = load_yaml(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"config={str(path)!r} is not valid YAML: {err}") from err
    if not isinstance(loaded, dict):
        raise ConfigError(f"config={str(path)!r} must hold a mapping of field: value, not {type(loaded).__name__}")
    return from_dict(loaded | (overrides or {}))
