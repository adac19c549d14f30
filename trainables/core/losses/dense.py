"""Each loss written the straightforward way: the baseline the loss benchmark times and checks against.

Every similarity and mask is its own dense matrix, masking is out of place, and the M positives
of each anchor are broadcast against all negatives as an [N, M, N] tensor (raw exponentials
where the official code uses them). Nothing here is used for training; a loss without an entry
in ``DENSE`` is benchmarked alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from trainables.core.losses.base import ContrastiveLoss


class Dense(NamedTuple):
    """A dense version of a loss, taking the loss object for its hyperparameters.

    ``matrices_per_positive``: the extra similarity-sized matrices it holds per positive view
    (the [N, M, N] broadcast), for estimating its memory before running it.
    """

    loss: Callable[[Tensor, ContrastiveLoss], Tensor]
    matrices_per_positive: int


def _similarities(z: Tensor, temperature: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Dense s/tau over all N = B·V views, with (positive, negative) masks; the positives [N, M].

    Shape:
        z: [B, V, D] -> sim [N, N], pos [N, V - 1], same-image mask [N, N], negative mask [N, N].
    """
    b, v, d = z.shape
    flat = F.normalize(z, dim=-1).reshape(b * v, d)
    sim = flat @ flat.T / temperature
    image = torch.arange(b, device=z.device).repeat_interleave(v)
    same = image[:, None] == image[None, :]
    eye = torch.eye(b * v, dtype=torch.bool, device=z.device)
    pos = sim[same & ~eye].view(b * v, v - 1)
    return sim, pos, same, ~same


def dense_infonce(z: Tensor, loss: ContrastiveLoss) -> Tensor:
    """Per (anchor, positive) pair a (1 + negatives)-way cross-entropy, logits built as [N, M, 1 + N]."""
    sim, pos, same, _ = _similarities(z, loss.temperature)
    neg = sim.masked_fill(same, -math.inf)
    logits = torch.cat([pos[..., None], neg[:, None, :].expand(-1, pos.shape[1], -1)], dim=-1)
    return -torch.log_softmax(logits, dim=-1)[..., 0].mean()


def dense_flatnce(z: Tensor, loss: ContrastiveLoss) -> Tensor:
    """FlatCLR's form: v = logsumexp_n(s_n - s+) per pair ([N, M, N]), exp(v - sg(v)), InfoNCE value."""
    sim, pos, same, _ = _similarities(z, loss.temperature)
    neg = sim.masked_fill(same, -math.inf)
    v = torch.logsumexp(neg[:, None, :] - pos[..., None], dim=-1)
    return torch.exp(v - v.detach()).mean() - 1 + F.softplus(v).mean().detach()


def _debiased(pos: Tensor, neg_mass: Tensor, num_neg: int, tau_plus: float, temperature: float) -> Tensor:
    """The official code's Ng and loss, with raw exponentials."""
    pos_exp = pos.exp()
    ng = (-tau_plus * num_neg * pos_exp + neg_mass[:, None]) / (1 - tau_plus)
    ng = torch.clamp(ng, min=num_neg * math.e ** (-1 / temperature))
    return -torch.log(pos_exp / (pos_exp + ng)).mean()


def dense_dcl(z: Tensor, loss: ContrastiveLoss) -> Tensor:
    sim, pos, _, negative = _similarities(z, loss.temperature)
    num_neg = sim.shape[0] - z.shape[1]
    return _debiased(pos, (sim.exp() * negative).sum(1), num_neg, loss.tau_plus, loss.temperature)


def dense_hcl(z: Tensor, loss: ContrastiveLoss) -> Tensor:
    sim, pos, _, negative = _similarities(z, loss.temperature)
    num_neg = sim.shape[0] - z.shape[1]
    neg_exp = sim.exp() * negative
    importance = (loss.beta * sim).exp() * negative
    mass = (importance * neg_exp).sum(1) / (importance.sum(1) / num_neg)
    return _debiased(pos, mass, num_neg, loss.tau_plus, loss.temperature)


def dense_attentionnce(z: Tensor, loss: ContrastiveLoss) -> Tensor:
    """Prototype positive and attention-rescaled negatives over the 2B anchor views, dense masks."""
    b, _, d = z.shape
    unit = F.normalize(z, dim=-1)
    anchors, positives = unit[:, :2], unit[:, 2:]
    sim_pos = torch.einsum("bad,bmd->bam", anchors, positives)
    alpha = torch.softmax(sim_pos.detach() / loss.d_pos, dim=-1)
    prototype = (alpha * sim_pos).sum(-1).reshape(-1) / loss.temperature
    flat = anchors.reshape(2 * b, d)
    sim = flat @ flat.T
    image = torch.arange(b, device=z.device).repeat_interleave(2)
    own = image[:, None] == image[None, :]
    weight = 2 * (b - 1) * (torch.softmax(sim.detach().masked_fill(own, -math.inf) / loss.d_neg, dim=1) + 1e-6)
    neg = (weight * sim / loss.temperature).masked_fill(own, -math.inf)
    return (torch.logsumexp(torch.cat([prototype[:, None], neg], dim=1), dim=1) - prototype).mean()


DENSE: dict[str, Dense] = {
    "infonce": Dense(dense_infonce, 4),
    "flatnce": Dense(dense_flatnce, 4),
    "dcl": Dense(dense_dcl, 4),
    "hcl": Dense(dense_hcl, 4),
    "attentionnce": Dense(dense_attentionnce, 0),
}
