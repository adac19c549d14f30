"""Learning-rate scaling rules: the lr a base lr becomes at a global batch size. Pure arithmetic, so that
config validation and the plan compute the effective lr without importing torch."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

LINEAR_SCALING_BATCH = 256  # the linear rule's reference batch: lr = base × B / 256


# --- learning-rate scaling -------------------------------------------------------------------
def _linear_scaling(base_lr: float, batch_size: int) -> float:
    """Goyal et al.'s linear rule, base × B/256 (FlatCLR's default, base 0.3)."""
    return base_lr * batch_size / LINEAR_SCALING_BATCH


def _sqrt_scaling(base_lr: float, batch_size: int) -> float:
    """The square-root rule, base × √B (FlatCLR's small-batch choice, base 0.075)."""
    return base_lr * math.sqrt(batch_size)


def _no_scaling(base_lr: float, batch_size: int) -> float:
    """The base lr as given (AttentionNCE's Adam 1e-3 at any batch)."""
    return base_lr


LR_SCALING: dict[str, Callable[[float, int], float]] = {
    "linear": _linear_scaling,
    "sqrt": _sqrt_scaling,
    "none": _no_scaling,
}


def scaled_lr(base_lr: float, batch_size: int, rule: str) -> float:
    """The learning rate for a global batch size under a scaling rule.

    FlatCLR's README: linear is 0.3 × B/256 and sqrt is 0.075 × √B; they agree at B = 4096.

    Args:
        base_lr: The base learning rate the rule scales.
        batch_size: The global batch size B.
        rule: A key of ``LR_SCALING``.

    Returns:
        The scaled learning rate.

    Raises:
        ValueError: If the rule is unknown or a value is out of range.
    """
    check_name("lr_scaling", rule, LR_SCALING)
    check_range("base_lr", base_lr, lower=0.0, lower_inclusive=False)
    check_range("batch_size", batch_size, lower=1)
    return LR_SCALING[rule](base_lr, batch_size)


# --- validation ------------------------------------------------------------------------------
def check_name(field: str, value: str, allowed: Mapping[str, object]) -> None:
    """Raises ValueError naming the field, the value and the allowed names."""
    if value not in allowed:
        raise ValueError(f"{field}={value!r} is not one of {sorted(allowed)}")


def check_range(
    field: str,
    value: float,
    *,
    lower: float,
    upper: float | None = None,
    lower_inclusive: bool = True,
) -> None:
    """Raises ValueError naming the field, the value and the allowed range.

    The lower bound is inclusive unless ``lower_inclusive`` is False; the upper bound, when
    given, is exclusive.
    """
    above = value >= lower if lower_inclusive else value > lower
    below = upper is None or value < upper
    if not (above and below):
        low = f"{'[' if lower_inclusive else '('}{lower}"
        high = f"{upper})" if upper is not None else "inf)"
        raise ValueError(f"{field}={value!r} is outside the allowed range {low}, {high}")
