"""Estimated cost of a trial: encoder passes, and GPU-hours where a throughput was measured."""

from __future__ import annotations

import functools
from pathlib import Path

from trainables.spec.datasets import dataset_spec
from trainables.spec.layouts import scan
from trainables.spec.pretrain_config import PretrainConfig

# Encoder passes (view images, forward + backward) per second on one GPU, keyed by
# (backbone, image size). Measured by benchmarks/gpu_pretrain.py (benchmarks/RESULTS.md):
# ResNet-18 at 32 px, batch 512 x 2 views, bf16, one H100: 19,836 images/s = 39,672 passes/s.
# Other backbones and sizes are not measured yet, so their cost shows as n/a.
GPU_THROUGHPUT: dict[tuple[str, int], float] = {("resnet18", 32): 39_672.0}


def pretrain_images(cfg: PretrainConfig) -> int:
    """Images of one pretraining epoch, as the dataset's spec counts them (an image folder's files are counted)."""
    spec = dataset_spec(cfg.dataset)
    if spec.train_images is not None:
        return spec.pretrain_images(cfg.val_fraction, cfg.limit_train)
    official = official_train_images(cfg.dataset, Path(cfg.data_dir).expanduser().resolve())
    return spec.pretrain_images(cfg.val_fraction, cfg.limit_train, official)


@functools.lru_cache(maxsize=None)
def official_train_images(dataset: str, root: Path) -> int:
    """An image folder's training files, counted once per folder: a plan prices every trial of a
    study, each several ways (passes, GPU-hours, time), and a large folder takes seconds to scan."""
    return len(scan(dataset_spec(dataset), root).train)


def encoder_passes(cfg: PretrainConfig) -> int:
    """Images through the encoder over the whole pretraining: epochs x images x V."""
    return cfg.epochs * (pretrain_images(cfg) // cfg.batch_size) * cfg.batch_size * cfg.views_per_image


def gpu_hours(cfg: PretrainConfig) -> float | None:
    """Pretraining GPU-hours (all workers), or None without a measured throughput."""
    size = cfg.image_size or dataset_spec(cfg.dataset).image_size
    rate = GPU_THROUGHPUT.get((cfg.backbone, size)) if size is not None else None
    if rate is None or not cfg.gpu:
        return None
    return encoder_passes(cfg) / rate / 3600


# Encoder passes per second of one CPU trial (one torch thread), keyed by (backbone, image size):
# the small convnet at 32 px, two trials side by side on 2 cores, 5,000 CIFAR-10 images x 2
# views in 11.5 s per epoch (the cifar10-cpu preset's measurement; search_spaces/cifar10_cpu.py).
CPU_THROUGHPUT: dict[tuple[str, int], float] = {("small", 32): 870.0}
TRIAL_OVERHEAD_S = 15.0  # per trial: start, validation kNN, the probe's feature extraction, MLflow


def estimated_seconds(cfg: PretrainConfig) -> float | None:
    """A trial's wall-clock from measured throughput (GPU or CPU), or None where none was measured."""
    hours = gpu_hours(cfg)
    if hours is not None:
        return hours * 3600 / max(1, cfg.workers) + TRIAL_OVERHEAD_S
    size = cfg.image_size or dataset_spec(cfg.dataset).image_size
    rate = CPU_THROUGHPUT.get((cfg.backbone, size)) if size is not None else None
    if rate is None or cfg.gpu:
        return None
    return encoder_passes(cfg) / (rate * cfg.workers * cfg.cpus_per_worker) + TRIAL_OVERHEAD_S


def minutes(seconds: float) -> str:
    """A duration as a person reads an estimate: seconds under a minute and a half, else minutes."""
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
