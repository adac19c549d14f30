"""Backbones, heads and the one-pass contrastive model."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from trainables.core.models import ContrastiveModel, build_model, prepare_for_device
from trainables.spec.backbones import BACKBONES, HEADS


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _structure_only(name: str, image_size: int) -> nn.Module:
    """The backbone built on the meta device: right modules and shapes, no weight init cost."""
    with torch.device("meta"):
        net, _ = BACKBONES[name].load()(image_size)
    return net


# --- stems and feature dims ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("image_size", [32, 64, 96])
def test_cifar_stem_up_to_96_px(name: str, image_size: int) -> None:
    net = _structure_only(name, image_size)
    assert net.conv1.kernel_size == (3, 3)
    assert net.conv1.stride == (1, 1)
    assert net.conv1.padding == (1, 1)
    assert isinstance(net.maxpool, nn.Identity)
    assert isinstance(net.fc, nn.Identity)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("image_size", [97, 224])
def test_imagenet_stem_above_96_px(name: str, image_size: int) -> None:
    net = _structure_only(name, image_size)
    assert net.conv1.kernel_size == (7, 7)
    assert net.conv1.stride == (2, 2)
    assert isinstance(net.maxpool, nn.MaxPool2d)
    assert isinstance(net.fc, nn.Identity)


@pytest.mark.parametrize(("name", "feature_dim"), [("resnet18", 512), ("resnet50", 2048), ("small", 256)])
def test_feature_dims(name: str, feature_dim: int) -> None:
    # 16 px input keeps ResNet-50 fast; the global pool makes F independent of the size.
    model = build_model(name, "mlp", image_size=32).eval()
    assert model.feature_dim == feature_dim
    with torch.no_grad():
        assert model.features(torch.randn(2, 3, 16, 16)).shape == (2, feature_dim)


@pytest.mark.parametrize(("image_size", "layer1_side"), [(32, 32), (224, 56)])
def test_stem_resolution_into_the_first_block(image_size: int, layer1_side: int) -> None:
    # The point of the CIFAR stem: at 32 px, layer1 still sees a 32×32 map (8×8 with ImageNet's).
    net = _structure_only("resnet18", image_size)
    seen: list[torch.Size] = []
    net.layer1.register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    net.eval()(torch.empty(1, 3, image_size, image_size, device="meta"))
    assert seen[0][-2:] == (layer1_side, layer1_side)


# --- forward ---------------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["mlp", "mlp_bn"])
@pytest.mark.parametrize("proj_dim", [128, 64])
def test_forward_shape(head: str, proj_dim: int) -> None:
    model = build_model("small", head, image_size=32, proj_dim=proj_dim)
    out = model(torch.randn(3, 4, 3, 32, 32))
    assert out.shape == (3, 4, proj_dim)


def test_forward_matches_per_view_order() -> None:
    # In eval mode (no batch statistics) view v of image b must land at out[b, v].
    model = build_model("small", "mlp_bn", image_size=32).eval()
    views = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        out = model(views)
        single = model.head(model.features(views[1, 2:3]))
    torch.testing.assert_close(out[1, 2:3], single)


def test_all_views_go_through_the_encoder_in_one_pass() -> None:
    model = build_model("small", "mlp", image_size=32)
    first_conv = model.backbone[0][0]
    batches: list[int] = []
    first_conv.register_forward_hook(lambda module, inputs, output: batches.append(inputs[0].shape[0]))
    model(torch.randn(5, 3, 3, 32, 32))
    assert batches == [15]


def _views_with_distinct_statistics() -> Tensor:
    """Four images × two views whose second view is shifted, so per-view BN statistics differ."""
    images = torch.randn(4, 3, 8, 8)
    return torch.stack([images, 2.0 * images + 3.0], dim=1)


@pytest.mark.parametrize("backbone", ["small", "resnet18"])
def test_batchnorm_statistics_span_all_views(backbone: str) -> None:
    model = build_model(backbone, "mlp", image_size=8).train()
    if backbone == "small":
        first_conv, first_bn = model.backbone[0][0], model.backbone[0][1]
    else:
        first_conv, first_bn = model.backbone.conv1, model.backbone.bn1
    views = _views_with_distinct_statistics()
    with torch.no_grad():
        activations = first_conv(views.flatten(0, 1))
        pooled_mean = activations.mean(dim=(0, 2, 3))
        pooled_var = activations.transpose(0, 1).flatten(1).var(dim=1, unbiased=True)
        per_view_means = [first_conv(views[:, v]).mean(dim=(0, 2, 3)) for v in range(2)]
    # Running stats start at mean 0 / var 1; one step moves them by momentum towards the batch's.
    momentum = first_bn.momentum
    model(views)
    torch.testing.assert_close(first_bn.running_mean, momentum * pooled_mean)
    torch.testing.assert_close(first_bn.running_var, (1 - momentum) + momentum * pooled_var)
    # Two separate passes (view 0, then view 1) would leave a different running mean.
    two_pass = (1 - momentum) * momentum * per_view_means[0] + momentum * per_view_means[1]
    assert not torch.allclose(first_bn.running_mean, two_pass, atol=1e-3)


# --- heads -----------------------------------------------------------------------------------
def _linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def test_mlp_head_structure() -> None:
    head = HEADS["mlp"].load()(512, 128)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in head.modules())
    first, second = _linears(head)
    assert (first.in_features, first.out_features) == (512, 512)
    assert (second.in_features, second.out_features) == (512, 128)
    assert first.bias is not None and second.bias is not None
    assert isinstance(head[1], nn.ReLU)


def test_mlp_bn_head_structure() -> None:
    head = HEADS["mlp_bn"].load()(2048, 128)
    first, bn, relu, second = head
    assert isinstance(first, nn.Linear) and (first.in_features, first.out_features) == (2048, 512)
    assert first.bias is None
    assert isinstance(bn, nn.BatchNorm1d) and bn.num_features == 512
    assert isinstance(relu, nn.ReLU)
    assert isinstance(second, nn.Linear) and (second.in_features, second.out_features) == (512, 128)
    assert second.bias is not None


@pytest.mark.parametrize("name", ["mlp", "mlp_bn"])
def test_head_out_dim_defaults_to_128(name: str) -> None:
    assert _linears(HEADS[name].load()(64))[-1].out_features == 128


def test_build_model_wires_backbone_and_head() -> None:
    model = build_model("resnet18", "mlp", image_size=32, proj_dim=64)
    assert isinstance(model, ContrastiveModel)
    assert _linears(model.head)[0].in_features == 512
    assert _linears(model.head)[-1].out_features == 64


# --- validation ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field", "value", "allowed"),
    [
        ({"backbone": "resnet34", "head": "mlp"}, "backbone", "resnet34", "resnet18"),
        ({"backbone": "small", "head": "linear"}, "head", "linear", "mlp_bn"),
    ],
)
def test_unknown_names_rejected(kwargs: dict[str, str], field: str, value: str, allowed: str) -> None:
    with pytest.raises(ValueError, match=field) as info:
        build_model(**kwargs, image_size=32)
    assert value in str(info.value) and allowed in str(info.value)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [("image_size", {"image_size": 0}), ("proj_dim", {"image_size": 32, "proj_dim": 0})],
)
def test_non_positive_sizes_rejected(field: str, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=field):
        build_model("small", "mlp", **kwargs)


# --- devices ---------------------------------------------------------------------------------
@pytest.mark.parametrize("distributed", [False, True])
def test_prepare_for_cpu_returns_the_model_unchanged(distributed: bool) -> None:
    model = build_model("small", "mlp_bn", image_size=32)
    assert prepare_for_device(model, torch.device("cpu"), distributed=distributed) is model
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("distributed", [False, True])
def test_prepare_for_cuda(distributed: bool) -> None:
    model = build_model("resnet18", "mlp_bn", image_size=32)
    prepared = prepare_for_device(model, torch.device("cuda"), distributed=distributed)
    norms = [m for m in prepared.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert all(isinstance(m, nn.SyncBatchNorm) == distributed for m in norms)
    conv_weight = prepared.backbone.conv1.weight
    assert conv_weight.is_cuda and conv_weight.is_contiguous(memory_format=torch.channels_last)
    if not distributed:  # SyncBatchNorm's forward needs an initialised process group
        with torch.no_grad():
            assert prepared(torch.randn(2, 2, 3, 32, 32, device="cuda")).shape == (2, 2, 128)
