"""What the sweep driver hands every trial of a study, and how a trial's config is made from it.

The driver fills :class:`StudyContext` from the study's declaration (``search_spaces/``) and
validates every trial's config with :func:`trial_config` before Ray starts; trials read only
the context, so worker code never depends on study declarations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainables.spec.pretrain_config import PretrainConfig


def trial_config(fixed: dict[str, Any], per_loss: dict[str, dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """A trial's config fields: the fixed settings, its own params, then its loss's settings."""
    base = fixed | params
    return base | per_loss.get(base.get("loss", PretrainConfig.loss), {})


def uses_train_workers(cfg: PretrainConfig) -> bool:
    """Several workers or a GPU run under TorchTrainer; one CPU worker runs inside the trial."""
    return cfg.workers > 1 or cfg.gpu


@dataclass(frozen=True)
class StudyContext:
    """What every trial of a study shares (handed to trials with ``tune.with_parameters``)."""

    study: str
    study_run_id: str
    tracking_uri: str
    experiment: str
    storage_path: str
    fixed: dict[str, Any]  # config fields of every trial
    per_loss: dict[str, dict[str, Any]]  # config fields of one loss's trials
    evaluation: dict[str, Any]  # EvalConfig fields
    max_failures: int = 0

    def trial_config(self, params: dict[str, Any]) -> dict[str, Any]:
        """The config fields of the trial whose grid point or Optuna suggestion is ``params``."""
        return trial_config(self.fixed, self.per_loss, params)
