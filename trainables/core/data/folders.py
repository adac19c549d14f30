"""The training resolution and load size of a folder dataset (its layout: ``trainables.spec.layouts``).

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

from trainables.core.data.decode import native_size
from trainables.spec.datasets import DatasetSpec
from trainables.spec.layouts import FileList

LOAD_MARGIN = 8 / 7  # ImageNet's 256-px squares for 224-px crops


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
