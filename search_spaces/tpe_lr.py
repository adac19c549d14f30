"""Optuna TPE over lr and each loss's own hyperparameters, per (loss, batch) cell, for every catalog loss.

A fair batch-size comparison tunes lr for every (loss, batch size) cell. The space is
define-by-run: a trial samples exactly the hyperparameters its loss takes (temperature for all,
d_pos / d_neg for AttentionNCE, tau_plus for DCL / HCL, beta for HCL), each over the tuning range
the loss catalog gives it. ASHA stops weak trials early on the validation kNN accuracy; they are
told to Optuna as pruned, not as complete.
"""

from __future__ import annotations

from typing import Any

from search_spaces.preset import Preset
from trainables.spec.claims import LEARNING
from trainables.spec.losses import CATALOG, HYPERPARAMETERS

BATCH_SIZES = (64, 256)


def space(trial: Any) -> dict[str, Any]:
    """The define-by-run space (module level: Tune pickles the searcher with it)."""
    loss = trial.suggest_categorical("loss", tuple(CATALOG))
    trial.suggest_categorical("batch_size", BATCH_SIZES)
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    for name in CATALOG[loss].hyperparameters:  # signature order: temperature first
        low, high, log = HYPERPARAMETERS[name].search
        trial.suggest_float(name, low, high, log=log)
    return {}


PRESET = Preset(
    name="tpe-lr",
    description="Optuna TPE over lr, temperature and loss-specific hyperparameters per (loss, batch) cell, ASHA",
    fixed={
        "dataset": "cifar10", "backbone": "resnet18", "head": "mlp_bn", "views": 1,
        "optimizer": "adam", "weight_decay": 1e-6, "schedule": "constant", "epochs": 100, "gpu": True,
    },
    search=space,
    num_samples=100,
    scheduler="asha",
    evaluation={"mode": "linear", "recipe": "attentionnce", "epochs": 100},
    claims=(LEARNING,),  # a search, not a paper's table
)
