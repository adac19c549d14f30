"""The negatives' log-sum-exp of every anchor, in row chunks, never holding the whole matrix.

log sum_{n not of the anchor's image} exp(c * w_n * a_k . g_n) for every anchor k, where the
weight w_n is 1 (InfoNCE, FlatNCE, DCL, HCL) or AttentionNCE's stop-gradient rescaling
beta_n = N (softmax_n(a_k . g_n / d_neg) + 1e-6) over the anchor's N negatives. A chunk holds
whole rows, so beta's row softmax is computed inside it. Forward keeps only the per-anchor
result; backward recomputes each chunk, so neither pass holds more than a quarter of the
(b·V)×(B·V) similarity matrix at once (a few times that with the temporaries), where autograd
through a dense matrix would hold about four whole matrices.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

CHUNKS = 4  # row chunks per call: peak ~ 3 / CHUNKS matrices, at a few extra kernel launches
BETA_FLOOR = 1e-6  # added to AttentionNCE's softmax weights, as in the official code


class Rescale(NamedTuple):
    """AttentionNCE's negative weights: temperature d_neg of the softmax, over num_neg negatives."""

    d_neg: float
    num_neg: int


def _chunk_logits(
    local: torch.Tensor, glob: torch.Tensor, rows: slice, images: tuple[torch.Tensor, torch.Tensor], scale: float, rescale: Rescale | None
) -> tuple[torch.Tensor, torch.Tensor | float]:
    """The chunk's logits c * w_n * s_n (own-image columns at -inf) and d logits / d s_n.

    The slope is c without rescaling, else the chunk's c * beta (beta is a stop-gradient
    weight, so that is the whole derivative).

    Shape:
        local: [P, D], glob: [N, D], images: ([P], [N]) -> ([rows, N], scalar or [rows, N]).
    """
    row_image, col_image = images
    sim = (local[rows] @ glob.T).masked_fill_(row_image[rows, None] == col_image[None, :], -math.inf)
    if rescale is None:
        return sim.mul_(scale), scale
    beta = sim / rescale.d_neg
    beta = beta.sub_(beta.amax(1, keepdim=True)).exp_()
    beta = beta.div_(beta.sum(1, keepdim=True)).add_(BETA_FLOOR).mul_(rescale.num_neg * scale)
    return sim.mul_(beta), beta


def _chunks(total: int) -> list[slice]:
    size = max(1, math.ceil(total / CHUNKS))
    return [slice(start, min(start + size, total)) for start in range(0, total, size)]


class NegativeLogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, local, glob, row_image, col_image, scale, rescale):  # type: ignore[override]
        out = local.new_empty(local.shape[0])
        for rows in _chunks(local.shape[0]):
            # Indexing the pair frees the chunk (and beta) before the next chunk is made.
            out[rows] = torch.logsumexp(_chunk_logits(local, glob, rows, (row_image, col_image), scale, rescale)[0], dim=1)
        ctx.save_for_backward(local, glob, row_image, col_image, out)
        ctx.scale, ctx.rescale = scale, rescale
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        local, glob, row_image, col_image, out = ctx.saved_tensors
        grad_local, grad_glob = torch.zeros_like(local), torch.zeros_like(glob)
        for rows in _chunks(local.shape[0]):
            logits, slope = _chunk_logits(local, glob, rows, (row_image, col_image), ctx.scale, ctx.rescale)
            weights = logits.sub_(out[rows, None]).exp_().mul_(slope).mul_(grad_out[rows, None])  # softmax x slope x upstream
            grad_local[rows] = weights @ glob
            grad_glob.addmm_(weights.T, local[rows])
            del logits, slope, weights  # before the next chunk is made, not after
        return grad_local, grad_glob, None, None, None, None


def negative_logsumexp(local: torch.Tensor, glob: torch.Tensor, offset: int, scale: float, d_neg: float | None = None) -> torch.Tensor:
    """log sum_n exp(scale * w_n * s_n) over each local view's N negatives (all views of other images).

    w_n = 1, or with d_neg AttentionNCE's beta_n = N (softmax_n(sg(s_n) / d_neg) + 1e-6).

    Shape:
        local: [b, V, D], glob: [B, V, D] (L2-normalised) -> [b * V].
    """
    b, v, _ = local.shape
    row_image = (torch.arange(b, device=local.device) + offset).repeat_interleave(v)
    col_image = torch.arange(glob.shape[0], device=local.device).repeat_interleave(v)
    rescale = None if d_neg is None else Rescale(float(d_neg), (glob.shape[0] - 1) * v)
    flat_local, flat_glob = local.reshape(b * v, -1), glob.reshape(-1, glob.shape[-1])
    return NegativeLogSumExp.apply(flat_local, flat_glob, row_image, col_image, float(scale), rescale)
