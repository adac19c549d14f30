"""AttentionNCE (Liu et al., ICLR 2025 submission): attention over positives and negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainables.core.losses.base import ContrastiveLoss, LossTerms
from trainables.core.losses.lse import negative_logsumexp
from trainables.spec.losses import CATALOG, HYPERPARAMETERS

NAME = "attentionnce"
ANCHORS = CATALOG[NAME].anchor_views  # views 0 and 1 of every image are anchors; views 2.. are its M positives


def prototype_logits(anchors: torch.Tensor, positives: torch.Tensor, d_pos: float, temperature: float) -> torch.Tensor:
    """P/tau with P = sum_m alpha_m a.p_m, alpha = softmax_m(sg(a.p_m) / d_pos).

    The prototype sum_m alpha_m p_m is not re-normalised, as in the official code.

    Shape:
        anchors: [b, 2, D], positives: [b, M, D] -> [b * 2].
    """
    sim = torch.einsum("bad,bmd->bam", anchors, positives)
    alpha = torch.softmax(sim.detach() / d_pos, dim=-1)
    return (alpha * sim).sum(-1).reshape(-1) / temperature


class AttentionNCELoss(ContrastiveLoss):
    """l = -log(e^{P/tau} / (e^{P/tau} + sum_j e^{beta_j s_j / tau})), mean over the 2B anchors.

    Uses V = M + 2 views per image: 2 anchors and M positives. Defaults temperature 0.5,
    d_pos 1, d_neg 1 (official code); per-dataset (d_pos, d_neg) are the catalog's presets.
    The official code's raw exp overflows at d_neg = 0.5; this log-sum-exp form does not.
    Its diagnostic is the prototype's probability among the beta-rescaled negatives, which is
    not InfoNCE's pi+, so it is logged under its own name.
    """

    name = NAME

    def __init__(self, temperature: float = 0.5, d_pos: float = 1.0, d_neg: float = 1.0, gather_distributed: bool = True) -> None:
        super().__init__(temperature, gather_distributed)
        self.d_pos = HYPERPARAMETERS["d_pos"].check(d_pos)
        self.d_neg = HYPERPARAMETERS["d_neg"].check(d_neg)

    def terms(self, local: torch.Tensor, glob: torch.Tensor, offset: int) -> LossTerms:
        if local.shape[1] < ANCHORS + 1:
            raise ValueError(f"attentionnce needs V = M + 2 >= 3 views per image, got V={local.shape[1]}")
        pos = prototype_logits(local[:, :ANCHORS], local[:, ANCHORS:], self.d_pos, self.temperature)
        # Negatives are the anchor views of all other images: the sibling anchor is neither
        # positive nor negative, and positive views are never negatives.
        neg_lse = negative_logsumexp(local[:, :ANCHORS], glob[:, :ANCHORS], offset, 1 / self.temperature, d_neg=self.d_neg)
        v = neg_lse - pos
        return LossTerms(terms=F.softplus(v), pos_prob=torch.sigmoid(-v))
