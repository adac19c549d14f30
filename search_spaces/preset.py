"""What a study preset declares: fixed settings, the axes it crosses, seeds, evaluation and tuning."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from trainables.spec import run_schema as rs
from trainables.spec.claims import Claim
from trainables.spec.losses import HYPERPARAMETERS

SearchFunction = Callable[[Any], dict[str, Any]]  # an Optuna define-by-run space: trial -> constants
TUNING_SAMPLERS = ("tpe", "random")
TUNING_METRICS = (rs.M_VAL_KNN, rs.M_HEADLINE_VAL)  # validation only: the test split never selects


@dataclass(frozen=True)
class Tuning:
    """The fair tuning protocol: every (loss, batch size, ...) cell gets the same budget.

    Each grid cell gets its own Optuna study of exactly ``samples`` trials over lr (log-uniform
    in ``lr``) and each of ``hyperparameters`` that the cell's loss takes, in the tuning range the
    loss catalog gives it (``trainables/spec/losses.py``; τ: 0.05 to 1, log scale). The
    configuration with the best validation ``metric`` is then re-run with every seed of the
    study; only those re-runs are the study's trials, so only they enter its tables. Equal
    budgets per cell answer Bordes et al. 2023: a comparison across batch sizes in which one cell
    was tuned harder than another measures the tuning, not the loss.

    Attributes:
        samples: Trials per cell (the budget, the same for every cell).
        lr: (low, high) of the base lr searched (before the preset's lr_scaling).
        hyperparameters: Loss hyperparameters tuned too, in each loss that takes them.
        seed: Pretraining seed of the tuning trials; kept apart from the study's seeds so that the
            runs that enter the table were not the ones the selection saw.
        metric: Validation metric the selection maximises: the final validation kNN accuracy, or
            the evaluation's best validation accuracy.
        sampler: Optuna sampler of each cell's study.
    """

    samples: int = 4
    lr: tuple[float, float] = (1e-2, 1.0)
    hyperparameters: tuple[str, ...] = ("temperature",)
    seed: int = 1000
    metric: str = "val_knn_acc"
    sampler: str = "tpe"

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.samples, int) or self.samples < 1:
            problems.append(f"tuning.samples={self.samples!r} is not allowed; it must be an integer >= 1")
        low, high = self.lr
        if not (0 < low < high < math.inf):
            problems.append(f"tuning.lr={self.lr!r} is not allowed; it must be (low, high) with 0 < low < high")
        unknown = [h for h in self.hyperparameters if h not in HYPERPARAMETERS]
        if unknown:
            problems.append(f"tuning.hyperparameters: {', '.join(map(repr, unknown))} not allowed; allowed: {', '.join(HYPERPARAMETERS)}")
        if self.metric not in TUNING_METRICS:
            problems.append(f"tuning.metric={self.metric!r} is not allowed; allowed: {', '.join(TUNING_METRICS)}")
        if self.sampler not in TUNING_SAMPLERS:
            problems.append(f"tuning.sampler={self.sampler!r} is not allowed; allowed: {', '.join(TUNING_SAMPLERS)}")
        if problems:
            raise ValueError("; ".join(problems))


ADAPTIVE_FIELDS = ("initial", "step", "max_seeds", "spending")
SPENDING_RULES = ("pocock", "obrien-fleming")  # analysis.sequential.SPENDING's keys, named here without scipy


@dataclass(frozen=True)
class Adaptive:
    """Adaptive seeds: run ``initial`` seeds, then ``step`` more at a time only for the cells of the
    comparisons still unresolved, until each resolves or ``max_seeds`` is reached.

    The comparisons are the tables' family (each loss against InfoNCE in each grid column, and each
    cell against the random-init baseline); each look tests the open ones at its share of the
    family-wise error (``spending``, ``analysis/sequential.py``), so that stopping a comparison
    early does not raise the chance of any false resolution above the tables' 5 %.

    Attributes:
        initial: Seeds every cell runs before the first look (at least 2).
        step: Seeds added to an open comparison's cells between looks (at least 1).
        max_seeds: Seeds at the last look: the budget of every cell.
        spending: How the error is split across looks: "pocock" (equal shares) or "obrien-fleming".
    """

    initial: int = 6
    step: int = 2
    max_seeds: int = 12
    spending: str = "pocock"

    def __post_init__(self) -> None:
        whole = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
        problems = []
        if not whole(self.initial) or self.initial < 2:
            problems.append(f"adaptive.initial={self.initial!r} is not allowed; it must be an integer >= 2 (a paired t-test needs 2 seeds)")
        if not whole(self.step) or self.step < 1:
            problems.append(f"adaptive.step={self.step!r} is not allowed; it must be an integer >= 1")
        if not whole(self.max_seeds) or (whole(self.initial) and self.max_seeds < self.initial):
            problems.append(f"adaptive.max_seeds={self.max_seeds!r} is not allowed; it must be an integer >= initial ({self.initial!r})")
        if self.spending not in SPENDING_RULES:
            problems.append(f"adaptive.spending={self.spending!r} is not allowed; allowed: {', '.join(SPENDING_RULES)}")
        if problems:
            raise ValueError("; ".join(problems))

    def looks(self) -> list[int]:
        """The seed counts at which the comparisons are tested (``analysis.sequential.Schedule.looks``)."""
        looks = list(range(self.initial, self.max_seeds + 1, self.step))
        return looks if looks[-1] == self.max_seeds else [*looks, self.max_seeds]

    def text(self) -> str:
        """As ``--adaptive-seeds`` takes it."""
        return f"{self.initial}:{self.step}:{self.max_seeds}"


@dataclass(frozen=True)
class Preset:
    """A study: every trial is ``fixed`` | one grid point | one seed (| an Optuna suggestion).

    Attributes:
        name: what ``--preset`` takes.
        description: one line for ``--help`` and the study's MLflow run.
        fixed: PretrainConfig fields shared by every trial.
        grid: PretrainConfig fields crossed as a grid (a paper's table).
        per_loss: fields that apply to one loss only (AttentionNCE's d_pos, d_neg), by loss.
        per_loss_axes: grid axes whose values differ for one loss, by loss: InfoNCE's views
            chosen so that both losses of a views study meet at the same V (equal compute).
        seeds: every grid point is repeated once per seed.
        evaluation: EvalConfig fields of the evaluation run after each pretraining. Its
            ``recipe`` names the paper whose conditions the study follows (the report's
            Conditions section compares the recorded configs with that paper's).
        search: a define-by-run Optuna space; when set, Optuna's TPE picks ``num_samples``
            trials instead of the grid.
        num_samples: trials of an Optuna search.
        scheduler: "none" or "asha" (early stopping on the validation kNN accuracy).
        tuning: when set, every grid cell is tuned with the same budget before its seeds run.
        adaptive: when set, ``seeds`` are the budget (``adaptive.max_seeds`` of them, in order):
            every cell runs the first ``adaptive.initial``, and later ones only where a
            comparison is still unresolved (``Adaptive``).
        claims: what the study's paper claims, judged in the report's Claims section
            (``trainables/spec/claims.py``); recorded on the study run when it starts.
    """

    name: str
    description: str
    fixed: dict[str, Any]
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    per_loss: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_loss_axes: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    evaluation: dict[str, Any] = field(default_factory=lambda: {"mode": "linear", "recipe": "attentionnce", "epochs": 100})
    search: SearchFunction | None = None
    num_samples: int = 0
    scheduler: str = "none"
    tuning: Tuning | None = None
    adaptive: Adaptive | None = None
    claims: tuple[Claim, ...] = ()

    @property
    def first_seeds(self) -> tuple[int, ...]:
        """The seeds every cell runs: all of them, or an adaptive study's first look."""
        return self.seeds[: self.adaptive.initial] if self.adaptive else self.seeds

    def cells(self) -> list[dict[str, Any]]:
        """Every grid point (no seed), in table order. A loss's own axis values replace the
        grid's for that loss's points, on the axes the grid still crosses."""
        losses = self.grid.get("loss", (None,))
        cells = []
        for loss in losses:
            own = self.per_loss_axes.get(loss, {}) if loss is not None else {}
            axes = {a: (own.get(a, v) if a != "loss" else (loss,)) for a, v in self.grid.items()}
            cells += [dict(zip(axes, point)) for point in itertools.product(*axes.values())]
        return cells

    def grid_trials(self) -> list[dict[str, Any]]:
        """Every (grid point, seed) the study starts with, as config overrides, in table order (seeds innermost)."""
        return [cell | {"seed": seed} for cell in self.cells() for seed in self.first_seeds]
