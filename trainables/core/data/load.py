"""Loading a dataset by name into ``Splits``: the one entry point of the package.

An image folder whose decoded squares fit in ``in_memory_gb`` is decoded once into the decoded
cache and then held like CIFAR, as one uint8 tensor the trainer indexes on the device; a larger one
is decoded from its files at every epoch by as many DataLoader workers as this process has CPUs to
spare. Statistics given by the caller win over the dataset's constants, built-in datasets included;
a folder dataset without either has them computed from its training images and cached beside the
decoded images. ``Splits.spec.stats_source`` says which it was.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from trainables.core.data.builtin import BUILTIN_LOADERS
from trainables.core.data.decode import (
    ImageFiles,
    cache_folder,
    decoded,
    decoding_workers,
    files_key,
)
from trainables.core.data.folders import resolve_sizes
from trainables.core.data.images import FolderImages, Images, LabeledImages
from trainables.core.data.splits import (
    Official,
    Splits,
    check_val_fraction,
    split_folder,
    split_in_memory,
)
from trainables.core.data.statistics import cached_stats, channel_stats, sample_rows
from trainables.spec.datasets import (
    DEFAULT_IN_MEMORY_GB,
    RGB,
    STATS_CONSTANTS,
    STATS_FROM_CONFIG,
    DatasetSpec,
    augment_defaults,
    dataset_spec,
)
from trainables.spec.layouts import FileList, scan, skipped_note

if TYPE_CHECKING:
    from trainables.spec.pretrain_config import PretrainConfig

CACHE_FOLDER = ".nce-cache"  # under the data folder, unless cache_dir says otherwise
STATS_BATCH = 256
log = logging.getLogger(__name__)


def load_dataset(
    name: str,
    root: str | Path,
    *,
    download: bool = False,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    limit_train: int | None = None,
    image_size: int | None = None,
    load_size: int | None = None,
    mean: RGB | None = None,
    std: RGB | None = None,
    in_memory_gb: float = DEFAULT_IN_MEMORY_GB,
    cache_dir: str | Path | None = None,
) -> Splits:
    """Load a dataset and split it into pretrain, train, val and test.

    Args:
        name: A key of ``DATASETS``.
        root: Folder holding the dataset (for CIFAR-10, the folder that contains ``cifar-10-batches-py``;
            for an image folder, the folder with ``train/`` and ``val/``; for Tiny-ImageNet, the folder
            that holds ``tiny-imagenet-200/``). Unused for ``digits``.
        download: Fetch a missing torchvision dataset into ``root``; never done otherwise.
        val_fraction: Share of each class of the official training set held out for validation.
        split_seed: Seed of the validation split and of the ``limit_train`` subset.
        limit_train: Keep only this many training images, chosen at random after the validation split.
        image_size: Training resolution of a folder dataset (None: its own, see ``trainables.core.data.folders``).
            Datasets held in memory by their loader accept only None or their native size.
        load_size: Side of a folder dataset's decoded squares (None: follows from the resolution); as
            ``image_size`` for the others.
        mean: Per-channel mean the run normalises with, for any dataset (None: the spec's, else computed from the data).
        std: Per-channel std, given together with ``mean``.
        in_memory_gb: A folder dataset whose decoded squares take at most this many GiB is decoded
            once, cached on disk and held in memory; a larger one streams from its files.
        cache_dir: Where decoded images and statistics are cached (None: ``root/.nce-cache``).

    Raises:
        DatasetNotFoundError: The dataset's files are not in ``root``, or an image folder is malformed.
        UnreadableImageError: An image file cannot be decoded; the message names it.
        ValueError: An argument is outside what is allowed; the message names it.
    """
    spec = dataset_spec(name)
    check_val_fraction(val_fraction)
    if (mean is None) != (std is None):
        raise ValueError(f"mean, std: got {mean}, {std}; allowed: both None (from the data) or both given")
    path = Path(root).expanduser()
    if spec.from_files:
        if download:
            raise ValueError(f"download: got True for dataset {name!r}; allowed: False (image folders are never downloaded)")
        cache = Path(cache_dir).expanduser() if cache_dir is not None else path / CACHE_FOLDER
        return _load_folder(
            spec, scan(spec, path), (image_size, load_size), (mean, std), in_memory_gb, cache, (val_fraction, split_seed, limit_train)
        )
    for field, value in (("image_size", image_size), ("load_size", load_size)):
        if value not in (None, getattr(spec, field)):
            raise ValueError(f"{field}: got {value} for dataset {name!r}; allowed: None or {getattr(spec, field)} (the dataset's own)")
    return split_in_memory(_given_or_constants(spec, mean, std), BUILTIN_LOADERS[name](path, download), val_fraction, split_seed, limit_train)


def load_for(cfg: PretrainConfig, *, download: bool | None = None) -> Splits:
    """The dataset a pretraining config names, split as it says (``download``: override the config's)."""
    return load_dataset(
        cfg.dataset,
        cfg.data_dir,
        download=cfg.download if download is None else download,
        val_fraction=cfg.val_fraction,
        split_seed=cfg.split_seed,
        limit_train=cfg.limit_train,
        image_size=cfg.image_size,
        load_size=cfg.load_size,
        mean=cfg.data_mean,
        std=cfg.data_std,
        in_memory_gb=cfg.in_memory_gb,
        cache_dir=cfg.cache_dir,
    )


def _given_or_constants(spec: DatasetSpec, mean: RGB | None, std: RGB | None) -> DatasetSpec | None:
    """``spec`` with the caller's statistics, which win over its own constants; None where there are neither
    (a folder dataset's are then computed from its images)."""
    if mean is not None and std is not None:
        return replace(spec, mean=mean, std=std, stats_source=STATS_FROM_CONFIG)
    if spec.mean is not None and spec.std is not None:
        return replace(spec, stats_source=STATS_CONSTANTS)
    return None


def _folder_statistics(spec: DatasetSpec, stats: tuple[RGB | None, RGB | None], path: Path, sample: Images) -> DatasetSpec:
    """``spec`` with the statistics a folder dataset runs with: the caller's, else its constants, else those
    of its training images, computed from ``sample`` once and cached at ``path`` (its folder created only then)."""
    known = _given_or_constants(spec, *stats)
    if known is not None:
        return known
    mean, std, source = cached_stats(cache_folder(path.parent) / path.name, lambda: channel_stats(sample.batches(STATS_BATCH)))
    return replace(spec, mean=mean, std=std, stats_source=source)


def _load_folder(
    spec: DatasetSpec,
    files: FileList,
    sizes: tuple[int | None, int | None],
    stats: tuple[RGB | None, RGB | None],
    in_memory_gb: float,
    cache: Path,
    splitting: tuple[float, int, int | None],
) -> Splits:
    """Decode (or stream) a scanned folder dataset at its resolved sizes, with its statistics, and split it."""
    if files.skipped:
        log.warning("dataset %r in %s: %s", spec.name, files.root, skipped_note(files.skipped))
    image_size, load_size = resolve_sizes(spec, files, *sizes)
    workers = decoding_workers()
    train_paths, test_paths = [p for p, _ in files.train], [p for p, _ in files.test]
    train_labels = torch.tensor([label for _, label in files.train], dtype=torch.int64)
    test_labels = torch.tensor([label for _, label in files.test], dtype=torch.int64)
    train_files, test_files = ImageFiles(train_paths, load_size), ImageFiles(test_paths, load_size)
    key = files_key(train_paths, files.root, load_size)
    prefix = f"{spec.name}-{load_size}px"
    in_memory = (len(train_paths) + len(test_paths)) * 3 * load_size**2 <= in_memory_gb * 2**30
    if in_memory:
        test_key = files_key(test_paths, files.root, load_size)
        official = Official(
            LabeledImages(decoded(train_files, cache / f"{prefix}-{key}.npy", workers), train_labels),
            LabeledImages(decoded(test_files, cache / f"{prefix}-{test_key}.npy", workers), test_labels),
            files.classes,
        )
        sample = official.train.subset(sample_rows(len(train_paths)))
    else:
        train = FolderImages(train_files, train_labels, torch.arange(len(train_paths)), workers)
        sample = FolderImages(train_files, train_labels, sample_rows(len(train_paths)), workers)
    resolved = replace(
        _folder_statistics(spec, stats, cache / f"{prefix}-{key}-stats.json", sample),
        num_classes=len(files.classes),
        image_size=image_size,
        load_size=load_size,
        train_images=len(train_paths),
        augment=spec.augment or augment_defaults(image_size),
    )
    if in_memory:
        return split_in_memory(resolved, official, *splitting)
    test = FolderImages(test_files, test_labels, torch.arange(len(test_paths)), workers)
    return split_folder(resolved, files.classes, train, test, *splitting)
