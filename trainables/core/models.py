"""Encoders and projection heads for contrastive pretraining.

A contrastive model is a backbone (images to features, kept for kNN and linear evaluation)
followed by a projection head (features to the space the loss works in). A study config names
them; the names and where each builder lives are the catalogs ``BACKBONES`` and ``HEADS`` of
``trainables/spec/backbones.py``, which :func:`build_model` reads.

- ``resnet18`` / ``resnet50``: torchvision ResNets, randomly initialised. Images up to
  ``CIFAR_STEM_MAX_SIZE`` px get the CIFAR stem (3×3 stride-1 conv1, no max-pool), as in both
  FlatCLR and AttentionNCE; larger images keep the ImageNet stem (7×7 stride-2 conv1 + max-pool).
- ``small``: a four-stage convnet that trains in seconds on a CPU, for the quickstart and tests.
- ``mlp``: FlatCLR's head, Linear(F→F) → ReLU → Linear(F→out), with biases and no BatchNorm.
- ``mlp_bn``: the head of the AttentionNCE / Debiased CL / HCL code lineage,
  Linear(F→512, no bias) → BatchNorm1d → ReLU → Linear(512→out).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn
from torchvision import models as tv_models

from trainables.spec.backbones import BACKBONES, HEADS

CIFAR_STEM_MAX_SIZE = 96  # STL-10's 96 px still uses the CIFAR stem in FlatCLR
DEFAULT_PROJ_DIM = 128
MLP_BN_HIDDEN = 512
SMALL_WIDTHS = (32, 64, 128, 256)


# --- backbones -------------------------------------------------------------------------------
def _resnet(constructor: Callable[..., tv_models.ResNet], image_size: int) -> tuple[nn.Module, int]:
    """Builds a randomly initialised torchvision ResNet whose forward returns pooled features.

    Args:
        constructor: A torchvision ResNet constructor such as ``torchvision.models.resnet18``.
        image_size: Side length of the training images in pixels; it picks the stem.

    Returns:
        The network with ``fc`` replaced by the identity, and its feature dimension.
    """
    net = constructor(weights=None)
    if image_size <= CIFAR_STEM_MAX_SIZE:
        # At 32 px the ImageNet stem would shrink the map to 8×8 before the first block.
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, feature_dim


def resnet18(image_size: int) -> tuple[nn.Module, int]:
    """ResNet-18 backbone (512-d features); see ``_resnet`` for the stem rule."""
    return _resnet(tv_models.resnet18, image_size)


def resnet50(image_size: int) -> tuple[nn.Module, int]:
    """ResNet-50 backbone (2048-d features); see ``_resnet`` for the stem rule."""
    return _resnet(tv_models.resnet50, image_size)


def _downsampling_stage(in_channels: int, out_channels: int) -> nn.Sequential:
    """One 3×3 stride-2 conv → BatchNorm → ReLU stage (no conv bias: BN's shift replaces it)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def small(image_size: int) -> tuple[nn.Module, int]:
    """A four-stage convnet (32→64→128→256 channels, each stage halving the resolution).

    Made for the CPU quickstart and tests. Downsampling from the first stage on costs about a
    quarter of the multiply-adds of a stride-1 first stage, which keeps a CPU epoch over a few
    thousand 32 px views to seconds.

    Args:
        image_size: Unused; global average pooling takes any size. Kept so that every
            backbone has the same signature.

    Returns:
        The network, producing [N, 256] features, and 256.
    """
    in_channels = (3, *SMALL_WIDTHS[:-1])
    stages = [_downsampling_stage(c_in, c_out) for c_in, c_out in zip(in_channels, SMALL_WIDTHS)]
    net = nn.Sequential(*stages, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return net, SMALL_WIDTHS[-1]



# --- projection heads ------------------------------------------------------------------------
def mlp_head(feature_dim: int, out_dim: int = DEFAULT_PROJ_DIM) -> nn.Module:
    """FlatCLR's projection head: Linear(F→F) → ReLU → Linear(F→out), biases, no BatchNorm."""
    return nn.Sequential(
        nn.Linear(feature_dim, feature_dim),
        nn.ReLU(inplace=True),
        nn.Linear(feature_dim, out_dim),
    )


def mlp_bn_head(feature_dim: int, out_dim: int = DEFAULT_PROJ_DIM) -> nn.Module:
    """The AttentionNCE / DCL / HCL head: Linear(F→512, no bias) → BN1d → ReLU → Linear(512→out)."""
    return nn.Sequential(
        nn.Linear(feature_dim, MLP_BN_HIDDEN, bias=False),
        nn.BatchNorm1d(MLP_BN_HIDDEN),
        nn.ReLU(inplace=True),
        nn.Linear(MLP_BN_HIDDEN, out_dim, bias=True),
    )



# --- the model -------------------------------------------------------------------------------
class ContrastiveModel(nn.Module):
    """A backbone followed by a projection head.

    Attributes:
        backbone: Maps images to features; kept for kNN and linear evaluation.
        head: Maps features to the raw (unnormalised) projections the losses consume.
        feature_dim: F, the width of the backbone's features.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, feature_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.feature_dim = feature_dim

    def forward(self, views: Tensor) -> Tensor:
        """Projects every view of every image.

        All B·V views go through the encoder as one batch: BatchNorm then normalises with
        statistics over all views together and cannot tell the views apart, which would
        otherwise leak which samples are positives of each other.

        Args:
            views: The augmented views, V per image.

        Returns:
            The raw projections; the losses normalise them.

        Shape:
            views: [B, V, C, H, W] -> [B, V, out]
        """
        batch, num_views = views.shape[:2]
        projections = self.head(self.backbone(views.flatten(0, 1)))
        return projections.view(batch, num_views, -1)

    def features(self, images: Tensor) -> Tensor:
        """Backbone features, as used by kNN and linear evaluation.

        Args:
            images: A batch of images.

        Returns:
            The backbone's features.

        Shape:
            images: [N, C, H, W] -> [N, F]
        """
        return self.backbone(images)


def _check_name(field: str, value: str, allowed: Mapping[str, object]) -> None:
    """Raises ValueError naming the field, the value and the allowed names."""
    if value not in allowed:
        raise ValueError(f"{field}={value!r} is not one of {sorted(allowed)}")


def _check_positive(field: str, value: int) -> None:
    """Raises ValueError unless ``value`` is a positive integer."""
    if value < 1:
        raise ValueError(f"{field}={value!r} must be a positive integer")


def build_model(backbone: str, head: str, image_size: int, proj_dim: int = DEFAULT_PROJ_DIM) -> ContrastiveModel:
    """Builds a randomly initialised contrastive model from registry names.

    Args:
        backbone: A name of the ``BACKBONES`` catalog.
        head: A name of the ``HEADS`` catalog.
        image_size: Side length of the training images in pixels; it picks the stem.
        proj_dim: Width of the projection the loss sees.

    Returns:
        The model, on the CPU.

    Raises:
        ValueError: If a name is unknown or a size is not positive.
    """
    _check_name("backbone", backbone, BACKBONES)
    _check_name("head", head, HEADS)
    _check_positive("image_size", image_size)
    _check_positive("proj_dim", proj_dim)
    encoder, feature_dim = BACKBONES[backbone].load()(image_size)
    return ContrastiveModel(encoder, HEADS[head].load()(feature_dim, proj_dim), feature_dim)


def prepare_for_device(model: nn.Module, device: torch.device, *, distributed: bool) -> nn.Module:
    """Moves a CPU-built model to its training device with that device's fast paths.

    On CUDA, BatchNorm becomes SyncBatchNorm when ``distributed`` (so every worker normalises
    with statistics over the global batch, as a single-GPU run would) and the weights use the
    channels_last layout that tensor-core convolutions prefer. On the CPU the model comes back
    unchanged: SyncBatchNorm only runs on CUDA tensors with an NCCL process group, so each CPU
    worker keeps per-worker BN, and channels_last is kept to the cuDNN kernels it is meant for.

    Args:
        model: The model, built on the CPU.
        device: The device the worker trains on.
        distributed: Whether several workers train one model together.

    Returns:
        The model to train, on ``device``.
    """
    if device.type != "cuda":
        return model
    if distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model.to(device, memory_format=torch.channels_last)
