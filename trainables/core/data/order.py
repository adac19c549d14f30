"""The one rule that turns (seed, epoch) into a generator seed, and the batch order built on it.

Every worker computes an epoch's global batches as one index matrix; worker r of W takes columns
``[r*b, (r+1)*b)`` with ``b = batch_size / W``, so W workers together see exactly the global
batches that one worker would. The augmentation's generator follows the same rule under another
purpose, so a resumed run and a W-worker run draw exactly what an uninterrupted 1-worker run draws.
"""

from __future__ import annotations

import numpy as np
import torch

# Each purpose is a SeedSequence spawn key: independent streams from the same (seed, epoch).
# The batch order's empty key is the plain SeedSequence([seed, epoch]).
PURPOSES: dict[str, tuple[int, ...]] = {"batches": (), "views": (1,)}


def epoch_seed(seed: int, epoch: int, purpose: str) -> int:
    """One 64-bit generator seed for (seed, epoch, purpose).

    SeedSequence keeps nearby pairs such as (1, 0) and (0, 1) unrelated, which ``seed * k + epoch``
    does not for every k.
    """
    if epoch < 0 or seed < 0:
        raise ValueError(f"epoch, seed: got {epoch}, {seed}; allowed: integers 0 or more")
    if purpose not in PURPOSES:
        raise ValueError(f"purpose: got {purpose!r}; allowed: {', '.join(PURPOSES)}")
    sequence = np.random.SeedSequence([seed, epoch], spawn_key=PURPOSES[purpose])
    return int(sequence.generate_state(1, dtype=np.uint64)[0])


def epoch_generator(seed: int, epoch: int, purpose: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` seeded by ``epoch_seed``."""
    return torch.Generator(device).manual_seed(epoch_seed(seed, epoch, purpose))


def batch_indices(num_items: int, batch_size: int, epoch: int, seed: int) -> torch.Tensor:
    """The epoch's global batches as an index matrix: a permutation seeded by (seed, epoch), drop_last.

    Args:
        num_items: Size of the dataset being batched.
        batch_size: Global batch size, 1 to ``num_items``.
        epoch: Epoch number, 0 or more.
        seed: Seed, 0 or more.

    Returns:
        int64 indices into the dataset, each used at most once per epoch.

    Shape:
        returns [num_items // batch_size, batch_size].
    """
    if not 1 <= batch_size <= num_items:
        raise ValueError(
            f"batch_size: got {batch_size}; allowed: 1 to {num_items} (the number of items; "
            "with drop_last a larger batch leaves no batch at all)"
        )
    order = torch.randperm(num_items, generator=epoch_generator(seed, epoch, "batches"))
    num_batches = num_items // batch_size
    return order[: num_batches * batch_size].view(num_batches, batch_size)


def worker_batch_indices(
    num_items: int, batch_size: int, epoch: int, seed: int, rank: int, world_size: int
) -> torch.Tensor:
    """One worker's column slice ``[rank*b, (rank+1)*b)`` of every global batch, ``b = batch_size / world_size``.

    Args:
        num_items: Size of the dataset being batched.
        batch_size: Global batch size, a multiple of ``world_size``.
        epoch: Epoch number, 0 or more.
        seed: Seed, 0 or more.
        rank: This worker's rank, 0 to ``world_size - 1``.
        world_size: Number of workers, 1 or more.

    Shape:
        returns int64 [num_items // batch_size, batch_size // world_size].
    """
    if world_size < 1 or batch_size % world_size != 0:
        raise ValueError(
            f"world_size: got {world_size} for batch_size {batch_size}; allowed: 1 or more, dividing batch_size"
        )
    if not 0 <= rank < world_size:
        raise ValueError(f"rank: got {rank}; allowed: 0 to {world_size - 1} (world_size {world_size})")
    local = batch_size // world_size
    return batch_indices(num_items, batch_size, epoch, seed)[:, rank * local : (rank + 1) * local].contiguous()
