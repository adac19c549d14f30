"""Contrastive losses under one multi-view contract: ``build_loss(name, **hyperparams)(z)``.

``z`` is [B, V, D]: B images of the (local) batch, V views each, raw projection outputs.
``views`` in every config means M, the number of positive views per anchor; each loss class
says its V for a given M through ``views_per_image(M)``.
"""

from __future__ import annotations

from trainables.losses.attentionnce import ATTENTIONNCE_PRESETS, AttentionNCELoss
from trainables.losses.base import ContrastiveLoss, LossTerms
from trainables.losses.debiased import DebiasedLoss, HardNegativeLoss
from trainables.losses.flatnce import FlatNCELoss
from trainables.losses.infonce import InfoNCELoss

LOSSES: dict[str, type[ContrastiveLoss]] = {
    "infonce": InfoNCELoss,
    "flatnce": FlatNCELoss,
    "attentionnce": AttentionNCELoss,
    "dcl": DebiasedLoss,
    "hcl": HardNegativeLoss,
}

# Hyperparameters each loss accepts by keyword (beyond gather_distributed).
HYPERPARAMETERS: dict[str, tuple[str, ...]] = {
    "infonce": ("temperature",),
    "flatnce": ("temperature",),
    "attentionnce": ("temperature", "d_pos", "d_neg"),
    "dcl": ("temperature", "tau_plus"),
    "hcl": ("temperature", "tau_plus", "beta"),
}


def build_loss(name: str, *, gather_distributed: bool = True, **hyperparams: float) -> ContrastiveLoss:
    """The loss ``name`` with the given hyperparameters (defaults from the official code).

    Raises:
        ValueError: an unknown loss, or a hyperparameter that loss does not take.
    """
    if name not in LOSSES:
        raise ValueError(f"loss={name!r} is not known; allowed: {', '.join(LOSSES)}")
    unknown = sorted(set(hyperparams) - set(HYPERPARAMETERS[name]))
    if unknown:
        raise ValueError(f"loss={name!r} does not take {', '.join(unknown)}; it takes: {', '.join(HYPERPARAMETERS[name])}")
    return LOSSES[name](gather_distributed=gather_distributed, **hyperparams)


__all__ = ["ATTENTIONNCE_PRESETS", "HYPERPARAMETERS", "LOSSES", "ContrastiveLoss", "LossTerms", "build_loss"]
