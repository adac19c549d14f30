"""Optuna TPE over lr, temperature and each loss's own hyperparameters, per (loss, batch) cell.

A fair batch-size comparison tunes lr for every (loss, batch size) cell. The space is
define-by-run: d_pos / d_neg exist only in attentionnce trials, tau_plus only in dcl / hcl
trials, beta only in hcl trials. ASHA stops weak trials early on the validation kNN accuracy;
they are told to Optuna as pruned, not as complete.
"""

from __future__ import annotations

from typing import Any

from search_spaces.preset import Preset

LOSSES = ("infonce", "flatnce", "dcl", "hcl", "attentionnce")
BATCH_SIZES = (64, 256)


def space(trial: Any) -> dict[str, Any]:
    """The define-by-run space (module level: Tune pickles the searcher with it)."""
    loss = trial.suggest_categorical("loss", LOSSES)
    trial.suggest_categorical("batch_size", BATCH_SIZES)
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    trial.suggest_float("temperature", 0.05, 1.0, log=True)
    if loss == "attentionnce":
        trial.suggest_float("d_pos", 0.25, 4.0, log=True)
        trial.suggest_float("d_neg", 0.5, 20.0, log=True)
    if loss in ("dcl", "hcl"):
        trial.suggest_float("tau_plus", 0.0, 0.2)
    if loss == "hcl":
        trial.suggest_float("beta", 0.0, 3.0)
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
)
