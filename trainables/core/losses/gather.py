"""Gathering embeddings across DDP workers so that every loss sees the global batch."""

from __future__ import annotations

import torch
import torch.distributed.nn.functional as dist_fn

from trainables.core.distributed import world


def gather_batch(z: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All-gather the workers' slices of a batch along dim 0, keeping autograd.

    torch's differentiable all-gather sends each worker the summed gradient of its own slice
    backwards. Each worker's loss is the mean over its local anchors, and DDP averages the
    parameter gradients, so the result equals single-process training on the full batch.

    Args:
        z: this worker's slice of the batch.

    Shape:
        z: [b, ...] -> ([W * b, ...], offset) where offset = rank * b is where z sits.
    """
    rank, size = world()
    if size == 1:
        return z, 0
    return torch.cat(dist_fn.all_gather(z.contiguous()), dim=0), rank * z.shape[0]
