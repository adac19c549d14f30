"""Where each dataset's files are, checked without importing torch: what a dry run and the loaders share.

Layouts (nothing is downloaded):

- ``cifar10``, ``cifar100``, ``stl10``: torchvision's folder under ``DIR`` (``cifar-10-batches-py/``, ...)
  holding the files its loader reads (``DatasetSpec.files``); their md5 sums are checked when loaded.
- ``imagefolder`` and ``imagenet``: ``DIR/train/<class>/*`` and ``DIR/val/<class>/*`` (or
  ``DIR/test/<class>/*``, which is the test split wherever it holds class folders) with the same
  class folders; ``val/`` is otherwise reported as the test split, as ImageNet's official validation
  set is. Labels index the sorted class names, and a file counts where its extension is an image's,
  as in torchvision's ImageFolder, whose rules :func:`scan` follows (the tests check both list the
  same files) with one exception: hidden files and folders (a name starting with ``.``) are skipped,
  as ``ls`` skips them. Jupyter's ``.ipynb_checkpoints/`` is no class, and macOS's ``._name.jpg``
  (AppleDouble metadata beside each file copied from a Mac) is no image.
- ``tinyimagenet``: the official archive extracted in ``DIR``: ``DIR/tiny-imagenet-200/`` with
  ``wnids.txt``, ``train/<wnid>/images/*.JPEG``, and ``val/images/*.JPEG`` labelled by
  ``val/val_annotations.txt``; the official validation set is the test split.

Each problem is a ``DatasetNotFoundError`` (``MalformedDatasetError`` where files disagree) that names the
path at fault and the layout expected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from trainables.spec.dataset_errors import DatasetNotFoundError, MalformedDatasetError
from trainables.spec.datasets import DATASETS, DatasetSpec

FOLDER_TRAIN = "train"
# The test split's folder: test/ where a dataset has one, else val/ (ImageNet's official validation
# set). Model selection never reads it: the validation split is held out of train/ (data/splits.py).
TEST_FOLDERS = ("test", "val")
TINY_VAL = "val"
TINY_ROOT = DATASETS["tinyimagenet"].folder
# torchvision's IMG_EXTENSIONS, kept here so that a dry run reads folders without importing torch.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class FileList:
    """The image files of a folder dataset, labelled.

    Attributes:
        root: The folder the paths are under (the key of the decoded cache is relative to it).
        classes: Class names; a label is an index into this tuple.
        train: (path, label) of each official training file.
        test: (path, label) of each test file.
        skipped: Files and folders under the class folders that were not read, by reason (hidden,
            not an image extension, name not UTF-8, folder not readable: a too-long path, no permission).
    """

    root: Path
    classes: tuple[str, ...]
    train: tuple[tuple[Path, int], ...]
    test: tuple[tuple[Path, int], ...]
    skipped: dict[str, tuple[str, ...]] = field(default_factory=dict)  # reason -> the paths not read for it


def check_files(spec: DatasetSpec, root: Path) -> FileList | None:
    """That the files of ``spec``'s layout are under ``root``, without reading an image (nor importing torch);
    a folder dataset's files as scanned."""
    if spec.from_files:
        return scan(spec, root)
    folder = root / spec.folder
    missing = [name for name in spec.files if not (folder / name).is_file()]
    if missing:
        detail = f" Missing from {folder}: {', '.join(missing)}." if folder.is_dir() else ""
        raise DatasetNotFoundError(not_found_message(spec.name, root, spec.folder) + detail)
    return None


def not_found_message(name: str, root: Path, expected: str) -> str:
    """Where the files of torchvision's dataset ``name`` were looked for, and the command that fetches them."""
    return (
        f"Dataset '{name}' was not found, or is incomplete, in {root}: torchvision looked for "
        f"{root / expected} and its checksummed files. Nothing is downloaded unless asked; fetch it once "
        f"with `python study/train.py --dataset {name} --data-dir {root} --download ...`, or pass as "
        f"--data-dir the folder that already holds {expected}/."
    )


def scan(spec: DatasetSpec, root: Path) -> FileList:
    """The labelled files of ``spec``'s layout under ``root``, checked; DatasetNotFoundError where malformed."""
    if spec.name == "tinyimagenet":
        return _scan_tiny(root)
    part = test_folder(root)
    _check_layout(spec.name, root, part)
    skipped: dict[str, list[str]] = {}
    train_classes, train = _scan_part(spec.name, root, FOLDER_TRAIN, skipped)
    test_classes, test = _scan_part(spec.name, root, part, skipped)
    _check_same_classes(spec.name, root, part, train_classes, test_classes)
    return FileList(root, tuple(train_classes), train, test, {reason: tuple(paths) for reason, paths in skipped.items()})


def test_folder(root: Path) -> str:
    """The folder under ``root`` whose images are the test split: the first of ``TEST_FOLDERS`` that
    holds class folders (a stray empty ``test/`` beside ``val/`` is ignored, as any other extra is)."""
    return next((name for name in TEST_FOLDERS if _has_class_folders(root / name)), TEST_FOLDERS[-1])


def _has_class_folders(folder: Path) -> bool:
    return folder.is_dir() and bool(_class_names(folder))


def _class_names(folder: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and not hidden(entry.name))


def is_image(path: str | Path) -> bool:
    return str(path).lower().endswith(IMAGE_EXTENSIONS) and not hidden(Path(path).name)


def hidden(name: str) -> bool:
    return name.startswith(".")


# --- train/<class>/ and val/<class>/ ----------------------------------------------------------


def _layout_help(root: Path) -> str:
    """The folder layout ``imagefolder`` expects under ``root``."""
    return (
        f"An image folder needs {root}/{FOLDER_TRAIN}/<class>/*.jpg and {root}/val/<class>/*.jpg (or test/ in "
        "place of val/): one subfolder per class, the same class names in both (val/ or test/ is the test split). "
        "Image folders are never downloaded; for ImageNet, extract the official train and val archives "
        "and sort the val images into class folders."
    )


def _check_layout(name: str, root: Path, test_part: str) -> None:
    """Fail fast, before any slow scan, where train/ or the test folder or their class folders are missing."""
    for part in (FOLDER_TRAIN, test_part):
        folder = root / part
        if not folder.is_dir():
            raise DatasetNotFoundError(f"Dataset '{name}' was not found in {root}: {folder} is not a folder. {_layout_help(root)}")
        if not _has_class_folders(folder):
            raise DatasetNotFoundError(f"Dataset '{name}' in {root}: {folder} has no class subfolders. {_layout_help(root)}")


def utf8(name: str) -> bool:
    """Whether a name read from the disk is UTF-8 (Python keeps other bytes as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _not_read(skipped: dict[str, list[str]], reason: str, path: str) -> None:
    skipped.setdefault(reason, []).append(path)


def _enter_once(where: str, folders: list[str], seen: dict[tuple[int, int], str], skipped: dict[str, list[str]]) -> None:
    """Keep in ``folders`` (os.walk's, walked next) the non-hidden, readable ones; each folder is entered
    once, however many links lead to it: a second way in (a link loop, or a second link to a folder)
    would count its images twice, on both sides of the split, and is an error naming it."""
    for name in list(folders):
        path = os.path.join(where, name)
        if hidden(name):
            _not_read(skipped, "hidden folder", path)
            folders.remove(name)
            continue
        try:
            inode = _inode(path)
        except OSError as err:  # a path too long for the system, a dangling link, no permission
            _not_read(skipped, f"folder not readable ({err.strerror})", path)
            folders.remove(name)
            continue
        first = seen.setdefault(inode, path)
        if first != path:
            raise MalformedDatasetError(
                f"{shown(path)} leads to the folder {shown(first)} again (a symbolic link loop, or a second link to it): "
                "its images would be read twice; remove the link"
            )


def _inode(path: str | Path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def shown(path: str | Path) -> str:
    """A path as text, bytes that are not UTF-8 written as escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _class_files(folder: Path, skipped: dict[str, list[str]]) -> list[Path]:
    """The image files under one class folder, at any depth, in ImageFolder's order (links followed,
    each folder once), hidden ones and those in hidden folders left out. Every file or folder not
    read is added to ``skipped`` under its reason."""
    seen = {_inode(folder): str(folder)}
    listed: list[tuple[str, list[str]]] = []
    unreadable = lambda err: _not_read(skipped, f"folder not readable ({err.strerror})", str(err.filename))  # noqa: E731
    for where, folders, names in os.walk(folder, followlinks=True, onerror=unreadable):
        _enter_once(where, folders, seen, skipped)
        listed.append((where, names))
    found: list[Path] = []
    for where, names in sorted(listed):
        for name in sorted(names):
            path = os.path.join(where, name)
            if not utf8(name):
                _not_read(skipped, "name not UTF-8", path)
            elif hidden(name):
                _not_read(skipped, "hidden", path)
            elif not is_image(name):
                _not_read(skipped, "not an image extension", path)
            else:
                found.append(Path(path))
    return found


def shortened(text: str, keep: int = 160) -> str:
    """``text`` cut in its middle to at most ``keep`` characters (a path's start and its file name stay)."""
    return text if len(text) <= keep else f"{text[: keep // 3]}...{text[-(keep - keep // 3 - 3):]}"


def skipped_note(skipped: dict[str, list[str]]) -> str:
    """What a scan did not read, one reason at a time with its count and an example."""
    said = [f"{len(paths)} {reason} (e.g. {shortened(shown(paths[0]))})" for reason, paths in sorted(skipped.items())]
    return "files and folders not read: " + "; ".join(said)


def _scan_part(name: str, root: Path, part: str, skipped: dict[str, list[str]]) -> tuple[list[str], tuple[tuple[Path, int], ...]]:
    """Scan ``root/part`` with ImageFolder's rules; every class folder must hold an image, and be named in UTF-8."""
    classes = _class_names(root / part)
    odd = [c for c in classes if not utf8(c)]
    if odd:
        raise MalformedDatasetError(
            f"Dataset '{name}' in {root}: class folder {shown(root / part / odd[0])} is not named in UTF-8; class names are recorded as text, rename it"
        )
    files = {label: _class_files(root / part / c, skipped) for label, c in enumerate(classes)}
    empty = [classes[label] for label, found in files.items() if not found]
    if empty:
        raise DatasetNotFoundError(
            f"Dataset '{name}' in {root}: class folder {root / part / empty[0]} holds no image files "
            f"(empty class folders under {part}/: {', '.join(empty)}; allowed extensions: "
            f"{', '.join(IMAGE_EXTENSIONS)}). Put at least one image in each class folder or remove the empty ones."
        )
    return classes, tuple((path, label) for label, found in files.items() for path in found)


def _check_same_classes(name: str, root: Path, part: str, train: list[str], test: list[str]) -> None:
    """Labels are positions in the sorted class list, so train/ and the test folder must name the same classes."""
    if train == test:
        return
    raise MalformedDatasetError(
        f"Dataset '{name}' in {root}: {FOLDER_TRAIN}/ and {part}/ have different class folders "
        f"(only in {FOLDER_TRAIN}/: {sorted(set(train) - set(test))}; only in {part}/: "
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
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image(p))


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
    annotations, images = root / TINY_VAL / "val_annotations.txt", root / TINY_VAL / "images"
    for needed in (annotations, images):
        if not needed.exists():
            raise _tiny_missing(data_dir, needed)
    wnid_of: dict[str, str] = {}
    for number, line in enumerate(annotations.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in label:
            raise MalformedDatasetError(
                f"Dataset 'tinyimagenet': {annotations} line {number} ({line[:80]!r}) does not name an image and "
                "one of the wnids of wnids.txt; allowed: '<file>\\t<wnid>\\t<box>' lines"
            )
        wnid_of[fields[0]] = fields[1]
    files = _images_in(images)
    unlabelled = [p.name for p in files if p.name not in wnid_of]
    if unlabelled:
        raise MalformedDatasetError(
            f"Dataset 'tinyimagenet': {images / unlabelled[0]} has no line in {annotations} ({len(unlabelled)} such files)"
        )
    listed = set(wnid_of) - {p.name for p in files}
    if listed:
        raise _tiny_missing(data_dir, images / sorted(listed)[0])
    return tuple((path, label[wnid_of[path.name]]) for path in files)
