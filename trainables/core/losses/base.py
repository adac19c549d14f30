"""What every contrastive loss shares: normalisation, float32, the DDP gather, diagnostics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from trainables.core.losses.gather import gather_batch
from trainables.spec.losses import CATALOG, HYPERPARAMETERS


@dataclass(frozen=True)
class LossTerms:
    """Per-term losses of one batch and the probability the loss gives the positive of each term.

    Attributes:
        terms: the loss of every (anchor, positive) pair (or anchor); the loss is their mean.
        pos_prob: the probability of the positive (pi+ for InfoNCE-like losses, the prototype's
            for AttentionNCE), logged under the catalog's diagnostic names.
        value: what the loss reports, when it differs from the mean of ``terms`` (FlatNCE).
    """

    terms: torch.Tensor
    pos_prob: torch.Tensor
    value: torch.Tensor | None = None


class ContrastiveLoss(nn.Module):
    """Base class: ``loss(z)`` with z of shape [B, V, D], raw projection outputs.

    Subclasses implement :meth:`terms` on L2-normalised float32 embeddings. The loss is
    computed in at least float32 even under autocast, gathers the global batch across DDP workers
    (on by default), and keeps the last batch's diagnostics as device tensors, so reading
    them costs no host sync until the trainer asks.
    """

    name: ClassVar[str]

    def __init__(self, temperature: float = 0.1, gather_distributed: bool = True) -> None:
        """Default temperature 0.1 (FlatCLR's), which InfoNCE and FlatNCE keep."""
        super().__init__()
        self.temperature = HYPERPARAMETERS["temperature"].check(temperature)
        self.gather_distributed = gather_distributed
        self.last_pos_prob: torch.Tensor | None = None

    def terms(self, local: torch.Tensor, glob: torch.Tensor, offset: int) -> LossTerms:
        raise NotImplementedError

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The mean loss of this worker's anchors against the global batch.

        Shape:
            z: [B, V, D] -> [] (0-dim).
        """
        if z.dim() != 3 or z.shape[1] < 2:
            raise ValueError(f"{self.name} expects z of shape [B, V>=2, D], got {tuple(z.shape)}")
        with torch.autocast(device_type=z.device.type, enabled=False):
            # Half precision cannot hold e^{s/tau} sums; float64 inputs stay float64.
            local = F.normalize(z.to(torch.promote_types(z.dtype, torch.float32)), dim=-1)
            glob, offset = gather_batch(local) if self.gather_distributed else (local, 0)
            out = self.terms(local, glob, offset)
        self.last_pos_prob = out.pos_prob.detach().mean()
        return out.terms.mean() if out.value is None else out.value

    def diagnostics(self) -> dict[str, torch.Tensor]:
        """The positive's probability and one minus it (InfoNCE's gradient scale, for pi+) of the
        last batch (this worker's anchors), under the catalog's names for this loss."""
        if self.last_pos_prob is None:
            return {}
        probability, scale = CATALOG[self.name].diagnostics
        return {probability: self.last_pos_prob, scale: 1 - self.last_pos_prob}
