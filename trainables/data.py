"""Datasets for pretraining and evaluation, and the splits and batch orders every run shares.

Five datasets, read through torchvision's own classes (digits through scikit-learn):

=============  =======  ====  ===========================================================
name           classes  size  official splits
=============  =======  ====  ===========================================================
cifar10        10       32    train 50,000; test 10,000
cifar100       100      32    train 50,000; test 10,000
stl10          10       96    train 5,000; test 8,000; unlabeled 100,000 (pretraining only)
imagefolder    found    224   ``DIR/train/<class>/*``; ``DIR/val/<class>/*`` is the test split
digits         10       32    1,797 images; a fixed, stratified 20% is held out as test
=============  =======  ====  ===========================================================

Splits. A validation split is held out of the official training set: stratified by class
(``round(val_fraction * n_c)`` images of each class c) and seeded by ``split_seed``. Every model
selection (hyperparameter search, early stopping, the linear probe's epoch) uses it; the test split
is only reported. ``limit_train=N`` then keeps a seeded random subset of N of the remaining
training images, for quick CPU runs; the validation split is drawn first and does not change.
Pretraining sees the training images without their labels, plus STL-10's unlabeled images;
the validation images never enter pretraining.

Digits. scikit-learn's bundled 8x8 digits have no official test split, so 20% of each class is held
out as test with the fixed seed ``DIGITS_TEST_SEED``, independent of ``split_seed`` so that test
numbers stay comparable across split seeds. Pixel values 0-16 are scaled to 0-255, upsampled to
32x32 (bilinear, antialiased), rounded once to uint8 and repeated to three channels.

Memory. CIFAR, STL-10 and digits are held as one uint8 tensor [N, 3, H, W], so the trainer can
move a dataset to the device once and index batches there. Image folders stream through a
DataLoader whose workers decode each file to a fixed ``load_size`` square: Resize (shorter side to
``load_size``) then CenterCrop, 256 by default for 224-px training. This is an approximation of the
usual ImageNet recipe: the device-side augmentation takes its random-resized crop from that
square, not from the full-resolution file, so crops never reach the borders that the center crop
cut off (on a 4:3 photo, the outer eighth of each long side) and are resampled from at most
``load_size`` pixels. The fixed square size is what lets the augmentation run batched on the device.

Statistics. ``mean`` and ``std`` are per channel in [0, 1] units over every pixel of the
official training set: the published values for CIFAR-10, CIFAR-100, STL-10 and ImageNet (used
for any image folder). For CIFAR-10 the std is the per-pixel one (0.2470, ...), not the mean of
per-image stds (0.2023, ...) that also circulates. For digits they were computed with this
module's own conversion over the fixed 80% training portion (training plus validation, as for
CIFAR). The tests recompute both CIFAR-10's and digits' values from the data.

Batches. ``batch_indices`` gives an epoch's global batches as one index matrix that every worker
computes alike; worker r of W takes columns ``[r*b, (r+1)*b)`` with ``b = batch_size / W``, so W
workers together see exactly the global batches that one worker would.

Nothing is downloaded unless the caller passes ``download=True``. A missing dataset raises
``DatasetNotFoundError``, whose message says where it looked and how to fetch the data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, Sampler, Subset
from torchvision import datasets, transforms
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.datasets.utils import check_integrity

DEFAULT_LOAD_SIZE = 256
DIGITS_TEST_FRACTION = 0.2
DIGITS_TEST_SEED = 0
FOLDER_TRAIN = "train"
FOLDER_TEST = "val"  # ImageNet's official validation set, reported as the test split


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing or incomplete; the message says where it looked and how to fix it."""


@dataclass(frozen=True)
class DatasetSpec:
    """Metadata of one dataset.

    Attributes:
        name: The registry key.
        num_classes: Number of classes. For ``imagefolder`` this is ImageNet's 1,000; the spec of a
            loaded ``FolderSplits`` carries the number of class folders found instead.
        image_size: Native side length in pixels (images are square).
        mean: Per-channel mean in [0, 1] units.
        std: Per-channel standard deviation in [0, 1] units.
        in_memory: True where the dataset is held as one uint8 tensor; False where it streams from files.
    """

    name: str
    num_classes: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    in_memory: bool


DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec("cifar10", 10, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True),
    "cifar100": DatasetSpec("cifar100", 100, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True),
    "stl10": DatasetSpec("stl10", 10, 96, (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713), True),
    "imagefolder": DatasetSpec("imagefolder", 1000, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), False),
    "digits": DatasetSpec("digits", 10, 32, (0.3057, 0.3057, 0.3057), (0.3237, 0.3237, 0.3237), True),
}


# Tensors have no single truth value, so the generated __eq__ would fail; equality is identity.
@dataclass(frozen=True, eq=False)
class LabeledImages:
    """Images with their class labels.

    Attributes:
        images: The pixels.
        labels: Class index of each image.

    Shape:
        images: uint8 [N, 3, H, W]; labels: int64 [N].
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(
                f"images: got {self.images.dtype} {tuple(self.images.shape)}; allowed: uint8 [N, 3, H, W]"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"labels: got {self.labels.dtype} {tuple(self.labels.shape)}; "
                f"allowed: int64 [{self.images.shape[0]}], one per image"
            )

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, indices: torch.Tensor) -> LabeledImages:
        """The rows ``indices``, in that order.

        Shape:
            indices: int64 [K].
        """
        return LabeledImages(self.images[indices], self.labels[indices])


@dataclass(frozen=True, eq=False)
class TensorSplits:
    """An in-memory dataset, split.

    Attributes:
        spec: The dataset's metadata.
        pretrain: Unlabeled pretraining images: ``train.images``, plus STL-10's unlabeled images.
        train: The training split: official train minus ``val``, after ``limit_train``.
        val: The validation split held out of official train; used for every model selection.
        test: The official test split; only reported.
        split_seed: Seed of the validation split and of the ``limit_train`` subset.

    Shape:
        pretrain: uint8 [P, 3, H, W].
    """

    spec: DatasetSpec
    pretrain: torch.Tensor
    train: LabeledImages
    val: LabeledImages
    test: LabeledImages
    split_seed: int

    def describe(self) -> dict[str, int | str]:
        """Sizes and split seed, to log as run params."""
        return _describe(self.spec, len(self.pretrain), len(self.train), len(self.val), len(self.test), self.split_seed)


@dataclass(frozen=True, eq=False)
class FolderImages:
    """A labeled view of an image folder: the rows ``indices`` of ``folder``, decoded on demand.

    Attributes:
        folder: The torchvision ImageFolder, whose transform decodes one file to uint8 [3, L, L].
        indices: Rows of ``folder.samples`` in this view.

    Shape:
        indices: int64 [N].
    """

    folder: datasets.ImageFolder
    indices: torch.Tensor

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def labels(self) -> torch.Tensor:
        """Class index of each image of the view, int64 [N]; read from file paths, nothing is decoded."""
        return torch.as_tensor(self.folder.targets, dtype=torch.int64)[self.indices]

    def loader(self, batch_size: int, num_workers: int) -> DataLoader:
        """Every image of the view once, in order, for feature extraction.

        Args:
            batch_size: Images per batch; the last batch may be smaller.
            num_workers: Decoding processes (0 decodes in the calling process).

        Returns:
            A DataLoader yielding (uint8 [b, 3, L, L], int64 [b]).
        """
        return DataLoader(
            Subset(self.folder, self.indices.tolist()), batch_size=batch_size, shuffle=False, num_workers=num_workers
        )


@dataclass(frozen=True, eq=False)
class FolderSplits:
    """An image-folder dataset, split, streaming from files.

    Attributes:
        spec: The dataset's metadata, with ``num_classes`` set to the class folders found.
        classes: Class folder names; a label is an index into this tuple.
        load_size: Side length L of the decoded squares.
        train: Training split: ``train/`` minus ``val``, after ``limit_train``; also the pretraining images.
        val: Validation split held out of ``train/``; used for every model selection.
        test: The ``val/`` folder; only reported.
        split_seed: Seed of the validation split and of the ``limit_train`` subset.
    """

    spec: DatasetSpec
    classes: tuple[str, ...]
    load_size: int
    train: FolderImages
    val: FolderImages
    test: FolderImages
    split_seed: int

    def describe(self) -> dict[str, int | str]:
        """Sizes, split seed and load size, to log as run params."""
        sizes = _describe(self.spec, len(self.train), len(self.train), len(self.val), len(self.test), self.split_seed)
        return {**sizes, "load_size": self.load_size}

    def pretrain_loader(
        self, batch_size: int, epoch: int, seed: int, rank: int, world_size: int, num_workers: int
    ) -> DataLoader:
        """This worker's share of the epoch's global pretraining batches, as ``worker_batch_indices`` slices them.

        torch's DistributedSampler is not used: it deals indices round-robin per worker and draws
        its own permutation, so its batches are not column slices of ``batch_indices``.

        Args:
            batch_size: Global batch size, a multiple of ``world_size``.
            epoch: Epoch number, 0-based; with ``seed`` it fixes the order.
            seed: Seed of the batch order.
            rank: This worker's rank, 0 to ``world_size - 1``.
            world_size: Number of workers.
            num_workers: Decoding processes (0 decodes in the calling process).

        Returns:
            A DataLoader yielding uint8 [batch_size / world_size, 3, L, L], labels dropped.
        """
        batches = worker_batch_indices(len(self.train), batch_size, epoch, seed, rank, world_size)
        return DataLoader(
            Subset(self.train.folder, self.train.indices.tolist()),
            batch_sampler=_FixedBatches(batches),
            num_workers=num_workers,
            collate_fn=_stack_images,
        )


class _FixedBatches(Sampler[list[int]]):
    """A batch sampler that yields the rows of a precomputed index matrix.

    Shape:
        batches: int64 [num_batches, b].
    """

    def __init__(self, batches: torch.Tensor) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches.tolist())

    def __len__(self) -> int:
        return self.batches.shape[0]


def _stack_images(items: list[tuple[torch.Tensor, int]]) -> torch.Tensor:
    """Collate decoded images into one batch, dropping labels, which pretraining never reads.

    Shape:
        items: b pairs of (uint8 [3, L, L], label); returns uint8 [b, 3, L, L].
    """
    return torch.stack([image for image, _ in items])


def _describe(
    spec: DatasetSpec, pretrain: int, train: int, val: int, test: int, split_seed: int
) -> dict[str, int | str]:
    """The run params shared by both kinds of splits."""
    return {
        "dataset": spec.name,
        "num_classes": spec.num_classes,
        "image_size": spec.image_size,
        "pretrain_size": pretrain,
        "train_size": train,
        "val_size": val,
        "test_size": test,
        "split_seed": split_seed,
    }


# --- batch order ------------------------------------------------------------------------------


def batch_indices(num_items: int, batch_size: int, epoch: int, seed: int) -> torch.Tensor:
    """The epoch's global batches as an index matrix: a permutation seeded by (seed, epoch), drop_last.

    Every worker computes the same matrix and takes its own column slice (``worker_batch_indices``),
    so W workers see exactly the global batches one worker would (the DDP-equivalence contract).

    Args:
        num_items: Size of the dataset being batched.
        batch_size: Global batch size, 1 to ``num_items``.
        epoch: Epoch number, 0 or more.
        seed: Seed, 0 or more.

    Returns:
        int64 indices into the dataset, each used at most once per epoch.

    Shape:
        returns [num_items // batch_size, batch_size].
    """
    if not 1 <= batch_size <= num_items:
        raise ValueError(
            f"batch_size: got {batch_size}; allowed: 1 to {num_items} (the number of items; "
            "with drop_last a larger batch leaves no batch at all)"
        )
    if epoch < 0 or seed < 0:
        raise ValueError(f"epoch, seed: got {epoch}, {seed}; allowed: integers 0 or more")
    generator = torch.Generator().manual_seed(_mix_seed(seed, epoch))
    order = torch.randperm(num_items, generator=generator)
    num_batches = num_items // batch_size
    return order[: num_batches * batch_size].view(num_batches, batch_size)


def worker_batch_indices(
    num_items: int, batch_size: int, epoch: int, seed: int, rank: int, world_size: int
) -> torch.Tensor:
    """One worker's column slice ``[rank*b, (rank+1)*b)`` of every global batch, ``b = batch_size / world_size``.

    Args:
        num_items: Size of the dataset being batched.
        batch_size: Global batch size, a multiple of ``world_size``.
        epoch: Epoch number, 0 or more.
        seed: Seed, 0 or more.
        rank: This worker's rank, 0 to ``world_size - 1``.
        world_size: Number of workers, 1 or more.

    Shape:
        returns int64 [num_items // batch_size, batch_size // world_size].
    """
    if world_size < 1 or batch_size % world_size != 0:
        raise ValueError(
            f"world_size: got {world_size} for batch_size {batch_size}; allowed: 1 or more, dividing batch_size"
        )
    if not 0 <= rank < world_size:
        raise ValueError(f"rank: got {rank}; allowed: 0 to {world_size - 1} (world_size {world_size})")
    local = batch_size // world_size
    return batch_indices(num_items, batch_size, epoch, seed)[:, rank * local : (rank + 1) * local].contiguous()


def _mix_seed(seed: int, epoch: int) -> int:
    """One 64-bit generator seed for the pair; SeedSequence keeps nearby pairs such as (1, 0) and (0, 1) unrelated."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0])


# --- splits -----------------------------------------------------------------------------------


def _stratified_holdout(
    labels: torch.Tensor, fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
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


def _train_val_indices(
    labels: torch.Tensor, val_fraction: float, split_seed: int, limit_train: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of the official training set kept for training and held out for validation.

    The validation rows are drawn first from the same generator, so ``limit_train`` never changes them.

    Shape:
        labels: int64 [N]; returns int64 [T] and [V].
    """
    generator = torch.Generator().manual_seed(split_seed)
    train, val = _stratified_holdout(labels, val_fraction, generator)
    if limit_train is None:
        return train, val
    if not 1 <= limit_train <= len(train):
        raise ValueError(
            f"limit_train: got {limit_train}; allowed: None or 1 to {len(train)} "
            f"(the training images left after holding out val_fraction={val_fraction})"
        )
    return _random_subset(train, limit_train, generator), val


def _check_val_fraction(val_fraction: float) -> None:
    """A ValueError unless 0 < val_fraction < 1: both train and val need images."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction: got {val_fraction!r}; allowed: a number strictly between 0 and 1")


# --- in-memory datasets -----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Official:
    """A dataset's official splits, before the validation split."""

    train: LabeledImages
    test: LabeledImages
    unlabeled: torch.Tensor | None


def _not_found_message(name: str, root: Path, expected: str) -> str:
    """Where torchvision looked for ``name`` and the command that fetches it."""
    return (
        f"Dataset '{name}' was not found, or is incomplete, in {root}: torchvision looked for "
        f"{root / expected} and its checksummed files. Nothing is downloaded unless asked; fetch it once "
        f"with `python study/train.py --dataset {name} --data-dir {root} --download ...`, or pass as "
        f"--data-dir the folder that already holds {expected}/."
    )


def _bad_files(folder: Path, files: tuple[tuple[str, str], ...]) -> str:
    """Which of the (file name, md5) pairs are missing from ``folder`` or fail their md5, in words."""
    if not folder.is_dir():
        return ""
    missing = [name for name, _ in files if not (folder / name).is_file()]
    if missing:
        return f" Missing from {folder}: {', '.join(missing)}."
    altered = [name for name, md5 in files if not check_integrity(str(folder / name), md5)]
    return f" Failing their md5 checksum (truncated or altered) in {folder}: {', '.join(altered)}." if altered else ""


@contextmanager
def _not_found_as_ours(name: str, root: Path, expected: str, files: tuple[tuple[str, str], ...] = ()) -> Iterator[None]:
    """Re-raise torchvision's "Dataset not found or corrupted" RuntimeError as a DatasetNotFoundError,
    naming the files of ``files`` (name, md5) that are missing or altered."""
    try:
        yield
    except RuntimeError as err:
        if "not found" not in str(err):
            raise
        raise DatasetNotFoundError(_not_found_message(name, root, expected) + _bad_files(root / expected, files)) from err


def _chw(hwc: np.ndarray) -> torch.Tensor:
    """Shape: hwc uint8 [N, H, W, 3]; returns uint8 [N, 3, H, W], contiguous."""
    return torch.from_numpy(hwc).permute(0, 3, 1, 2).contiguous()


def _load_cifar(cls: type[datasets.CIFAR10], name: str, root: Path, download: bool) -> _Official:
    """CIFAR-10 or CIFAR-100 (a subclass that reads fine labels) through torchvision."""
    files = tuple((f, md5) for f, md5 in cls.train_list + cls.test_list) + ((cls.meta["filename"], cls.meta["md5"]),)
    with _not_found_as_ours(name, root, cls.base_folder, files):
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    return _Official(
        LabeledImages(_chw(train.data), torch.tensor(train.targets, dtype=torch.int64)),
        LabeledImages(_chw(test.data), torch.tensor(test.targets, dtype=torch.int64)),
        None,
    )


def _load_cifar10(root: Path, download: bool) -> _Official:
    return _load_cifar(datasets.CIFAR10, "cifar10", root, download)


def _load_cifar100(root: Path, download: bool) -> _Official:
    return _load_cifar(datasets.CIFAR100, "cifar100", root, download)


def _load_stl10(root: Path, download: bool) -> _Official:
    """STL-10's labeled train, test and 100,000 unlabeled images through torchvision."""
    files = tuple((f, md5) for f, md5 in datasets.STL10.train_list + datasets.STL10.test_list)
    with _not_found_as_ours("stl10", root, datasets.STL10.base_folder, files):
        pool = datasets.STL10(str(root), split="train+unlabeled", download=download)
        test = datasets.STL10(str(root), split="test", download=download)
    # torchvision puts the labeled images first and marks the unlabeled ones -1; slicing avoids a 2.8 GB copy.
    labels = torch.from_numpy(pool.labels).long()
    num_labeled = int((labels >= 0).sum())
    images = torch.from_numpy(pool.data)
    return _Official(
        LabeledImages(images[:num_labeled], labels[:num_labeled]),
        LabeledImages(torch.from_numpy(test.data).contiguous(), torch.from_numpy(test.labels).long()),
        images[num_labeled:],
    )


def _digits_to_rgb32(digits: np.ndarray) -> torch.Tensor:
    """Scale 0-16 to 0-255, upsample to 32x32 (bilinear, antialiased), round once, repeat to RGB.

    Shape:
        digits: float [N, 8, 8] with values 0-16; returns uint8 [N, 3, 32, 32].
    """
    scaled = torch.from_numpy(digits).float().unsqueeze(1) * (255.0 / 16.0)
    upsampled = F.interpolate(scaled, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    return upsampled.round().clamp(0, 255).to(torch.uint8).repeat(1, 3, 1, 1)


def _load_digits(root: Path, download: bool) -> _Official:
    """scikit-learn ships the digits, so ``root`` and ``download`` play no part."""
    bunch = load_digits()
    everything = LabeledImages(_digits_to_rgb32(bunch.images), torch.from_numpy(bunch.target).long())
    train, test = _stratified_holdout(
        everything.labels, DIGITS_TEST_FRACTION, torch.Generator().manual_seed(DIGITS_TEST_SEED)
    )
    return _Official(everything.subset(train), everything.subset(test), None)


_IN_MEMORY_LOADERS: dict[str, Callable[[Path, bool], _Official]] = {
    "cifar10": _load_cifar10,
    "cifar100": _load_cifar100,
    "stl10": _load_stl10,
    "digits": _load_digits,
}


def _split_in_memory(
    spec: DatasetSpec, official: _Official, val_fraction: float, split_seed: int, limit_train: int | None
) -> TensorSplits:
    """Hold val out of the official train split and assemble the pretraining images."""
    train_rows, val_rows = _train_val_indices(official.train.labels, val_fraction, split_seed, limit_train)
    train = official.train.subset(train_rows)
    pretrain = train.images if official.unlabeled is None else torch.cat([train.images, official.unlabeled])
    return TensorSplits(spec, pretrain, train, official.train.subset(val_rows), official.test, split_seed)


# --- image folders ----------------------------------------------------------------------------


def _layout_help(root: Path) -> str:
    """The folder layout ``imagefolder`` expects under ``root``."""
    return (
        f"An image folder needs {root}/{FOLDER_TRAIN}/<class>/*.jpg and {root}/{FOLDER_TEST}/<class>/*.jpg: one "
        f"subfolder per class, the same class names in both ({FOLDER_TEST}/ is reported as the test split). "
        "Image folders are never downloaded; for ImageNet, extract the official train and val archives "
        "and sort the val images into class folders."
    )


def _check_layout(root: Path) -> None:
    """Fail fast, before any slow scan, where train/ or val/ or their class folders are missing."""
    for part in (FOLDER_TRAIN, FOLDER_TEST):
        folder = root / part
        if not folder.is_dir():
            raise DatasetNotFoundError(
                f"Dataset 'imagefolder' was not found in {root}: {folder} is not a folder. {_layout_help(root)}"
            )
        if not any(entry.is_dir() for entry in folder.iterdir()):
            raise DatasetNotFoundError(
                f"Dataset 'imagefolder' in {root}: {folder} has no class subfolders. {_layout_help(root)}"
            )


def _open_folder(root: Path, part: str, load_size: int) -> datasets.ImageFolder:
    """Scan ``root/part`` and check that every class folder holds at least one image."""
    decode = transforms.Compose(
        [transforms.Resize(load_size), transforms.CenterCrop(load_size), transforms.PILToTensor()]
    )
    folder = datasets.ImageFolder(str(root / part), transform=decode, allow_empty=True)
    counts = torch.bincount(torch.as_tensor(folder.targets, dtype=torch.int64), minlength=len(folder.classes))
    empty = [folder.classes[i] for i in (counts == 0).nonzero().squeeze(1).tolist()]
    if empty:
        raise DatasetNotFoundError(
            f"Dataset 'imagefolder' in {root}: class folder {root / part / empty[0]} holds no image files "
            f"(empty class folders under {part}/: {', '.join(empty)}; allowed extensions: "
            f"{', '.join(IMG_EXTENSIONS)}). Put at least one image in each class folder or remove the empty ones."
        )
    return folder


def _check_same_classes(root: Path, train: list[str], test: list[str]) -> None:
    """Labels are positions in the sorted class list, so train/ and val/ must name the same classes."""
    if train == test:
        return
    raise ValueError(
        f"Dataset 'imagefolder' in {root}: {FOLDER_TRAIN}/ and {FOLDER_TEST}/ have different class folders "
        f"(only in {FOLDER_TRAIN}/: {sorted(set(train) - set(test))}; only in {FOLDER_TEST}/: "
        f"{sorted(set(test) - set(train))}); allowed: the same class folder names in both."
    )


def _load_folder(
    spec: DatasetSpec,
    root: Path,
    download: bool,
    val_fraction: float,
    split_seed: int,
    limit_train: int | None,
    load_size: int | None,
) -> FolderSplits:
    """Check and scan ``root/train`` and ``root/val``, then hold val out of train."""
    if download:
        raise ValueError(f"download: got True for dataset 'imagefolder'; allowed: False. {_layout_help(root)}")
    size = DEFAULT_LOAD_SIZE if load_size is None else load_size
    if size < 1:
        raise ValueError(f"load_size: got {load_size}; allowed: None (meaning {DEFAULT_LOAD_SIZE}) or 1 or more")
    _check_layout(root)
    train_folder = _open_folder(root, FOLDER_TRAIN, size)
    test_folder = _open_folder(root, FOLDER_TEST, size)
    _check_same_classes(root, train_folder.classes, test_folder.classes)
    labels = torch.as_tensor(train_folder.targets, dtype=torch.int64)
    train_rows, val_rows = _train_val_indices(labels, val_fraction, split_seed, limit_train)
    return FolderSplits(
        spec=replace(spec, num_classes=len(train_folder.classes)),
        classes=tuple(train_folder.classes),
        load_size=size,
        train=FolderImages(train_folder, train_rows),
        val=FolderImages(train_folder, val_rows),
        test=FolderImages(test_folder, torch.arange(len(test_folder))),
        split_seed=split_seed,
    )


# --- entry point ------------------------------------------------------------------------------


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name``; a ValueError naming the allowed names where there is none."""
    if name not in DATASETS:
        raise ValueError(f"dataset: got {name!r}; allowed: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def load_dataset(
    name: str,
    root: str | Path,
    *,
    download: bool = False,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    limit_train: int | None = None,
    load_size: int | None = None,
) -> TensorSplits | FolderSplits:
    """Load a dataset and split it into pretrain, train, val and test.

    Args:
        name: A key of ``DATASETS``.
        root: Folder holding the dataset (for CIFAR-10, the folder that contains ``cifar-10-batches-py``;
            for ``imagefolder``, the folder with ``train/`` and ``val/``). Unused for ``digits``.
        download: Fetch a missing torchvision dataset into ``root``; never done otherwise.
        val_fraction: Share of each class of the official training set held out for validation.
        split_seed: Seed of the validation split and of the ``limit_train`` subset.
        limit_train: Keep only this many training images, chosen at random after the validation split.
        load_size: Side length of decoded squares for ``imagefolder`` (None: 256). In-memory datasets
            keep their native size and accept only None or that size.

    Returns:
        TensorSplits for in-memory datasets, FolderSplits for ``imagefolder``.

    Raises:
        DatasetNotFoundError: The dataset's files are not in ``root``, or an image folder is malformed.
        ValueError: An argument is outside what is allowed; the message names it.
    """
    spec = dataset_spec(name)
    _check_val_fraction(val_fraction)
    path = Path(root).expanduser()
    if not spec.in_memory:
        return _load_folder(spec, path, download, val_fraction, split_seed, limit_train, load_size)
    if load_size not in (None, spec.image_size):
        raise ValueError(
            f"load_size: got {load_size} for dataset '{name}'; allowed: None or {spec.image_size} "
            "(in-memory datasets keep their native size)"
        )
    return _split_in_memory(spec, _IN_MEMORY_LOADERS[name](path, download), val_fraction, split_seed, limit_train)
