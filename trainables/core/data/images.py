"""The one interface of a split's images, whether held in memory or decoded from files.

``LabeledImages`` holds uint8 pixels in one tensor (CIFAR, STL-10, digits, and image folders small
enough to cache); ``FolderImages`` decodes files in DataLoader workers. Both are ``Images``, so
pretraining, feature extraction and evaluation read any split the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from trainables.core.data.order import worker_batch_indices


class Images(Protocol):
    """One split: N images, their labels, in-order batches and this worker's share of each global batch."""

    @property
    def labels(self) -> torch.Tensor:
        """Class index of each image (-1 for unlabeled pretraining images), int64 [N] on the CPU."""
        ...

    @property
    def in_memory(self) -> bool:
        """True where every image is one tensor already (``images``); False where files are decoded per batch."""
        ...

    def __len__(self) -> int: ...

    def batches(self, batch_size: int, rows: slice = slice(None)) -> Iterator[torch.Tensor]:
        """The images of ``rows``, in order, as uint8 [b, 3, L, L] on the split's device; the last may be smaller."""
        ...

    def to(self, device: torch.device | str) -> Images:
        """The same split with its batches on ``device`` (in memory: moved once, here)."""
        ...

    def worker_batches(self, batch_size: int, epoch: int, seed: int, rank: int, world_size: int) -> Iterator[torch.Tensor]:
        """This worker's slice of each of the epoch's global batches (``worker_batch_indices``), uint8 on the split's device."""
        ...


# Tensors have no single truth value, so the generated __eq__ would fail; equality is identity.
@dataclass(frozen=True, eq=False)
class LabeledImages:
    """Images held in one tensor, with their class labels.

    Attributes:
        images: The pixels, on any device.
        labels: Class index of each image; -1 marks an unlabeled pretraining image. Kept on the CPU.

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

    @property
    def in_memory(self) -> bool:
        return True

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, indices: torch.Tensor) -> LabeledImages:
        """The rows ``indices``, in that order.

        Shape:
            indices: int64 [K].
        """
        return LabeledImages(self.images[indices.to(self.images.device)], self.labels[indices])

    def batches(self, batch_size: int, rows: slice = slice(None)) -> Iterator[torch.Tensor]:
        yield from self.images[rows].split(batch_size)

    def to(self, device: torch.device | str) -> LabeledImages:
        return LabeledImages(self.images.to(device), self.labels)

    def worker_batches(self, batch_size: int, epoch: int, seed: int, rank: int, world_size: int) -> Iterator[torch.Tensor]:
        rows = worker_batch_indices(len(self), batch_size, epoch, seed, rank, world_size).to(self.images.device)
        for index in rows:
            yield self.images[index]


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


def _stack_images(items: list[torch.Tensor]) -> torch.Tensor:
    """Shape: items b x uint8 [3, L, L]; returns uint8 [b, 3, L, L]."""
    return torch.stack(items)


@dataclass(frozen=True, eq=False)
class FolderImages:
    """The rows ``indices`` of a list of image files, decoded on demand by DataLoader workers.

    torch's DistributedSampler is not used for the epoch's batches: it deals indices round-robin
    per worker and draws its own permutation, so its batches are not column slices of ``batch_indices``.

    Attributes:
        files: Decodes file i to uint8 [3, L, L] (``trainables.core.data.decode.ImageFiles``).
        all_labels: Class index of every file of ``files``.
        indices: Rows of ``files`` in this split.
        num_workers: Decoding processes (0 decodes in the calling process).
        device: Where batches are delivered.

    Shape:
        all_labels: int64 [F]; indices: int64 [N].
    """

    files: Dataset[torch.Tensor]
    all_labels: torch.Tensor
    indices: torch.Tensor
    num_workers: int
    device: torch.device = torch.device("cpu")

    @property
    def labels(self) -> torch.Tensor:
        return self.all_labels[self.indices]

    @property
    def in_memory(self) -> bool:
        return False

    def __len__(self) -> int:
        return len(self.indices)

    def _loader(self, batch_size: int, batch_sampler: _FixedBatches | None = None) -> Iterator[torch.Tensor]:
        """Batches of ``batch_size`` in order, or the rows of ``batch_sampler`` (which then sets the size)."""
        loader = DataLoader(
            Subset(self.files, self.indices.tolist()), batch_size=1 if batch_sampler else batch_size,
            batch_sampler=batch_sampler, num_workers=self.num_workers, collate_fn=_stack_images,
            pin_memory=self.device.type == "cuda",
        )
        for images in loader:
            yield images.to(self.device, non_blocking=True)

    def batches(self, batch_size: int, rows: slice = slice(None)) -> Iterator[torch.Tensor]:
        part = FolderImages(self.files, self.all_labels, self.indices[rows], self.num_workers, self.device)
        yield from part._loader(batch_size)

    def to(self, device: torch.device | str) -> FolderImages:
        return FolderImages(self.files, self.all_labels, self.indices, self.num_workers, torch.device(device))

    def worker_batches(self, batch_size: int, epoch: int, seed: int, rank: int, world_size: int) -> Iterator[torch.Tensor]:
        rows = worker_batch_indices(len(self), batch_size, epoch, seed, rank, world_size)
        yield from self._loader(1, _FixedBatches(rows))
