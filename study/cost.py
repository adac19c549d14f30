"""Estimated cost of a trial: encoder passes, and GPU-hours where a throughput was measured."""

from __future__ import annotations

from trainables.config import PretrainConfig

# Pretraining images per epoch: the training split minus the validation fraction
# (STL-10: train + 100,000 unlabeled; imagefolder: ImageNet-1k's training set).
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "stl10": 105_000, "imagefolder": 1_281_167, "digits": 1_437}

# Encoder passes (view images, forward + backward) per second on one GPU, keyed by
# (backbone, image size). Measured by benchmarks/gpu_pretrain.py (benchmarks/RESULTS.md):
# ResNet-18 at 32 px, batch 512 x 2 views, bf16, one H100: 19,836 images/s = 39,672 passes/s.
# Other backbones and sizes are not measured yet, so their cost shows as n/a.
GPU_THROUGHPUT: dict[tuple[str, int], float] = {("resnet18", 32): 39_672.0}

IMAGE_SIZE = {"cifar10": 32, "cifar100": 32, "stl10": 96, "imagefolder": 224, "digits": 32}


def encoder_passes(cfg: PretrainConfig) -> int:
    """Images through the encoder over the whole pretraining: epochs x images x V."""
    images = TRAIN_IMAGES[cfg.dataset] if cfg.limit_train is None else min(cfg.limit_train, TRAIN_IMAGES[cfg.dataset])
    if cfg.limit_train is None or cfg.dataset == "stl10":
        images = int(images * (1 - cfg.val_fraction))
    return cfg.epochs * (images // cfg.batch_size) * cfg.batch_size * cfg.views_per_image


def gpu_hours(cfg: PretrainConfig) -> float | None:
    """Pretraining GPU-hours (all workers), or None without a measured throughput."""
    rate = GPU_THROUGHPUT.get((cfg.backbone, IMAGE_SIZE[cfg.dataset]))
    if rate is None or not cfg.gpu:
        return None
    return encoder_passes(cfg) / rate / 3600
