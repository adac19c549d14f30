"""Image files to uint8 squares: one file at a time, a folder's measured size, and the decoded cache.

Each file is decoded to RGB, turned upright by its EXIF orientation, its shorter side resized to the load size L (only where it differs)
and center-cropped to L x L. A folder small enough for memory is decoded once into a ``.npy`` file
of uint8 [N, 3, L, L] in the cache folder, named by a digest of its file list (paths, sizes,
modification times) and L, so any change to the folder makes a new cache and an old one is never
read for new files. Concurrent workers wait on a lock while the first one writes it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from trainables.spec.dataset_errors import UnreadableImageError

CACHE_FORMAT = 3  # part of every cache key: bump when the decoding itself changes (3: EXIF orientation applied)
SIZE_SAMPLE = 1_000  # files whose header is read to measure a folder's resolution
SIZE_SEED = 0
log = logging.getLogger(__name__)


def _unreadable(path: Path, err: BaseException) -> UnreadableImageError:
    return UnreadableImageError(
        f"image file {path} cannot be read ({type(err).__name__}: {err}); replace or remove it"
    )


def to_rgb(image: Image.Image) -> Image.Image:
    """The image as 8-bit RGB. 16-bit greyscale (PIL's ``I;16*`` and ``I`` modes) is scaled by 1/257,
    because PIL's own conversion clips it at 255 and a scan or a micrograph would come out white;
    float pixels have no one range to scale from, so they are refused."""
    if image.mode == "F":
        raise ValueError("float pixels (mode F) have no fixed range; convert the file to 8 or 16 bits")
    if not image.mode.startswith("I"):
        return image.convert("RGB")
    wide = np.asarray(image).astype(np.int64)
    if wide.size and (wide.min() < 0 or wide.max() > 65535):
        raise ValueError(f"pixels outside 0..65535 (mode {image.mode}); convert the file to 8 or 16 bits")
    return Image.fromarray(np.rint(wide / 257).astype(np.uint8), "L").convert("RGB")


class ImageFiles(Dataset[torch.Tensor]):
    """Files decoded to uint8 [3, L, L] squares, one per index."""

    def __init__(self, paths: Sequence[Path], load_size: int) -> None:
        self.paths = list(paths)
        self.load_size = load_size
        self.square = transforms.Compose(
            [transforms.Resize(load_size), transforms.CenterCrop(load_size), transforms.PILToTensor()]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                # A camera stores a portrait photo sideways with an EXIF orientation; a viewer, and the
                # researcher looking at the folder, sees it upright, and so should the encoder.
                ImageOps.exif_transpose(image, in_place=True)
                rgb = to_rgb(image)  # decodes the whole file: truncated data fails here
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise _unreadable(path, err) from err
        return self.square(rgb)


def native_size(paths: Sequence[Path]) -> int:
    """The median shorter side of a seeded sample of ``paths``, in pixels, rounded half up.

    Only the headers are read, so measuring even a large folder takes well under a second.
    """
    rng = np.random.default_rng(SIZE_SEED)
    chosen = rng.choice(len(paths), size=min(SIZE_SAMPLE, len(paths)), replace=False)
    sides = []
    for index in sorted(chosen.tolist()):
        try:
            with Image.open(paths[index]) as image:
                sides.append(min(image.size))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise _unreadable(paths[index], err) from err
    return int(np.floor(np.median(sides) + 0.5))


def decoding_workers() -> int:
    """Decoding processes for this process: the CPUs it was given, less one for the training loop.

    Inside a Ray actor (a Train worker or a Tune trial) that is the actor's CPU share; elsewhere,
    the CPUs this process may run on.
    """
    cpus = float(len(os.sched_getaffinity(0)))
    ray = sys.modules.get("ray")  # a process that has not imported Ray is no Ray actor; importing it takes seconds
    if ray is not None and ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", cpus)
    return max(0, int(cpus) - 1)


def files_key(paths: Sequence[Path], root: Path, load_size: int) -> str:
    """A digest of the file list (path under ``root``, size, modification time) and the load size:
    the name of everything cached about these files."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}:{load_size}:{len(paths)}".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"\0{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:24]


def _write_atomically(target: Path, files: ImageFiles, num_workers: int) -> None:
    """Decode every file into ``target`` through a temporary file, renamed only once complete."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(len(files), 3, files.load_size, files.load_size))
        start = 0
        for batch in DataLoader(files, batch_size=256, num_workers=num_workers):
            array[start : start + len(batch)] = batch.numpy()
            start += len(batch)
        array.flush()
        del array
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
    finally:  # an error, a full disk or Ctrl-C midway leaves no partial file behind
        partial.unlink(missing_ok=True)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def cache_folder(path: Path) -> Path:
    """``path``, created if need be; a ValueError naming cache_dir where it cannot be."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cache_dir: {path} cannot be created ({err}); allowed: a writable folder") from err
    return path


def decoded(files: ImageFiles, target: Path, num_workers: int) -> torch.Tensor:
    """Every file of ``files`` as uint8 [N, 3, L, L], decoded into ``target`` once and read from it after.

    The tensor maps the cache file copy-on-write: pages are shared between the processes that
    read it, and nothing is written back.
    """
    cache_folder(target.parent)
    shape = (len(files), 3, files.load_size, files.load_size)
    with FileLock(str(target) + ".lock"):
        if target.is_file() and not _holds(target, shape):
            log.warning("decoded cache %s is truncated or not of these %d files; decoding them again", target, len(files))
            target.unlink()
        if not target.is_file():
            _write_atomically(target, files, num_workers)
    return torch.from_numpy(np.load(target, mmap_mode="c"))


def _holds(target: Path, shape: tuple[int, ...]) -> bool:
    """Whether ``target`` is a whole .npy of uint8 ``shape`` (its header read, its length checked)."""
    try:
        array = np.load(target, mmap_mode="r")  # a file shorter than its header says fails to map
    except (OSError, ValueError, EOFError):
        return False
    return array.shape == shape and array.dtype == np.uint8
