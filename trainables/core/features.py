"""Frozen-backbone features of a whole split, each worker encoding an equal share."""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F

from trainables.core.data import Images
from trainables.core.distributed import world

Encode = Callable[[torch.Tensor], torch.Tensor]


def _gather_rows(local: torch.Tensor, share: int, total: int) -> torch.Tensor:
    """Every worker's equal share of rows, padded to ``share`` for the collective, concatenated."""
    padded = local.new_zeros(share, local.shape[1])
    padded[: local.shape[0]] = local
    out = local.new_empty(share * world()[1], local.shape[1])
    dist.all_gather_into_tensor(out, padded)
    return out[:total]


@torch.no_grad()
def split_features(encode: Encode, split: Images, *, batch_size: int = 512, normalize: bool = True) -> torch.Tensor:
    """Features of every image of ``split``, identical on every worker.

    Shape:
        -> [N, F] float32, L2-normalised along F when ``normalize``.
    """
    rank, size = world()
    share = math.ceil(len(split) / size)
    parts = [encode(images).float() for images in split.batches(batch_size, slice(rank * share, (rank + 1) * share))]
    feats = torch.cat(parts) if parts else torch.empty(0)
    feats = F.normalize(feats, dim=1) if normalize else feats
    return feats if size == 1 else _gather_rows(feats, share, len(split))
