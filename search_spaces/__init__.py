"""Named study presets, one module each: ``PRESETS[name]`` is a :class:`Preset`."""

from __future__ import annotations

from search_spaces import (
    attentionnce_views,
    cifar10_cpu,
    cifar10_cpu_tuned,
    flatnce_batch_size,
    lineage_baselines,
    quickstart,
    tpe_lr,
)
from search_spaces.preset import Preset, Tuning

PRESETS: dict[str, Preset] = {
    m.PRESET.name: m.PRESET
    for m in (quickstart, cifar10_cpu, cifar10_cpu_tuned, flatnce_batch_size, attentionnce_views, lineage_baselines, tpe_lr)
}

__all__ = ["PRESETS", "Preset", "Tuning"]
