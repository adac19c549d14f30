"""Debiased contrastive loss (Chuang et al. 2020) and hard-negative HCL (Robinson et al. 2021).

Both estimate the true-negative mass Ng from the observed negatives and the positive:
    Ng = max((sum_n w_n e^{s_n/tau} - tau+ N e^{s+/tau}) / (1 - tau+), N e^{-1/tau})
    l  = -log(e^{s+/tau} / (e^{s+/tau} + Ng))
with w_n = 1 for Debiased CL and w_n = e^{beta s_n/tau} / mean_k e^{beta s_k/tau} for HCL.
Everything is computed in log space, so nothing overflows.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trainables.core.losses.base import ContrastiveLoss, LossTerms
from trainables.core.losses.lse import negative_logsumexp
from trainables.core.losses.multiview import positive_logits
from trainables.spec.losses import HYPERPARAMETERS


def debiased_terms(pos: torch.Tensor, log_neg_mass: torch.Tensor, num_neg: int, tau_plus: float, temperature: float) -> torch.Tensor:
    """-log(e^{s+} / (e^{s+} + Ng)) per pair, from log sum_n w_n e^{s_n/tau}.

    Shape:
        pos: [P, M] positive logits s+/tau; log_neg_mass: [P] -> [P, M].
    """
    # r = log(tau+ N e^{s+} / sum): the debiasing subtraction is possible only where r < 0.
    r = math.log(tau_plus * num_neg) + pos - log_neg_mass[:, None] if tau_plus > 0 else torch.full_like(pos, -math.inf)
    feasible = r < 0
    log_rest = log_neg_mass[:, None] + torch.log(-torch.expm1(r.clamp(max=-1e-7)))
    log_debiased = torch.where(feasible, log_rest, -math.inf) - math.log(1 - tau_plus)
    log_ng = torch.clamp(log_debiased, min=math.log(num_neg) - 1 / temperature)
    return F.softplus(log_ng - pos)


class DebiasedLoss(ContrastiveLoss):
    """Debiased CL ("dcl"): defaults temperature 0.5, tau_plus 0.1 (official code)."""

    name = "dcl"

    def __init__(self, temperature: float = 0.5, tau_plus: float = 0.1, gather_distributed: bool = True) -> None:
        super().__init__(temperature, gather_distributed)
        self.tau_plus = HYPERPARAMETERS["tau_plus"].check(tau_plus)

    def log_negative_mass(self, local: torch.Tensor, glob: torch.Tensor, offset: int, neg_lse: torch.Tensor, num_neg: int) -> torch.Tensor:
        """log sum_n w_n e^{s_n/tau} over each anchor's negatives; w_n = 1 here.

        Shape:
            local: [b, V, D], glob: [B, V, D], neg_lse: [b * V] (log sum_n e^{s_n/tau}) -> [b * V].
        """
        return neg_lse

    def terms(self, local: torch.Tensor, glob: torch.Tensor, offset: int) -> LossTerms:
        neg_lse = negative_logsumexp(local, glob, offset, 1 / self.temperature)
        num_neg = (glob.shape[0] - 1) * glob.shape[1]
        pos = positive_logits(local, self.temperature)
        log_mass = self.log_negative_mass(local, glob, offset, neg_lse, num_neg)
        terms = debiased_terms(pos, log_mass, num_neg, self.tau_plus, self.temperature)
        return LossTerms(terms=terms, pos_prob=torch.sigmoid(pos - neg_lse[:, None]))


class HardNegativeLoss(DebiasedLoss):
    """HCL ("hcl"): negatives re-weighted by e^{beta s/tau}; defaults tau 0.5, tau_plus 0.1, beta 1.

    sum_n w_n e^{s_n} = N sum_n e^{(beta+1) s_n} / sum_n e^{beta s_n}. The weights are not
    detached, as in the official code. beta = 0 gives Debiased CL.
    """

    name = "hcl"

    def __init__(self, temperature: float = 0.5, tau_plus: float = 0.1, beta: float = 1.0, gather_distributed: bool = True) -> None:
        super().__init__(temperature, tau_plus, gather_distributed)
        self.beta = HYPERPARAMETERS["beta"].check(beta)

    def log_negative_mass(self, local: torch.Tensor, glob: torch.Tensor, offset: int, neg_lse: torch.Tensor, num_neg: int) -> torch.Tensor:
        if self.beta == 0:
            return neg_lse
        log_mean_weight = negative_logsumexp(local, glob, offset, self.beta / self.temperature) - math.log(num_neg)
        return negative_logsumexp(local, glob, offset, (self.beta + 1) / self.temperature) - log_mean_weight
