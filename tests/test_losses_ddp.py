"""2-process gloo with the gather gives every loss the gradients of 1 process on the full batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ddp import run_ddp

from trainables.core.losses import CATALOG, build_loss

BATCH, DIM = 8, 16


def full_batch(name: str) -> torch.Tensor:
    views = CATALOG[name].views_per_image(2)
    return torch.randn(BATCH, views, DIM, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def rank_gradients(rank: int, world_size: int, names: list[str]) -> dict[str, dict[str, torch.Tensor]]:
    out = {}
    for name in names:
        b = BATCH // world_size
        local = full_batch(name)[rank * b : (rank + 1) * b].clone().requires_grad_()
        loss = build_loss(name)
        value = loss(local)
        value.backward()
        # DDP averages parameter gradients over ranks: the equivalent gradient is grad / W.
        out[name] = {"grad": local.grad / world_size, "value": value.detach(), "pos_prob": loss.diagnostics()[CATALOG[name].diagnostics[0]]}
    return out


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, dict[str, torch.Tensor]]]:
    return run_ddp(rank_gradients, 2, tmp_path_factory.mktemp("ddp"), list(CATALOG))


@pytest.mark.parametrize("name", CATALOG)
def test_two_process_gather_matches_one_process_full_batch(name: str, two_ranks: list) -> None:
    z = full_batch(name).requires_grad_()
    loss = build_loss(name)
    value = loss(z)
    value.backward()
    grads = torch.cat([r[name]["grad"] for r in two_ranks])
    torch.testing.assert_close(grads, z.grad, rtol=1e-10, atol=1e-13)
    # Each rank's loss is the mean over its own anchors; their mean is the full-batch loss.
    assert torch.stack([r[name]["value"] for r in two_ranks]).mean().item() == pytest.approx(value.item(), rel=1e-12)
    assert torch.stack([r[name]["pos_prob"] for r in two_ranks]).mean().item() == pytest.approx(
        loss.diagnostics()[CATALOG[name].diagnostics[0]].item(), rel=1e-12
    )


def test_without_gather_the_gradient_differs(tmp_path: Path) -> None:
    """The test above can fail: a per-rank loss without gather sees fewer negatives."""

    z = full_batch("infonce")
    local = z[:4].clone().requires_grad_()
    build_loss("infonce", gather_distributed=False)(local).backward()
    full = z.clone().requires_grad_()
    build_loss("infonce")(full).backward()
    assert not torch.allclose(local.grad / 2, full.grad[:4])
