"""What a config describes, built one way for pretraining, evaluation, the baseline and the demo.

A config names a dataset (split into pretrain / train / val / test), the augmentation that goes
with it and a model; :func:`build_components` makes the three, seeding the model's initial
weights with the config's seed, so that every DDP worker starts from the same weights and a
random-init baseline of seed s is exactly the encoder a trial of seed s starts from.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from trainables.core.augment import AugmentConfig, augment_config_for, eval_transform
from trainables.core.data import Splits, load_for
from trainables.core.features import Encode
from trainables.core.knn import knn_accuracy
from trainables.core.models import ContrastiveModel, build_model
from trainables.spec.pretrain_config import PretrainConfig


@dataclass(frozen=True)
class Components:
    data: Splits
    aug_cfg: AugmentConfig
    model: ContrastiveModel  # built on the CPU; the caller moves it


def build_components(cfg: PretrainConfig, *, download: bool = False) -> Components:
    data = load_for(cfg, download=download)
    spec = data.spec
    overrides = {k: v for k, v in (("jitter_strength", cfg.jitter_strength), ("blur_prob", cfg.blur_prob)) if v is not None}
    aug_cfg = augment_config_for(spec, **overrides)
    torch.manual_seed(cfg.seed)
    return Components(data, aug_cfg, build_model(cfg.backbone, cfg.head, spec.image_size, cfg.proj_dim))


def training_device(cfg: PretrainConfig) -> torch.device:
    if not cfg.gpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("gpu=True but this worker sees no CUDA device")
    return torch.device("cuda", torch.cuda.current_device())


def autocast(cfg: PretrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on GPU (precision auto or bf16), on CPU only when asked for."""
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def encoder(model: ContrastiveModel, aug_cfg: AugmentConfig, device: torch.device, cfg: PretrainConfig | None = None) -> Encode:
    """uint8 images -> backbone features (the model should be in eval mode), in ``cfg``'s
    precision when given, else in float32."""

    def encode(images: torch.Tensor) -> torch.Tensor:
        with autocast(cfg, device) if cfg is not None else contextlib.nullcontext():
            return model.features(eval_transform(images.to(device), aug_cfg))

    return encode


def validation_knn(c: Components, cfg: PretrainConfig, device: torch.device) -> float:
    """kNN accuracy on the held-out validation split with the training split as the bank, in the
    config's precision; the model is left in training mode."""
    c.model.eval()
    try:
        encode = encoder(c.model, c.aug_cfg, device, cfg)
        classes = c.data.spec.num_classes
        return knn_accuracy(encode, c.data.train, c.data.val, k=cfg.knn_k, temperature=cfg.knn_temperature, num_classes=classes)
    finally:
        c.model.train()
