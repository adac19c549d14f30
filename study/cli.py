"""Command-line flags generated from the typed configs, so every flag is validated alike.

Each field gets its underscore spelling (the seeds' ``--batch_size``) and its dashed one
(``--batch-size``). Only flags the user passes override the YAML file (``--config``) and
the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainables.spec.backbones import BACKBONES, HEADS
from trainables.spec.choices import listed
from trainables.spec.eval_config import EVAL_CHECKS, RECIPES
from trainables.spec.losses import field_help
from trainables.spec.optimizers import OPTIMIZERS, SCHEDULES
from trainables.spec.pretrain_config import PRETRAIN_CHECKS
from trainables.spec.validation import (
    RENAMED_FIELDS,
    ConfigError,
    allowed_text,
    annotation_kinds,
)

# The loss fields' help (loss, views, each loss hyperparameter) comes from the loss catalog.
PRETRAIN_HELP: dict[str, str] = field_help() | {
    "dataset": "cifar10, cifar100, stl10, digits (bundled, offline), imagefolder (DIR/train/<class>/, DIR/val/<class>/ or DIR/test/<class>/), "
    "tinyimagenet (DIR/tiny-imagenet-200/) or imagenet (as imagefolder, at 224 px with ImageNet's statistics)",
    "data_dir": "folder holding the dataset (for cifar10: the folder containing cifar-10-batches-py/)",
    "download": "allow torchvision to download the dataset into data_dir (never done otherwise)",
    "limit_train": "keep a seeded random subset of N training images (quick runs); validation split unchanged",
    "val_fraction": "fraction of the training set held out for model selection (seeded, stratified)",
    "split_seed": "seed of the validation split",
    "image_size": "training resolution (default: the dataset's; an image folder's median shorter side, so never upsampled unless given)",
    "load_size": "side of an image folder's decoded squares that views are cropped from (default: image_size x 8/7, at most the images' own)",
    "in_memory_gb": "an image folder whose decoded squares fit in this many GiB is decoded once, cached on disk and held in memory",
    "cache_dir": "where image folders' decoded images and statistics are cached (default: DATA_DIR/.nce-cache)",
    "data_mean": "per-channel mean the images are normalised with, in [0, 1] units, e.g. 0.5,0.5,0.5 "
    "(default: the dataset's constants, else computed from its training images and cached)",
    "data_std": "per-channel std the images are normalised with, given with data_mean, e.g. 0.25,0.25,0.25 (default: as data_mean)",
    "backbone": "backbone: " + listed(BACKBONES),
    "head": "projection head: " + listed(HEADS),
    "proj_dim": "output size of the projection head",
    "epochs": "pretraining epochs",
    "batch_size": "GLOBAL batch size, split evenly over the workers",
    "lr": "base learning rate; the optimiser's is lr scaled by --lr-scaling",
    "optimizer": "optimiser: " + listed(OPTIMIZERS),
    "lr_scaling": "linear (lr x B/256), sqrt (lr x sqrt(B)) or none",
    "weight_decay": "weight decay (biases and norm parameters excluded)",
    "momentum": "momentum of lars and sgd (adam ignores it)",
    "schedule": "learning-rate schedule: " + listed(SCHEDULES),
    "warmup_epochs": "warm-up epochs of the cosine schedule",
    "jitter_strength": "colour-jitter strength s: (0.8s, 0.8s, 0.8s, 0.2s) (None: the dataset's)",
    "blur_prob": "Gaussian-blur probability (None: the dataset's, 0 for CIFAR, 0.5 for STL-10/ImageNet)",
    "n_eval_epochs": "kNN-monitor every N epochs on the validation split",
    "n_save_epochs": "checkpoint every N epochs (and at the end)",
    "knn_k": "k of the validation kNN monitor",
    "knn_temperature": "softness of the validation kNN monitor's vote weights",
    "save_dir": "storage for Ray Train runs and checkpoints (a shared path or s3:// on clusters)",
    "workers": "W, Ray Train workers (DDP); each takes batch_size / W images",
    "gpu": "GPU workers (NCCL), each with --gpus-per-worker of a GPU; CPU workers use gloo",
    "cpus_per_worker": "CPUs reserved per worker (fractions allowed)",
    "gpus_per_worker": "share of a GPU reserved per worker, in (0, 1]: fractions let trials share one GPU",
    "seed": "seed of initial weights, batch order and augmentations",
    "precision": "auto (bf16 on GPU, fp32 on CPU), fp32 or bf16",
    "compile": "torch.compile the model",
    "gather": "gather negatives across workers (keep on: without it each worker sees only its own negatives)",
    "tracking_uri": "MLflow tracking URI (None: MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)",
    "experiment": "MLflow experiment name",
    "run_name": "name of the run (MLflow and its folder under --save_dir; None: LOSS-mM-bB-TIME)",
}


EVAL_HELP: dict[str, str] = {
    "mode": "linear (probe on frozen features), finetune (backbone trained too) or knn",
    "recipe": "the probe's optimiser and lr: " + "; ".join(f"{name} ({r.optimizer} {r.lr:g}, {r.schedule})" for name, r in RECIPES.items()),
    "epochs": "epochs of the probe or fine-tuning",
    "batch_size": "batch size of the probe or fine-tuning",
    "lr": "learning rate of the probe (None: the recipe's)",
    "data_dir": "folder holding the dataset (None: the pretraining run's data_dir)",
    "knn_k": "k of the kNN classifier (mode knn)",
    "knn_temperature": "softness of the kNN classifier's vote weights (mode knn)",
    "gpu": "evaluate on the GPU",
    "seed": "seed of the probe's initial weights and batch order",
}
HELP = {"PretrainConfig": PRETRAIN_HELP, "EvalConfig": EVAL_HELP}


def _flag_type(annotation: Any) -> Any:
    return next(k for k in annotation_kinds(annotation) if k is not type(None))


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean; use true or false")


def help_text(config_class: type, name: str, default: Any) -> str:
    """A flag's help: what the field means, what its rule allows, and its default, each said once."""
    checks = {"PretrainConfig": PRETRAIN_CHECKS, "EvalConfig": EVAL_CHECKS}[config_class.__name__]
    allowed = allowed_text(checks).get(name)
    meaning = HELP[config_class.__name__][name]
    said = "(default" in meaning  # the meaning already says what the default does
    return f"{meaning}{f'; {allowed}' if allowed else ''}{'' if said else f' (default: {default})'}"


def add_config_flags(parser: argparse.ArgumentParser, config_class: type, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of ``config_class``; absent flags stay absent from the namespace."""
    hints = typing.get_type_hints(config_class)
    group = parser.add_argument_group(
        "configuration (also settable in --config YAML)" if config_class.__name__ == "PretrainConfig" else "evaluation"
    )
    for f in dataclasses.fields(config_class):
        kind = _flag_type(hints[f.name])
        if f.name in skip or (typing.get_origin(kind) or kind) is dict:
            continue
        names = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        default = f.default if f.default is not dataclasses.MISSING else None
        text = help_text(config_class, f.name, default)
        if kind is bool:
            group.add_argument(*names, dest=f.name, type=_bool, nargs="?", const=True, default=argparse.SUPPRESS, metavar="BOOL", help=text)
        elif typing.get_origin(kind) is tuple:
            group.add_argument(*names, dest=f.name, type=numbers(f.name), default=argparse.SUPPRESS, metavar="NUMBERS", help=text)
        else:
            group.add_argument(
                *names, dest=f.name, type=typed(f.name, kind), default=argparse.SUPPRESS, metavar=kind.__name__.upper(), help=text
            )
    for before, now in RENAMED_FIELDS.items():  # the old spelling still parses (unlisted); the config notes the new name
        if now in hints and now not in skip:
            names = [f"--{before}"] + ([f"--{before.replace('_', '-')}"] if "_" in before else [])
            group.add_argument(*names, dest=before, type=typed(before, _flag_type(hints[now])), default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def typed(name: str, kind: type) -> Callable[[str], Any]:
    """argparse's type for a field: the text as ``kind``, named after the field when it is not one."""

    def convert(text: str) -> Any:
        if "\0" in text:
            raise argparse.ArgumentTypeError(f"{name}: a NUL byte is not allowed")
        try:
            return kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"{name}={text[:80]!r} is not a{'n' if kind is int else ''} {kind.__name__}") from None

    return convert


def numbers(name: str) -> Callable[[str], list[float]]:
    """argparse's type for a list field: comma-separated numbers, brackets and spaces allowed (0.5,0.5,0.5 or
    "[0.5, 0.5, 0.5]"); how many, and which values, the config's rule checks."""

    def convert(text: str) -> list[float]:
        try:
            return [float(piece) for piece in text.strip().removeprefix("[").removesuffix("]").split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}={text[:80]!r} is not a list of numbers; write them comma-separated, e.g. 0.5,0.5,0.5") from None

    return convert


def bounded_int(name: str, low: int, high: int) -> Callable[[str], int]:
    """argparse's type for a flag that is an integer in [low, high]."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}={text[:80]!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{name}={value} is not allowed; it must be in [{low}, {high}]")
        return value

    return convert


def int_flag(parser: argparse.ArgumentParser, flag: str, low: int, high: int, help: str, default: int | None = None) -> None:
    """An integer flag in [low, high], its errors naming its field; the help says a default that is not None."""
    name = flag.removeprefix("--").replace("-", "_")
    said = help if default is None else f"{help} (default: {default})"
    parser.add_argument(flag, type=bounded_int(name, low, high), default=default, help=said)


def adaptive_seeds_arg(text: str) -> dict[str, int]:
    """argparse's type for ``--adaptive-seeds INITIAL:STEP:MAX``: the ``adaptive`` override it stands for."""
    parts = text.split(":")
    if len(parts) != 3 or not all(part.strip().isdigit() for part in parts):
        raise argparse.ArgumentTypeError(
            f"adaptive_seeds={text[:80]!r} is not allowed; it must be INITIAL:STEP:MAX, three whole numbers, e.g. 6:2:12"
        )
    return dict(zip(("initial", "step", "max_seeds"), map(int, parts)))


def effect_arg(text: str) -> float:
    """argparse's type for ``--seeds-for EFFECT``: a difference in percentage points, in (0, 100)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 100:
        raise argparse.ArgumentTypeError(
            f"seeds_for={text[:80]!r} is not allowed; it must be a difference in percentage points, a number in (0, 100), e.g. 0.5"
        )
    return value


def text_arg(name: str, max_chars: int = 1000) -> Callable[[str], str]:
    """argparse's type for free text (a path, a URI): non-empty, bounded, no NUL byte."""

    def convert(text: str) -> str:
        if not text.strip() or len(text) > max_chars or "\0" in text:
            raise argparse.ArgumentTypeError(
                f"{name}={text[:80]!r} is not allowed; it must be non-empty text of at most {max_chars} characters"
            )
        return text

    return convert


def path_arg(name: str) -> Callable[[str], Path]:
    """argparse's type for a path: text_arg's rules, as a Path."""
    text = text_arg(name)
    return lambda value: Path(text(value))


def given_fields(args: argparse.Namespace, config_class: type) -> dict[str, Any]:
    """The fields the user gave, an old name of a field (RENAMED_FIELDS) included: the config reads it as the new one."""
    names = {f.name for f in dataclasses.fields(config_class)}
    names |= {before for before, now in RENAMED_FIELDS.items() if now in names}
    return {k: v for k, v in vars(args).items() if k in names}


def usage_error(err: Exception) -> int:
    """A refused input, said on stderr as ``error: ...``; returns the commands' exit status for it, 2."""
    print(f"error: {err}", file=sys.stderr)
    return 2


def reachable_tracking_uri(given: str | None) -> str:
    """The tracking URI a command records to (``given``, else the default), checked to answer before
    anything starts; a ConfigError saying why where it does not."""
    from trainables.integration.tracking import (
        TrackingUnavailableError,
        check_reachable,
        resolve_tracking_uri,
    )

    try:
        uri = resolve_tracking_uri(given)
        check_reachable(uri)
    except TrackingUnavailableError as err:
        raise ConfigError(str(err)) from None
    return uri
