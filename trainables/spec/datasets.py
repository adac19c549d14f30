"""What is known about each dataset before any file is read: one ``DatasetSpec`` per name.

A field left ``None`` is read from the data when the dataset is loaded (``Splits.spec`` is the
resolved copy): the classes of an image folder are counted, its resolution is measured and its
statistics are computed from its training images.

Statistics are per channel in [0, 1] units over every pixel of the official training set: the
published values for CIFAR-10, CIFAR-100, STL-10 and ImageNet. For CIFAR-10 the std is the
per-pixel one (0.2470, ...), not the mean of per-image stds (0.2023, ...) that also circulates.
For digits they were computed with this package's own conversion over the fixed 80% training
portion. The tests recompute CIFAR-10's and digits' values from the data. A run's config may give
its own (``data_mean``, ``data_std``), which then win over all of these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

RGB = tuple[float, float, float]

# SimCLR's colour strength 0.5 and no blur for 32-px images; strength 1.0 and blur from 64 px up.
SMALL_IMAGES = MappingProxyType({"jitter_strength": 0.5, "blur_prob": 0.0})
LARGE_IMAGES = MappingProxyType({"jitter_strength": 1.0, "blur_prob": 0.5})
SMALL_IMAGE_MAX_SIZE = 32
DEFAULT_IN_MEMORY_GB = 4.0  # image folders up to this size are decoded once and held in memory
# Every dataset is held as RGB (digits' grey levels are repeated to three channels), so every mean and std has three values.
CHANNELS = 3
# Where a run's mean and std came from, recorded as its data.stats_source param: given in its config, the
# dataset's constants below, or computed from its training images (now, or read back from the cache).
STATS_FROM_CONFIG, STATS_CONSTANTS, STATS_COMPUTED, STATS_CACHED = "config", "constants", "computed", "cached"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetSpec:
    """Metadata of one dataset.

    Attributes:
        name: The registry key.
        from_files: True for image folders, decoded from their files (and held in memory when small
            enough); False where torchvision or scikit-learn reads the dataset into one uint8 tensor.
        num_classes: Number of classes; None where counted from the class folders.
        image_size: Training resolution in pixels (square views); None where read from the data.
        load_size: Side of the decoded squares the augmentation crops from; None: follows from the
            resolution (see ``trainables.core.data.folders``).
        mean: Per-channel mean in [0, 1] units; None where computed from the training images.
        std: Per-channel standard deviation in [0, 1] units; None as for ``mean``.
        stats_source: Where ``mean`` and ``std`` came from, set when the dataset is loaded (``STATS_*``).
        train_images: Images in the official training split; None where counted from the files.
        unlabeled_images: Images used only for pretraining, beside the training split (STL-10).
        augment: Augmentation settings of the dataset (``AugmentConfig`` fields); None where they
            follow from the resolution (``augment_defaults``).
        folder: The folder under the data folder that holds the files torchvision reads (its
            ``base_folder``); Tiny-ImageNet's archive root. Empty where the layout is the data folder's own.
        files: The files in ``folder`` that torchvision's loader reads (its checksummed lists), so
            that a dry run checks they are there without importing torch; the tests check both agree.
    """

    name: str
    from_files: bool
    num_classes: int | None
    image_size: int | None
    load_size: int | None
    mean: RGB | None
    std: RGB | None
    train_images: int | None
    unlabeled_images: int = 0
    augment: Mapping[str, float | tuple[float, float]] | None = field(default_factory=lambda: SMALL_IMAGES, hash=False)
    folder: str = ""
    files: tuple[str, ...] = ()
    stats_source: str | None = None

    def pretrain_images(self, val_fraction: float, limit_train: int | None, train_images: int | None = None) -> int:
        """Images one pretraining epoch draws from: the training split after the validation
        hold-out and ``limit_train``, plus the unlabeled images, which nothing is held out of.

        Args:
            val_fraction: Share of the official training split held out for validation.
            limit_train: Cap on the training split, applied after the hold-out.
            train_images: The official training split's size where the spec leaves it to the data.
        """
        official = self.train_images if train_images is None else train_images
        if official is None:
            raise ValueError(f"dataset {self.name!r}: the training images are counted from the files; pass train_images")
        train = official - round(official * val_fraction)
        return (train if limit_train is None else min(limit_train, train)) + self.unlabeled_images


DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(
        "cifar10", False, 10, 32, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 50_000,
        folder="cifar-10-batches-py", files=(*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"),
    ),
    "cifar100": DatasetSpec(
        "cifar100", False, 100, 32, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 50_000,
        folder="cifar-100-python", files=("train", "test", "meta"),
    ),
    "stl10": DatasetSpec(
        "stl10", False, 10, 96, 96, (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713), 5_000, 100_000, LARGE_IMAGES,
        folder="stl10_binary", files=("train_X.bin", "train_y.bin", "unlabeled_X.bin", "test_X.bin", "test_y.bin"),
    ),
    "imagefolder": DatasetSpec("imagefolder", True, None, None, None, None, None, None, augment=None),
    "digits": DatasetSpec(
        "digits", False, 10, 32, 32, (0.3057, 0.3057, 0.3057), (0.3237, 0.3237, 0.3237), 1_438,
        # Digits are not mirror-symmetric, and an 8x8 source cannot survive an 8% crop.
        augment=MappingProxyType({**SMALL_IMAGES, "flip_prob": 0.0, "crop_scale": (0.5, 1.0)}),
    ),
    "tinyimagenet": DatasetSpec("tinyimagenet", True, 200, 64, 64, None, None, 100_000, augment=LARGE_IMAGES, folder="tiny-imagenet-200"),
    "imagenet": DatasetSpec("imagenet", True, 1000, 224, 256, IMAGENET_MEAN, IMAGENET_STD, 1_281_167, augment=LARGE_IMAGES),
}


def augment_defaults(image_size: int) -> Mapping[str, float | tuple[float, float]]:
    """The settings of an image folder's augmentation: CIFAR's up to 32 px, STL-10's and ImageNet's above."""
    return SMALL_IMAGES if image_size <= SMALL_IMAGE_MAX_SIZE else LARGE_IMAGES


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name``; a ValueError naming the allowed names where there is none."""
    if name not in DATASETS:
        raise ValueError(f"dataset: got {name!r}; allowed: {', '.join(DATASETS)}")
    return DATASETS[name]
