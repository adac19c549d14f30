"""Frozen-backbone features of a whole split, each worker encoding an equal share."""

from __future__ import annotations

import math
from typing import Callable, Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F

from trainables.data import FolderImages, LabeledImages
from trainables.distributed import world

Encode = Callable[[torch.Tensor], torch.Tensor]


def _batches(split: LabeledImages | FolderImages, rows: slice, batch_size: int, num_workers: int) -> Iterator[torch.Tensor]:
    """uint8 image batches of the split's rows ``rows``, in order."""
    if isinstance(split, LabeledImages):
        images = split.images[rows]
        yield from images.split(batch_size)
        return
    part = FolderImages(split.folder, split.indices[rows])
    for images, _labels in part.loader(batch_size, num_workers):
        yield images


def _gather_rows(local: torch.Tensor, share: int, total: int) -> torch.Tensor:
    """Every worker's equal share of rows, padded to ``share`` for the collective, concatenated."""
    padded = local.new_zeros(share, local.shape[1])
    padded[: local.shape[0]] = local
    out = local.new_empty(share * world()[1], local.shape[1])
    dist.all_gather_into_tensor(out, padded)
    return out[:total]


@torch.no_grad()
def split_features(encode: Encode, split: LabeledImages | FolderImages, *, batch_size: int = 512, num_workers: int = 0, normalize: bool = True) -> torch.Tensor:
    """Features of every image of ``split``, identical on every worker.

    Shape:
        -> [N, F] float32, L2-normalised along F when ``normalize``.
    """
    rank, size = world()
    share = math.ceil(len(split) / size)
    parts = [encode(images).float() for images in _batches(split, slice(rank * share, (rank + 1) * share), batch_size, num_workers)]
    feats = torch.cat(parts) if parts else torch.empty(0)
    feats = F.normalize(feats, dim=1) if normalize else feats
    return feats if size == 1 else _gather_rows(feats, share, len(split))
