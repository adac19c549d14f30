"""Per-channel mean and std of a dataset's training images, computed once and cached.

Over every pixel of a seeded sample of the official training images (the validation hold-out
included, as for the published statistics of the built-in datasets, so that the values do not
depend on ``split_seed``), at the load size the run decodes to. The sums are exact: a histogram of
the 256 values per channel.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from trainables.spec.datasets import STATS_CACHED, STATS_COMPUTED

STATS_SAMPLE = 10_000  # images
STATS_SEED = 0
RGB = tuple[float, float, float]
log = logging.getLogger(__name__)


def sample_rows(num_images: int) -> torch.Tensor:
    """The seeded sample of rows whose pixels the statistics count, sorted.

    Shape:
        returns int64 [min(num_images, STATS_SAMPLE)].
    """
    generator = torch.Generator().manual_seed(STATS_SEED)
    return torch.randperm(num_images, generator=generator)[:STATS_SAMPLE].sort().values


def channel_stats(batches: Iterable[torch.Tensor]) -> tuple[RGB, RGB]:
    """Exact per-channel mean and std in [0, 1] units over every pixel of the batches.

    Shape:
        batches: uint8 [b, 3, H, W] each.
    """
    counts = torch.zeros(3, 256, dtype=torch.float64)
    for batch in batches:
        for channel in range(3):
            counts[channel] += torch.bincount(batch[:, channel].flatten(), minlength=256).double()
    if counts.sum() == 0:
        raise ValueError("statistics: no pixels to count")
    values = torch.arange(256, dtype=torch.float64) / 255
    total = counts.sum(1)
    mean = (counts * values).sum(1) / total
    std = ((counts * values**2).sum(1) / total - mean**2).clamp_min(0).sqrt()
    return _rgb(mean.tolist()), _rgb(std.tolist())


def _rgb(values: list[float]) -> RGB:
    return (round(values[0], 6), round(values[1], 6), round(values[2], 6))


def stored_stats(path: Path) -> tuple[RGB, RGB] | None:
    """The statistics stored at ``path``; None, with a warning naming it, where it holds none (garbage,
    a half-written file of another program, non-finite values), so that they are computed again."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        mean, std = _rgb(stored["mean"]), _rgb(stored["std"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError) as err:
        log.warning("statistics cache %s is not readable (%s: %s); computing the statistics again", path, type(err).__name__, str(err)[:200])
        return None
    if not all(math.isfinite(v) for v in (*mean, *std)) or min(std) <= 0:
        log.warning("statistics cache %s holds mean %s, std %s, which no images have; computing the statistics again", path, mean, std)
        return None
    return mean, std


def cached_stats(path: Path, compute: Callable[[], tuple[RGB, RGB]]) -> tuple[RGB, RGB, str]:
    """(mean, std, STATS_CACHED) as stored at ``path``, else ``compute()``'s, stored there atomically, and STATS_COMPUTED."""
    stored = stored_stats(path) if path.is_file() else None
    if stored is not None:
        return *stored, STATS_CACHED
    mean, std = compute()
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps({"mean": mean, "std": std, "sample": STATS_SAMPLE, "seed": STATS_SEED}), encoding="utf-8")
    os.replace(partial, path)
    return mean, std, STATS_COMPUTED
