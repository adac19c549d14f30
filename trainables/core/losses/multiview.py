"""The multi-view index contract shared by the losses.

Embeddings arrive as ``z`` of shape [B, V, D]: B images, V views each. Every view of image i
is a positive of every other view of image i; all views of all other images are negatives.
Under DDP a worker holds images ``offset .. offset + b`` of the global batch; its anchors are
its own views, its negatives come from the gathered global batch (see ``lse.py``).
"""

from __future__ import annotations

import torch


def positive_logits(local: torch.Tensor, temperature: float) -> torch.Tensor:
    """Similarities of each view with the other views of its image, divided by tau.

    Shape:
        local: [b, V, D] (L2-normalised) -> [b * V, V - 1]; row i * V + v holds view v's
        positives in view order, skipping v itself.
    """
    b, v, _ = local.shape
    sim = torch.einsum("ivd,iud->ivu", local, local) / temperature
    # Column j of row w is view j + (j >= w): gathered, since a boolean mask would need its
    # count on the host (a GPU sync every step).
    others = torch.arange(v - 1, device=local.device)
    others = others + (others >= torch.arange(v, device=local.device)[:, None])
    return sim.gather(2, others.expand(b, v, v - 1)).reshape(b * v, v - 1)
