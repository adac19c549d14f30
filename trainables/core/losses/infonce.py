"""InfoNCE / NT-Xent (SimCLR), generalised to M positive views per anchor."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainables.core.losses.base import ContrastiveLoss, LossTerms
from trainables.core.losses.lse import negative_logsumexp
from trainables.core.losses.multiview import positive_logits


def decoupled_logits(local: torch.Tensor, glob: torch.Tensor, offset: int, temperature: float) -> torch.Tensor:
    """v = log sum_n exp(s_n / tau) - s+ / tau for every (anchor, positive) pair.

    The log-sum-exp runs over the anchor's negatives only (all views of other images). v is
    the decoupled contrastive loss (Yeh et al.), whose gradient is FlatNCE's.

    Shape:
        local: [b, V, D], glob: [B, V, D] -> [b * V, V - 1].
    """
    neg_lse = negative_logsumexp(local, glob, offset, 1 / temperature)
    return neg_lse[:, None] - positive_logits(local, temperature)


class InfoNCELoss(ContrastiveLoss):
    """l = -log(e^{s+/tau} / (e^{s+/tau} + sum_n e^{s_n/tau})) = softplus(v), per pair.

    Every view is an anchor; its positives are the other M views of its image, each pair a
    (1 + negatives)-way classification, and the loss is the mean over all pairs. With M = 1
    this is SimCLR's NT-Xent. Default temperature 0.1 (FlatCLR), the base class's.
    """

    name = "infonce"

    def terms(self, local: torch.Tensor, glob: torch.Tensor, offset: int) -> LossTerms:
        v = decoupled_logits(local, glob, offset, self.temperature)
        return LossTerms(terms=F.softplus(v), pos_prob=torch.sigmoid(-v))
