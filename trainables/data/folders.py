"""Image folders: the layouts read, and the training resolution and load size of a folder dataset.

Layouts (nothing is downloaded):

- ``imagefolder`` and ``imagenet``: ``DIR/train/<class>/*`` and ``DIR/val/<class>/*`` with the same
  class folders; ``val/`` is reported as the test split. Labels index the sorted class names, as in
  torchvision's ImageFolder, whose scan is used.
- ``tinyimagenet``: the official archive extracted in ``DIR``: ``DIR/tiny-imagenet-200/`` with
  ``wnids.txt``, ``train/<wnid>/images/*.JPEG``, and ``val/images/*.JPEG`` labelled by
  ``val/val_annotations.txt``; the official validation set is the test split.

Sizes. The resolution S is ``image_size`` where given, else the dataset's own (64 for Tiny-ImageNet,
224 for ImageNet), else, for a plain image folder, the median shorter side of a seeded sample of its
training files, so that a folder of 28-px images trains at 28 px and nothing is upsampled unless
asked for. The load size L, the side of the decoded squares the augmentation crops from, is
``load_size`` where given, else the dataset's own (256 for ImageNet), else ``S * 8/7`` (ImageNet's
256 for 224) but no larger than the images themselves and no smaller than S: a folder trained at
its native size is decoded at that size. The random-resized crop is taken from that square, not
from the full file: on a 4:3 photo, the outer eighth of each long side is never seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from trainables.data.decode import native_size
from trainables.data.errors import DatasetNotFoundError
from trainables.data.specs import DatasetSpec

FOLDER_TRAIN = "train"
FOLDER_TEST = "val"  # ImageNet's official validation set, reported as the test split
TINY_ROOT = "tiny-imagenet-200"
LOAD_MARGIN = 8 / 7  # ImageNet's 256-px squares for 224-px crops


@dataclass(frozen=True)
class FileList:
    """The image files of a folder dataset, labelled.

    Attributes:
        root: The folder the paths are under (the key of the decoded cache is relative to it).
        classes: Class names; a label is an index into this tuple.
        train: (path, label) of each official training file.
        test: (path, label) of each test file.
    """

    root: Path
    classes: tuple[str, ...]
    train: tuple[tuple[Path, int], ...]
    test: tuple[tuple[Path, int], ...]


def resolve_sizes(spec: DatasetSpec, files: FileList, image_size: int | None, load_size: int | None) -> tuple[int, int]:
    """(S, L) of a folder dataset, as the module docstring says; a ValueError naming the field if L < S."""
    for name, value in (("image_size", image_size), ("load_size", load_size)):
        if value is not None and value < 1:
            raise ValueError(f"{name}: got {value}; allowed: None (from the data) or 1 or more")
    native = spec.image_size or native_size([path for path, _ in files.train])
    size = image_size or native
    if load_size is None:
        own = spec.load_size if size == spec.image_size else None
        load_size = own or max(size, min(round(size * LOAD_MARGIN), native))
    if load_size < size:
        raise ValueError(
            f"load_size: got {load_size} for image_size {size}; allowed: image_size or more "
            "(views are cropped out of the decoded square)"
        )
    return size, load_size


def scan(spec: DatasetSpec, root: Path) -> FileList:
    """The labelled files of ``spec``'s layout under ``root``, checked; DatasetNotFoundError where malformed."""
    if spec.name == "tinyimagenet":
        return _scan_tiny(root)
    _check_layout(spec.name, root)
    train_classes, train = _scan_part(spec.name, root, FOLDER_TRAIN)
    test_classes, test = _scan_part(spec.name, root, FOLDER_TEST)
    _check_same_classes(spec.name, root, train_classes, test_classes)
    return FileList(root, tuple(train_classes), train, test)


# --- train/<class>/ and val/<class>/ ----------------------------------------------------------


def _layout_help(root: Path) -> str:
    """The folder layout ``imagefolder`` expects under ``root``."""
    return (
        f"An image folder needs {root}/{FOLDER_TRAIN}/<class>/*.jpg and {root}/{FOLDER_TEST}/<class>/*.jpg: one "
        f"subfolder per class, the same class names in both ({FOLDER_TEST}/ is reported as the test split). "
        "Image folders are never downloaded; for ImageNet, extract the official train and val archives "
        "and sort the val images into class folders."
    )


def _check_layout(name: str, root: Path) -> None:
    """Fail fast, before any slow scan, where train/ or val/ or their class folders are missing."""
    for part in (FOLDER_TRAIN, FOLDER_TEST):
        folder = root / part
        if not folder.is_dir():
            raise DatasetNotFoundError(
                f"Dataset '{name}' was not found in {root}: {folder} is not a folder. {_layout_help(root)}"
            )
        if not any(entry.is_dir() for entry in folder.iterdir()):
            raise DatasetNotFoundError(
                f"Dataset '{name}' in {root}: {folder} has no class subfolders. {_layout_help(root)}"
            )


def _scan_part(name: str, root: Path, part: str) -> tuple[list[str], tuple[tuple[Path, int], ...]]:
    """Scan ``root/part`` with torchvision's ImageFolder rules; every class folder must hold an image."""
    classes, class_to_idx = find_classes(str(root / part))
    samples = make_dataset(str(root / part), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    found = {label for _, label in samples}
    empty = [c for c in classes if class_to_idx[c] not in found]
    if empty:
        raise DatasetNotFoundError(
            f"Dataset '{name}' in {root}: class folder {root / part / empty[0]} holds no image files "
            f"(empty class folders under {part}/: {', '.join(empty)}; allowed extensions: "
            f"{', '.join(IMG_EXTENSIONS)}). Put at least one image in each class folder or remove the empty ones."
        )
    return classes, tuple((Path(path), label) for path, label in samples)


def _check_same_classes(name: str, root: Path, train: list[str], test: list[str]) -> None:
    """Labels are positions in the sorted class list, so train/ and val/ must name the same classes."""
    if train == test:
        return
    raise ValueError(
        f"Dataset '{name}' in {root}: {FOLDER_TRAIN}/ and {FOLDER_TEST}/ have different class folders "
        f"(only in {FOLDER_TRAIN}/: {sorted(set(train) - set(test))}; only in {FOLDER_TEST}/: "
        f"{sorted(set(test) - set(train))}); allowed: the same class folder names in both."
    )


# --- Tiny-ImageNet ----------------------------------------------------------------------------


def _tiny_help(root: Path) -> str:
    return (
        f"Tiny-ImageNet is read from the official archive (tiny-imagenet-200.zip) extracted in {root}: "
        f"{root / TINY_ROOT}/wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and "
        "val/val_annotations.txt. Pass as --data-dir the folder that holds tiny-imagenet-200/."
    )


def _tiny_missing(root: Path, what: Path) -> DatasetNotFoundError:
    return DatasetNotFoundError(f"Dataset 'tinyimagenet' was not found, or is incomplete, in {root}: {what} is missing. {_tiny_help(root)}")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)


def _scan_tiny(data_dir: Path) -> FileList:
    """Tiny-ImageNet's official layout: 200 wnids, train/<wnid>/images/, val/images/ with annotations."""
    root = data_dir / TINY_ROOT
    if not (root / "wnids.txt").is_file():
        raise _tiny_missing(data_dir, root / "wnids.txt")
    wnids = sorted({line.strip() for line in (root / "wnids.txt").read_text(encoding="utf-8").splitlines() if line.strip()})
    label = {wnid: i for i, wnid in enumerate(wnids)}
    train: list[tuple[Path, int]] = []
    for wnid in wnids:
        folder = root / FOLDER_TRAIN / wnid / "images"
        if not folder.is_dir():
            raise _tiny_missing(data_dir, folder)
        images = _images_in(folder)
        if not images:
            raise DatasetNotFoundError(f"Dataset 'tinyimagenet' in {data_dir}: {folder} holds no image files. {_tiny_help(data_dir)}")
        train += [(path, label[wnid]) for path in images]
    return FileList(root, tuple(wnids), tuple(train), _tiny_val(data_dir, root, label))


def _tiny_val(data_dir: Path, root: Path, label: dict[str, int]) -> tuple[tuple[Path, int], ...]:
    """The official validation images, labelled by val_annotations.txt (file, wnid, box...)."""
    annotations, images = root / FOLDER_TEST / "val_annotations.txt", root / FOLDER_TEST / "images"
    for needed in (annotations, images):
        if not needed.exists():
            raise _tiny_missing(data_dir, needed)
    wnid_of: dict[str, str] = {}
    for number, line in enumerate(annotations.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in label:
            raise ValueError(
                f"Dataset 'tinyimagenet': {annotations} line {number} ({line[:80]!r}) does not name an image and "
                "one of the wnids of wnids.txt; allowed: '<file>\\t<wnid>\\t<box>' lines"
            )
        wnid_of[fields[0]] = fields[1]
    files = _images_in(images)
    unlabelled = [p.name for p in files if p.name not in wnid_of]
    if unlabelled:
        raise ValueError(f"Dataset 'tinyimagenet': {images / unlabelled[0]} has no line in {annotations} ({len(unlabelled)} such files)")
    listed = set(wnid_of) - {p.name for p in files}
    if listed:
        raise _tiny_missing(data_dir, images / sorted(listed)[0])
    return tuple((path, label[wnid_of[path.name]]) for path in files)
