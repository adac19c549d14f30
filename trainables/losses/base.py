"""What every contrastive loss shares: normalisation, float32, the DDP gather, diagnostics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from trainables.losses.gather import gather_batch


@dataclass(frozen=True)
class LossTerms:
    """Per-term losses of one batch and the InfoNCE positive probability of each term.

    Attributes:
        terms: the loss of every (anchor, positive) pair (or anchor); the loss is their mean.
        pos_prob: pi+, the probability InfoNCE gives the positive, for the log-K diagnostics.
        value: what the loss reports, when it differs from the mean of ``terms`` (FlatNCE).
    """

    terms: torch.Tensor
    pos_prob: torch.Tensor
    value: torch.Tensor | None = None


def check_positive(name: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"{name}={value!r} is not allowed: it must be > 0")
    return float(value)


class ContrastiveLoss(nn.Module):
    """Base class: ``loss(z)`` with z of shape [B, V, D], raw projection outputs.

    Subclasses implement :meth:`terms` on L2-normalised float32 embeddings. The loss is
    computed in at least float32 even under autocast, gathers the global batch across DDP workers
    (on by default), and keeps the last batch's diagnostics as device tensors, so reading
    them costs no host sync until the trainer asks.
    """

    name: ClassVar[str]

    def __init__(self, temperature: float, gather_distributed: bool = True) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.gather_distributed = gather_distributed
        self.last_pos_prob: torch.Tensor | None = None

    @staticmethod
    def views_per_image(views: int) -> int:
        """V, the encoder passes per image, for M = ``views`` positive views per anchor."""
        return views + 1

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
        """pi+ and InfoNCE's gradient scale 1 - pi+ of the last batch (this worker's anchors)."""
        if self.last_pos_prob is None:
            return {}
        return {"pos_prob": self.last_pos_prob, "grad_scale": 1 - self.last_pos_prob}
