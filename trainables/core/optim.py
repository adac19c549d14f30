"""Optimisers, learning-rate scaling rules and schedules for contrastive pretraining.

- ``LARS``: momentum SGD with a layer-wise trust ratio (You et al. 2017), FlatCLR's optimiser.
- ``param_groups``: splits a model's parameters so that biases and normalisation parameters get
  neither weight decay nor LARS adaptation. FlatCLR meant to do this but matched parameter
  names its optimiser never saw, so there it silently did nothing; here the split is by
  tensor rank and needs no names.
- the optimisers and schedules a study config names are the catalogs ``OPTIMIZERS`` and ``SCHEDULES``
  of ``trainables/spec/optimizers.py``, which the builders here read; the learning-rate scaling
  rules, pure arithmetic, are in ``trainables/spec/lr_scaling.py``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from trainables.spec.lr_scaling import check_name, check_range
from trainables.spec.optimizers import OPTIMIZERS, SCHEDULES

LARS_TRUST_COEFFICIENT = 0.001  # η in the LARS paper, SimCLR and moco-v3


# --- LARS ------------------------------------------------------------------------------------
class LARS(torch.optim.Optimizer):
    """Momentum SGD with a layer-wise trust ratio.

    For each parameter tensor w with gradient g, in a group whose ``lars_exclude`` is False:

        d = g + wd·w
        d ← d · η·‖w‖ / (‖g‖ + wd·‖w‖)      (the ratio is 1 where ‖w‖ or the denominator is 0)
        buf ← momentum·buf + d
        w ← w − lr·buf

    Groups with ``lars_exclude=True`` skip the first two lines: plain momentum SGD without
    weight decay, for biases and normalisation parameters.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        *,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        trust_coefficient: float = LARS_TRUST_COEFFICIENT,
    ) -> None:
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "trust_coefficient": trust_coefficient,
            "lars_exclude": False,
        }
        super().__init__(params, defaults)

    # torch declares Optimizer.step with @overload, which a single signature cannot restate.
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Performs one optimisation step.

        Args:
            closure: Re-evaluates the model and returns the loss; optional.

        Returns:
            The closure's loss, or None without a closure.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                update = param.grad if group["lars_exclude"] else _adapted_gradient(param, group)
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(param)
                buffer = state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                param.add_(buffer, alpha=-group["lr"])
        return loss


def _adapted_gradient(param: torch.Tensor, group: Mapping[str, Any]) -> torch.Tensor:
    """The weight-decayed gradient scaled by the LARS trust ratio η·‖w‖ / (‖g‖ + wd·‖w‖).

    Args:
        param: A parameter with its gradient in ``param.grad``.
        group: The parameter's group, for ``weight_decay`` and ``trust_coefficient``.

    Returns:
        The update to feed the momentum buffer.

    Shape:
        param, param.grad: any shape -> same shape
    """
    weight_decay = group["weight_decay"]
    param_norm = torch.linalg.vector_norm(param)
    denominator = torch.linalg.vector_norm(param.grad) + weight_decay * param_norm
    # torch.where rather than an `if` keeps the step free of GPU-to-host synchronisation.
    usable = (param_norm > 0) & (denominator > 0)
    ratio = torch.where(usable, group["trust_coefficient"] * param_norm / denominator, 1.0)
    return param.grad.add(param, alpha=weight_decay).mul_(ratio)


# --- parameter groups ------------------------------------------------------------------------
def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Splits trainable parameters into a decayed group and an excluded group.

    Biases and normalisation scales and shifts are the tensors with at most one dimension, so
    the split needs no parameter names (and wrapping the model in DDP or SyncBatchNorm cannot
    break it). Empty groups are left out.

    Args:
        model: The model to optimise.
        weight_decay: Weight decay for conv and linear weights.

    Returns:
        Parameter groups for a torch optimiser: weights with ``weight_decay`` and
        ``lars_exclude=False``; biases and normalisation parameters with weight decay 0 and
        ``lars_exclude=True``.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if p.ndim > 1], "weight_decay": weight_decay, "lars_exclude": False},
        {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0, "lars_exclude": True},
    ]
    return [group for group in groups if group["params"]]


# --- optimisers ------------------------------------------------------------------------------
OptimizerBuilder = Callable[[list[dict[str, Any]], float, float, bool], torch.optim.Optimizer]
ScheduleBuilder = Callable[[torch.optim.Optimizer, int, int, float], LRScheduler]


def lars(groups: list[dict[str, Any]], lr: float, momentum: float, fused: bool) -> torch.optim.Optimizer:
    """LARS; ``fused`` is ignored because LARS has no fused kernel."""
    return LARS(groups, lr=lr, momentum=momentum)


def sgd(groups: list[dict[str, Any]], lr: float, momentum: float, fused: bool) -> torch.optim.Optimizer:
    """Momentum SGD."""
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, fused=fused)


def adam(groups: list[dict[str, Any]], lr: float, momentum: float, fused: bool) -> torch.optim.Optimizer:
    """Adam with torch's default betas (as AttentionNCE); ``momentum`` is ignored."""
    return torch.optim.Adam(groups, lr=lr, fused=fused)



def build_optimizer(
    name: str,
    model: nn.Module,
    lr: float,
    *,
    weight_decay: float,
    momentum: float = 0.9,
    fused: bool = False,
) -> torch.optim.Optimizer:
    """Builds an optimiser over ``param_groups(model, weight_decay)``.

    Args:
        name: A name of the ``OPTIMIZERS`` catalog.
        model: The model to optimise.
        lr: The learning rate, already scaled for the batch size.
        weight_decay: Weight decay for weights; biases and normalisation parameters get none.
        momentum: Momentum for LARS and SGD; Adam ignores it.
        fused: Use torch's fused kernels (SGD and Adam; LARS ignores it). Pass True on CUDA.

    Returns:
        The optimiser.

    Raises:
        ValueError: If the name is unknown or a value is out of range.
    """
    check_name("optimizer", name, OPTIMIZERS)
    check_range("lr", lr, lower=0.0, lower_inclusive=False)
    check_range("weight_decay", weight_decay, lower=0.0)
    check_range("momentum", momentum, lower=0.0, upper=1.0)
    build: OptimizerBuilder = OPTIMIZERS[name].load()
    return build(param_groups(model, weight_decay), lr, momentum, fused)


# --- schedules -------------------------------------------------------------------------------
def _warmup_cosine_factor(step: int, *, base_lr: float, warmup_steps: int, total_steps: int, final_lr: float) -> float:
    """The multiplier on ``base_lr`` at ``step``: linear from 0, then cosine to ``final_lr``."""
    if step < warmup_steps:
        return step / warmup_steps
    progress = min((step - warmup_steps) / (total_steps - warmup_steps), 1.0)
    lr = final_lr + (base_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return lr / base_lr


def cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, final_lr: float) -> LRScheduler:
    """Per-step linear warm-up then cosine decay to ``final_lr``, for every group's own lr."""
    check_range("warmup_steps", warmup_steps, lower=0)
    check_range("total_steps", total_steps, lower=warmup_steps, lower_inclusive=False)
    check_range("final_lr", final_lr, lower=0.0)
    # LambdaLR multiplies each group's initial lr; read it the way LambdaLR will.
    base_lrs = [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
    for base_lr in base_lrs:
        check_range("lr", base_lr, lower=0.0, lower_inclusive=False)
    factors = [
        functools.partial(
            _warmup_cosine_factor,
            base_lr=base_lr,
            warmup_steps=warmup_steps,
            total_steps=total_steps,
            final_lr=final_lr,
        )
        for base_lr in base_lrs
    ]
    return LambdaLR(optimizer, factors)


def constant(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, final_lr: float) -> LRScheduler:
    """Keeps the learning rate fixed (AttentionNCE has no schedule); other arguments unused."""
    return LambdaLR(optimizer, lambda step: 1.0)



def build_schedule(
    optimizer: torch.optim.Optimizer,
    name: str,
    *,
    warmup_steps: int,
    total_steps: int,
    final_lr: float = 1e-6,
) -> LRScheduler:
    """Builds a per-step learning-rate schedule; call its ``step()`` after every optimiser step.

    ``cosine`` (FlatCLR: 10 warm-up epochs, then cosine to 1e-6) rises linearly from 0 at step
    0 to the optimiser's lr at ``warmup_steps`` and falls along a half cosine to ``final_lr``
    at ``total_steps``, where it stays. ``constant`` never changes the lr.

    Args:
        optimizer: The optimiser whose groups' current lr is the peak.
        name: A name of the ``SCHEDULES`` catalog.
        warmup_steps: Optimiser steps of linear warm-up.
        total_steps: Optimiser steps in the whole run; must exceed ``warmup_steps`` for cosine.
        final_lr: The lr cosine decays to.

    Returns:
        The scheduler.

    Raises:
        ValueError: If the name is unknown or a value is out of range.
    """
    check_name("schedule", name, SCHEDULES)
    build: ScheduleBuilder = SCHEDULES[name].load()
    return build(optimizer, warmup_steps, total_steps, final_lr)
