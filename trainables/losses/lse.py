"""The negatives' log-sum-exp of every anchor, in row chunks, never holding the whole matrix.

log sum_{n not of the anchor's image} exp(c * a_k . g_n) for every anchor k. Forward keeps
only the per-anchor result; backward recomputes each chunk of similarities, so neither pass
holds more than a quarter of the (b·V)×(B·V) similarity matrix at once (twice that with the
temporaries), where autograd through a dense matrix would hold about four whole matrices.
"""

from __future__ import annotations

import math

import torch

CHUNKS = 4  # row chunks per call: peak ~ 2 / CHUNKS matrices, at a few extra kernel launches


def _masked_scores(local: torch.Tensor, glob: torch.Tensor, rows: slice, row_image: torch.Tensor, col_image: torch.Tensor, scale: float) -> torch.Tensor:
    """c * a_k . g_n for the chunk's anchors, own-image columns at -inf.

    Shape:
        local: [P, D], glob: [N, D] -> [rows, N].
    """
    scores = (local[rows] @ glob.T).mul_(scale)
    return scores.masked_fill_(row_image[rows, None] == col_image[None, :], -math.inf)


def _chunks(total: int) -> list[slice]:
    size = max(1, math.ceil(total / CHUNKS))
    return [slice(start, min(start + size, total)) for start in range(0, total, size)]


class NegativeLogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, local, glob, row_image, col_image, scale):  # type: ignore[override]
        out = local.new_empty(local.shape[0])
        for rows in _chunks(local.shape[0]):
            out[rows] = torch.logsumexp(_masked_scores(local, glob, rows, row_image, col_image, scale), dim=1)
        ctx.save_for_backward(local, glob, row_image, col_image, out)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        local, glob, row_image, col_image, out = ctx.saved_tensors
        grad_local, grad_glob = torch.zeros_like(local), torch.zeros_like(glob)
        for rows in _chunks(local.shape[0]):
            weights = _masked_scores(local, glob, rows, row_image, col_image, ctx.scale)
            weights.sub_(out[rows, None]).exp_().mul_(grad_out[rows, None] * ctx.scale)  # softmax x upstream grad
            grad_local[rows] = weights @ glob
            grad_glob.addmm_(weights.T, local[rows])
        return grad_local, grad_glob, None, None, None


def negative_logsumexp(local: torch.Tensor, glob: torch.Tensor, offset: int, scale: float) -> torch.Tensor:
    """log sum_n exp(scale * s_n) over each local view's negatives (all views of other images).

    Shape:
        local: [b, V, D], glob: [B, V, D] (L2-normalised) -> [b * V].
    """
    b, v, _ = local.shape
    row_image = (torch.arange(b, device=local.device) + offset).repeat_interleave(v)
    col_image = torch.arange(glob.shape[0], device=local.device).repeat_interleave(v)
    return NegativeLogSumExp.apply(local.reshape(b * v, -1), glob.reshape(-1, glob.shape[-1]), row_image, col_image, float(scale))
