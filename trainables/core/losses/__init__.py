"""Contrastive losses under one multi-view contract: ``build_loss(name, **hyperparams)(z)``.

``z`` is [B, V, D]: B images of the (local) batch, V views each, raw projection outputs.
``views`` in every config means M, the number of positive views per anchor; the catalog says
each loss's V for a given M. This package imports no torch until a loss is built, so the
catalog can be read by config validation and the command line cheaply.

Adding a loss takes three edits and no others:

1. A module here with a ``ContrastiveLoss`` subclass: its hyperparameters are the keyword
   arguments of its ``__init__``, each with its default (the published one); ``terms()``
   computes the per-term losses on L2-normalised views (see ``base.py`` and ``infonce.py``).
   A subclass whose only hyperparameter is the temperature needs no ``__init__`` at all.
2. One ``LossEntry`` line in ``catalog.CATALOG``: name, table label, plot colour,
   ``"module:Class"``, help summary, and where it differs from the default, its views-per-image
   rule, negatives and diagnostic names. A hyperparameter no loss took before also needs its
   ``Hyperparameter`` line (allowed range, table symbol, tuning range) in ``catalog.HYPERPARAMETERS``.
3. One line in ``tests/test_losses.py``'s ``REFERENCES``: a float64 NumPy formula of the loss
   and the hyperparameter sets to test it at.

The config then has a field per new hyperparameter with its range checked, ``--help`` lists the
loss, tables and plots label and colour it, the tuning presets search its hyperparameters, and
the loss benchmark times it (against a dense version only where ``dense.py`` has one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.spec.losses import CATALOG

if TYPE_CHECKING:
    from trainables.core.losses.base import ContrastiveLoss


def build_loss(name: str, *, gather_distributed: bool = True, **hyperparams: float) -> ContrastiveLoss:
    """The loss ``name`` with the given hyperparameters (the class's defaults fill the rest).

    Raises:
        ValueError: an unknown loss, a hyperparameter that loss does not take, or a value out of range.
    """
    if name not in CATALOG:
        raise ValueError(f"loss={name!r} is not known; allowed: {', '.join(CATALOG)}")
    takes = CATALOG[name].hyperparameters
    unknown = sorted(set(hyperparams) - set(takes))
    if unknown:
        raise ValueError(f"loss={name!r} does not take {', '.join(unknown)}; it takes: {', '.join(takes)}")
    return CATALOG[name].load()(gather_distributed=gather_distributed, **hyperparams)


__all__ = ["CATALOG", "build_loss"]
