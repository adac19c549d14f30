"""The pretraining config: what a run compares, on which data, with which model and optimiser, where it records.

Defaults follow the AttentionNCE seed's command line (``--epochs 400 --batch_size 256
--lr 1e-3``, Adam, no schedule). ``views`` is M, the positive views per anchor. The names a
field may take (losses, datasets, backbones, heads, optimisers, schedules) are read from their
catalogs, so a name added there is allowed here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from trainables.spec import backbones, optimizers
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
from trainables.spec.validation import (
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_IMAGE_SIZE,
    MAX_JITTER_STRENGTH,
    MAX_KNN_K,
    MAX_PROJ_DIM,
    MAX_TAGS,
    MAX_TEXT,
    MAX_VIEWS,
    MAX_WORKERS,
    RAY_RESOURCE_STEP,
    TAG_KEY_PATTERN,
    Check,
    Problem,
    a_name,
    a_text,
    at_least,
    between,
    build,
    one_of,
    problem,
    shown,
    validate,
)

PRECISION_NAMES = ("auto", "fp32", "bf16")
# The value of published_hyperparameters meaning "those published for the run's own dataset", so that a study
# run on another dataset (--set dataset=tinyimagenet) takes that dataset's, from the loss catalog.
FROM_DATASET = "dataset"


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
    # A dataset whose hyperparameters, as the loss's paper published them for it, the loss takes; FROM_DATASET: the run's.
    published_hyperparameters: str | None = None
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
        """The dataset whose published hyperparameters the loss takes (``published_hyperparameters`` resolved)."""
        return self.dataset if self.published_hyperparameters == FROM_DATASET else self.published_hyperparameters

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
    if cfg.published_hyperparameters is not None and not entry.presets:
        given.append("published_hyperparameters")
    problems = [
        Problem((n,), f"{n}={shown(getattr(cfg, n))} does not apply to loss={cfg.loss!r}, which takes: {takes(cfg.loss)}") for n in given
    ]
    if entry.presets and cfg.published_hyperparameters in set(preset_names()) - set(entry.presets):  # published for another loss only
        allowed = ", ".join(entry.presets)
        message = f"published_hyperparameters={cfg.published_hyperparameters!r} is not published for loss={cfg.loss!r}; allowed: {allowed}"
        problems.append(Problem(("published_hyperparameters",), message))
    return problems + unpublished_dataset(cfg, entry)


def unpublished_dataset(cfg: PretrainConfig, entry: LossEntry) -> list[Problem]:
    """published_hyperparameters=FROM_DATASET on a dataset the loss's paper published nothing for, unless every value is given."""
    unset = [name for name in preset_hyperparameters() if name in entry.hyperparameters and getattr(cfg, name) is None]
    if cfg.published_hyperparameters != FROM_DATASET or not entry.presets or cfg.dataset in entry.presets or not unset:
        return []
    message = (
        f"published_hyperparameters={FROM_DATASET!r} takes the values loss={cfg.loss!r} published for dataset={cfg.dataset!r}, and there are "
        f"none; allowed: a dataset it published them for ({', '.join(entry.presets)}), or {', '.join(unset)} given"
    )
    return [Problem(("published_hyperparameters", "dataset"), message)]


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
    one_of("backbone", backbones.BACKBONES),
    one_of("head", backbones.HEADS),
    one_of("optimizer", optimizers.OPTIMIZERS),
    one_of("lr_scaling", LR_SCALING),
    one_of("schedule", optimizers.SCHEDULES),
    one_of("precision", PRECISION_NAMES),
    one_of("published_hyperparameters", lambda: (*preset_names(), FROM_DATASET), optional=True),
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


def from_dict(values: dict[str, Any]) -> PretrainConfig:
    """A validated pretraining config from plain values; unknown keys and wrong types are errors."""
    return build(PretrainConfig, values, PRETRAIN_CHECKS)


