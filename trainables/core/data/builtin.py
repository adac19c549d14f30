"""The datasets torchvision and scikit-learn read into memory: CIFAR-10, CIFAR-100, STL-10, digits.

Each is held as one uint8 tensor [N, 3, H, W], so the trainer can move it to the device once and
index batches there. Nothing is downloaded unless the caller passes ``download=True``; a missing
dataset raises ``DatasetNotFoundError``, whose message says where it looked and how to fetch the data.

Digits. scikit-learn's bundled 8x8 digits have no official test split, so 20% of each class is held
out as test with the fixed seed ``DIGITS_TEST_SEED``, independent of ``split_seed`` so that test
numbers stay comparable across split seeds. Pixel values 0-16 are scaled to 0-255, upsampled to
32x32 (bilinear, antialiased), rounded once to uint8 and repeated to three channels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torchvision import datasets
from torchvision.datasets.utils import check_integrity

from trainables.core.data.images import LabeledImages
from trainables.core.data.splits import Official, stratified_holdout
from trainables.spec.dataset_errors import DatasetNotFoundError
from trainables.spec.layouts import not_found_message

DIGITS_TEST_FRACTION = 0.2
DIGITS_TEST_SEED = 0
# The order of the official class_names.txt, which torchvision reads only where the file is present.
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")

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
        raise DatasetNotFoundError(not_found_message(name, root, expected) + _bad_files(root / expected, files)) from err


def _chw(hwc: np.ndarray) -> torch.Tensor:
    """Shape: hwc uint8 [N, H, W, 3]; returns uint8 [N, 3, H, W], contiguous."""
    return torch.from_numpy(hwc).permute(0, 3, 1, 2).contiguous()


def _load_cifar(cls: type[datasets.CIFAR10], name: str, root: Path, download: bool) -> Official:
    """CIFAR-10 or CIFAR-100 (a subclass that reads fine labels) through torchvision."""
    files = tuple((f, md5) for f, md5 in cls.train_list + cls.test_list) + ((cls.meta["filename"], cls.meta["md5"]),)
    with _not_found_as_ours(name, root, cls.base_folder, files):
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    return Official(
        LabeledImages(_chw(train.data), torch.tensor(train.targets, dtype=torch.int64)),
        LabeledImages(_chw(test.data), torch.tensor(test.targets, dtype=torch.int64)),
        tuple(train.classes),
    )


def _load_cifar10(root: Path, download: bool) -> Official:
    return _load_cifar(datasets.CIFAR10, "cifar10", root, download)


def _load_cifar100(root: Path, download: bool) -> Official:
    return _load_cifar(datasets.CIFAR100, "cifar100", root, download)


def _load_stl10(root: Path, download: bool) -> Official:
    """STL-10's labeled train, test and 100,000 unlabeled images through torchvision."""
    files = tuple((f, md5) for f, md5 in datasets.STL10.train_list + datasets.STL10.test_list)
    with _not_found_as_ours("stl10", root, datasets.STL10.base_folder, files):
        pool = datasets.STL10(str(root), split="train+unlabeled", download=download)
        test = datasets.STL10(str(root), split="test", download=download)
    # torchvision puts the labeled images first and marks the unlabeled ones -1; slicing avoids a 2.8 GB copy.
    labels = torch.from_numpy(pool.labels).long()
    num_labeled = int((labels >= 0).sum())
    images = torch.from_numpy(pool.data)
    return Official(
        LabeledImages(images[:num_labeled], labels[:num_labeled]),
        LabeledImages(torch.from_numpy(test.data).contiguous(), torch.from_numpy(test.labels).long()),
        STL10_CLASSES,
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


def _load_digits(root: Path, download: bool) -> Official:
    """scikit-learn ships the digits, so ``root`` and ``download`` play no part."""
    bunch = load_digits()
    everything = LabeledImages(_digits_to_rgb32(bunch.images), torch.from_numpy(bunch.target).long())
    train, test = stratified_holdout(
        everything.labels, DIGITS_TEST_FRACTION, torch.Generator().manual_seed(DIGITS_TEST_SEED)
    )
    return Official(everything.subset(train), everything.subset(test), tuple(str(d) for d in range(10)))


BUILTIN_LOADERS: dict[str, Callable[[Path, bool], Official]] = {
    "cifar10": _load_cifar10,
    "cifar100": _load_cifar100,
    "stl10": _load_stl10,
    "digits": _load_digits,
}

