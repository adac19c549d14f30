"""FlatNCE (Chen et al. 2021): InfoNCE's gradient without its vanishing factor 1 - pi+."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainables.core.losses.base import ContrastiveLoss, LossTerms
from trainables.core.losses.infonce import decoupled_logits


class FlatNCELoss(ContrastiveLoss):
    """l = exp(v - sg(v)), v = log sum_n exp((s_n - s+)/tau) over negatives only, per pair.

    The positive's own zero logit is NOT inside the log-sum-exp: with it, the gradient would
    silently become InfoNCE's. The gradient is grad v = grad InfoNCE / (1 - pi+), the decoupled
    loss's. As in the official code the returned value is the detached InfoNCE value of the same
    batch (the surrogate's value is identically 1), so loss curves compare with InfoNCE's.
    Default temperature 0.1 (FlatCLR), the base class's.
    """

    name = "flatnce"

    def terms(self, local: torch.Tensor, glob: torch.Tensor, offset: int) -> LossTerms:
        v = decoupled_logits(local, glob, offset, self.temperature)
        surrogate = torch.exp(v - v.detach())
        value = surrogate.mean() - 1 + F.softplus(v).mean().detach()
        return LossTerms(terms=surrogate, pos_prob=torch.sigmoid(-v), value=value)
