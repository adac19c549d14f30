"""The training step's augmentation and loss make no host sync on a GPU.

A sync is an op whose result the host must read before it can go on: a data-dependent size
(nonzero, boolean-mask indexing, masked_select) or a Python scalar (item). Such an op drains
the GPU's launch queue every step. CUDA is not needed to see them: the ops are recorded on
the CPU with a TorchDispatchMode, the augmentation switched to its GPU path.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import trainables.core.augment as augment_module
from trainables.core.augment import AugmentConfig, SimCLRAugment
from trainables.core.losses import CATALOG, build_loss
from trainables.spec.datasets import DATASETS

SYNCING = {"aten::nonzero", "aten::_local_scalar_dense", "aten::masked_select", "aten::is_nonzero", "aten::equal"}
MASK_INDEXING = {"aten::index", "aten::index_put", "aten::index_put_"}
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class SyncingOps(TorchDispatchMode):
    """Records the ops, among those dispatched, that would make the host wait for a GPU."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = func._schema.name
        if name in SYNCING or (name in MASK_INDEXING and _has_bool_index(args)):
            self.found.append(name)
        return func(*args, **(kwargs or {}))


def _has_bool_index(args: tuple) -> bool:
    indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)


@pytest.fixture
def gpu_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(augment_module, "subsets_on_host", lambda device: False)


def _views(dataset: str, size: int, seed: int) -> torch.Tensor:
    images = torch.randint(0, 256, (16, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    return SimCLRAugment(AugmentConfig(size, MEAN, STD, **DATASETS[dataset].augment)).views(images, 3, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("dataset,size", [("cifar10", 32), ("stl10", 48)])
def test_gpu_path_of_the_augmentation_gives_the_cpu_path_views(dataset: str, size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    on_host = _views(dataset, size, seed=3)
    monkeypatch.setattr(augment_module, "subsets_on_host", lambda device: False)
    torch.testing.assert_close(_views(dataset, size, seed=3), on_host, rtol=0, atol=1e-5)


@pytest.mark.parametrize("dataset,size", [("cifar10", 32), ("stl10", 48)])
def test_gpu_path_of_the_augmentation_makes_no_host_sync(dataset: str, size: int, gpu_path: None) -> None:
    with SyncingOps() as ops:
        _views(dataset, size, seed=0)
    assert ops.found == []


def test_the_recorder_sees_a_sync() -> None:
    with SyncingOps() as ops:
        x = torch.arange(6.0)
        x[x > 2].sum().item()
    assert "aten::index" in ops.found and "aten::_local_scalar_dense" in ops.found


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_loss_forward_and_backward_make_no_host_sync(name: str) -> None:
    z = torch.randn(16, 4, 8, requires_grad=True)
    loss = build_loss(name)
    with SyncingOps() as ops:
        loss(z).backward()
    assert ops.found == []
