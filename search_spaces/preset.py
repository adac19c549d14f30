"""What a study preset declares: fixed settings, the axes it crosses, seeds, and evaluation."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

SearchFunction = Callable[[Any], dict[str, Any]]  # an Optuna define-by-run space: trial -> constants


@dataclass(frozen=True)
class Preset:
    """A study: every trial is ``fixed`` | one grid point | one seed (| an Optuna suggestion).

    Attributes:
        name: what ``--preset`` takes.
        description: one line for ``--help`` and the study's MLflow run.
        fixed: PretrainConfig fields shared by every trial.
        grid: PretrainConfig fields crossed as a grid (a paper's table).
        per_loss: fields that apply to one loss only (AttentionNCE's d_pos, d_neg), by loss.
        seeds: every grid point is repeated once per seed.
        evaluation: EvalConfig fields of the evaluation run after each pretraining.
        search: a define-by-run Optuna space; when set, Optuna's TPE picks ``num_samples``
            trials instead of the grid.
        num_samples: trials of an Optuna search.
        scheduler: "none" or "asha" (early stopping on the validation kNN accuracy).
    """

    name: str
    description: str
    fixed: dict[str, Any]
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    per_loss: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    evaluation: dict[str, Any] = field(default_factory=lambda: {"mode": "linear", "recipe": "attentionnce", "epochs": 100})
    search: SearchFunction | None = None
    num_samples: int = 0
    scheduler: str = "none"

    def grid_trials(self) -> list[dict[str, Any]]:
        """Every (grid point, seed) as config overrides, in table order (seeds innermost)."""
        axes = list(self.grid)
        points = itertools.product(*(self.grid[a] for a in axes)) if axes else [()]
        return [dict(zip(axes, point)) | {"seed": seed} for point in points for seed in self.seeds]
