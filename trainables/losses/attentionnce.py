"""AttentionNCE (Liu et al., ICLR 2025 submission): attention over positives and negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainables.losses.base import ContrastiveLoss, LossTerms, check_positive
from trainables.losses.lse import negative_logsumexp

# (d_pos, d_neg) from the official README, per dataset.
ATTENTIONNCE_PRESETS: dict[str, tuple[float, float]] = {
    "cifar10": (1.0, 10.0),
    "cifar100": (1.0, 10.0),
    "stl10": (2.0, 0.5),
    "tinyimagenet": (4.0, 1.0),
}

ANCHORS = 2  # views 0 and 1 of every image are anchors; views 2.. are its M positives


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
    d_pos 1, d_neg 1 (official code); per-dataset (d_pos, d_neg) in ATTENTIONNCE_PRESETS.
    The official code's raw exp overflows at d_neg = 0.5; this log-sum-exp form does not.
    """

    name = "attentionnce"

    def __init__(self, temperature: float = 0.5, d_pos: float = 1.0, d_neg: float = 1.0, gather_distributed: bool = True) -> None:
        super().__init__(temperature, gather_distributed)
        self.d_pos = check_positive("d_pos", d_pos)
        self.d_neg = check_positive("d_neg", d_neg)

    @staticmethod
    def views_per_image(views: int) -> int:
        return views + ANCHORS

    def terms(self, local: torch.Tensor, glob: torch.Tensor, offset: int) -> LossTerms:
        if local.shape[1] < ANCHORS + 1:
            raise ValueError(f"attentionnce needs V = M + 2 >= 3 views per image, got V={local.shape[1]}")
        pos = prototype_logits(local[:, :ANCHORS], local[:, ANCHORS:], self.d_pos, self.temperature)
        # Negatives are the anchor views of all other images: the sibling anchor is neither
        # positive nor negative, and positive views are never negatives.
        neg_lse = negative_logsumexp(local[:, :ANCHORS], glob[:, :ANCHORS], offset, 1 / self.temperature, d_neg=self.d_neg)
        v = neg_lse - pos
        return LossTerms(terms=F.softplus(v), pos_prob=torch.sigmoid(-v))
