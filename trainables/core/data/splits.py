"""Splitting a dataset: the validation hold-out, ``limit_train``, and the ``Splits`` every run reads.

A validation split is held out of the official training set: stratified by class
(``round(val_fraction * n_c)`` images of each class c) and seeded by ``split_seed``. Every model
selection (hyperparameter search, early stopping, the linear probe's epoch) uses it; the test split
is only reported. ``limit_train=N`` then keeps a seeded random subset of N of the remaining
training images, for quick CPU runs; the validation split is drawn first and does not change.
Pretraining sees the training images without their labels, plus STL-10's unlabeled images;
the validation images never enter pretraining.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainables.core.data.images import FolderImages, Images, LabeledImages
from trainables.spec.datasets import DatasetSpec

MLFLOW_PARAM_CHARS = 6_000  # MLflow's limit on one param value


@dataclass(frozen=True, eq=False)
class Official:
    """A dataset's official splits, before the validation split.

    Shape:
        unlabeled: uint8 [U, 3, H, W].
    """

    train: LabeledImages
    test: LabeledImages
    classes: tuple[str, ...]
    unlabeled: torch.Tensor | None = None


@dataclass(frozen=True, eq=False)
class Splits:
    """A dataset, split; every split is ``Images``, in memory or decoded from files.

    Attributes:
        spec: The dataset's metadata, resolved: classes counted, resolution, load size and
            statistics as this run uses them.
        classes: Class names; a label is an index into this tuple.
        pretrain: Pretraining images: ``train`` (labels unused), plus STL-10's unlabeled images.
        train: The training split: official train minus ``val``, after ``limit_train``.
        val: The validation split held out of official train; used for every model selection.
        test: The official test split; only reported.
        split_seed: Seed of the validation split and of the ``limit_train`` subset.
    """

    spec: DatasetSpec
    classes: tuple[str, ...]
    pretrain: Images
    train: Images
    val: Images
    test: Images
    split_seed: int

    def describe(self) -> dict[str, int | str | bool]:
        """What the run used, as MLflow params: sizes, split seed, resolution, statistics and where they came from, classes."""
        spec = self.spec
        return {
            "dataset": spec.name,
            "num_classes": len(self.classes),
            "image_size": spec.image_size or 0,
            "load_size": spec.load_size or 0,
            "mean": ",".join(f"{v:.6g}" for v in spec.mean or ()),
            "std": ",".join(f"{v:.6g}" for v in spec.std or ()),
            "stats_source": spec.stats_source or "",
            "classes": _class_list(self.classes),
            "in_memory": self.train.in_memory,
            "pretrain_size": len(self.pretrain),
            "train_size": len(self.train),
            "val_size": len(self.val),
            "test_size": len(self.test),
            "split_seed": self.split_seed,
        }


def _class_list(classes: tuple[str, ...]) -> str:
    """The class names joined by commas, cut to what one MLflow param holds (saying so)."""
    joined = ",".join(classes)
    if len(joined) <= MLFLOW_PARAM_CHARS:
        return joined
    return joined[: MLFLOW_PARAM_CHARS - 40].rsplit(",", 1)[0] + f",... ({len(classes)} classes in all)"


def stratified_holdout(labels: torch.Tensor, fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Hold out ``round(fraction * n_c)`` random rows of each class c.

    Args:
        labels: Class index of each row, 0 or more.
        fraction: Share of each class to hold out.
        generator: Seeded source of the random choice.

    Returns:
        (kept, held_out): row indices, each sorted ascending.

    Shape:
        labels: int64 [N]; returns int64 [N - H] and [H].
    """
    order = torch.randperm(len(labels), generator=generator)
    # A stable sort of the shuffled labels groups rows by class while keeping the random order within each class.
    by_class = order[torch.sort(labels[order], stable=True).indices]
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    take = torch.round(counts.double() * fraction).long()
    held_out = torch.cat([by_class[s : s + t] for s, t in zip(starts.tolist(), take.tolist())]).sort().values
    kept = torch.ones(len(labels), dtype=torch.bool)
    kept[held_out] = False
    return kept.nonzero().squeeze(1), held_out


def _random_subset(indices: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """``size`` of ``indices`` chosen at random, sorted ascending.

    Shape:
        indices: int64 [K]; returns int64 [size].
    """
    return indices[torch.randperm(len(indices), generator=generator)[:size]].sort().values


def train_val_indices(
    labels: torch.Tensor, val_fraction: float, split_seed: int, limit_train: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of the official training set kept for training and held out for validation.

    The validation rows are drawn first from the same generator, so ``limit_train`` never changes them.

    Shape:
        labels: int64 [N]; returns int64 [T] and [V].
    """
    generator = torch.Generator().manual_seed(split_seed)
    train, val = stratified_holdout(labels, val_fraction, generator)
    if limit_train is None:
        return train, val
    if not 1 <= limit_train <= len(train):
        raise ValueError(
            f"limit_train: got {limit_train}; allowed: None or 1 to {len(train)} "
            f"(the training images left after holding out val_fraction={val_fraction})"
        )
    return _random_subset(train, limit_train, generator), val


def check_val_fraction(val_fraction: float) -> None:
    """A ValueError unless 0 < val_fraction < 1: both train and val need images."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction: got {val_fraction!r}; allowed: a number strictly between 0 and 1")


def split_in_memory(spec: DatasetSpec, official: Official, val_fraction: float, split_seed: int, limit_train: int | None) -> Splits:
    """Hold val out of the official train split and assemble the pretraining images."""
    train_rows, val_rows = train_val_indices(official.train.labels, val_fraction, split_seed, limit_train)
    train = official.train.subset(train_rows)
    pretrain = train
    if official.unlabeled is not None:
        unlabeled = torch.full((len(official.unlabeled),), -1, dtype=torch.int64)
        pretrain = LabeledImages(torch.cat([train.images, official.unlabeled]), torch.cat([train.labels, unlabeled]))
    return Splits(spec, official.classes, pretrain, train, official.train.subset(val_rows), official.test, split_seed)


def split_folder(
    spec: DatasetSpec,
    classes: tuple[str, ...],
    train: FolderImages,
    test: FolderImages,
    val_fraction: float,
    split_seed: int,
    limit_train: int | None,
) -> Splits:
    """The same hold-out over the rows of an image folder's training files."""
    train_rows, val_rows = train_val_indices(train.labels, val_fraction, split_seed, limit_train)
    kept = FolderImages(train.files, train.all_labels, train.indices[train_rows], train.num_workers)
    held_out = FolderImages(train.files, train.all_labels, train.indices[val_rows], train.num_workers)
    return Splits(spec, classes, kept, kept, held_out, test, split_seed)
