"""The backbones and projection heads a config may name (``backbone``, ``head``), torch-free.

Each builder lives in ``trainables/core/models.py``: a backbone takes the image size and returns
(network, feature dim), a head takes (feature dim, output dim) and returns the network. A new
one is a builder of that signature in any module and one line here (see trainables/spec/choices.py).
"""

from __future__ import annotations

from trainables.spec.choices import Choice, catalog

BACKBONES: dict[str, Choice] = catalog(
    Choice("resnet18", "trainables.core.models:resnet18", "torchvision ResNet-18; CIFAR stem up to 96 px"),
    Choice("resnet50", "trainables.core.models:resnet50", "torchvision ResNet-50; CIFAR stem up to 96 px"),
    Choice("small", "trainables.core.models:small", "a four-stage convnet, CPU-friendly"),
)
HEADS: dict[str, Choice] = catalog(
    Choice("mlp", "trainables.core.models:mlp_head", "FlatCLR: Linear-ReLU-Linear"),
    Choice("mlp_bn", "trainables.core.models:mlp_bn_head", "DCL/HCL/AttentionNCE: Linear-BN-ReLU-Linear"),
)
