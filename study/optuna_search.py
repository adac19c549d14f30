"""Ray Tune's OptunaSearch, telling Optuna the truth about early-stopped trials; per-cell tuning spaces.

Tune's OptunaSearch reports a trial that ASHA stopped after 2 of 100 epochs as COMPLETE with
its 2-epoch value, so TPE compares partial budgets with full ones. Here such a trial is told
as PRUNED (its intermediate values stay recorded), and results without the metric (epochs
between kNN evaluations) are not reported to Optuna at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from search_spaces.preset import SearchFunction, Tuning
from trainables.spec.losses import CATALOG, HYPERPARAMETERS


class StudyOptunaSearch(OptunaSearch):
    def __init__(self, *args: Any, epochs: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.epochs = epochs

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self.metric in result:
            self._ot_trials[trial_id].report(result[self.metric], int(result.get("epoch", result["training_iteration"])))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        stopped_early = not error and result is not None and int(result.get("epoch", 0)) < self.epochs
        if stopped_early and trial_id not in self._completed_trials:
            self._ot_study.tell(self._ot_trials[trial_id], state=TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result, error)


@dataclass(frozen=True)
class CellSpace:
    """The define-by-run space of one tuned cell: lr, and the tuned hyperparameters its loss takes,
    each in the loss catalog's tuning range.

    A class, not a closure: Tune pickles the searcher with its space.
    """

    lr: tuple[float, float]
    hyperparameters: tuple[str, ...]

    @classmethod
    def of(cls, tuning: Tuning, loss: str) -> CellSpace:
        return cls(tuning.lr, tuple(h for h in tuning.hyperparameters if h in CATALOG[loss].hyperparameters))

    def __call__(self, trial: Any) -> dict[str, Any]:
        trial.suggest_float("lr", *self.lr, log=True)
        for name in self.hyperparameters:
            low, high, log = HYPERPARAMETERS[name].search
            trial.suggest_float(name, low, high, log=log)
        return {}


def sampler(kind: str, seed: int) -> optuna.samplers.BaseSampler:
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # multivariate + group: TPE models conditional parameters (d_pos only for attentionnce) jointly.
    return optuna.samplers.TPESampler(multivariate=True, group=True, seed=seed)


def build_search(
    space: SearchFunction, *, study: str, journal: Path, metric: str, epochs: int, seed: int = 0, kind: str = "tpe"
) -> StudyOptunaSearch:
    """An Optuna sampler over a define-by-run space, its study kept in a journal file.

    A journal file (not SQLite) is safe for several processes and survives a killed driver,
    so a resumed sweep continues the same Optuna study.
    """
    journal.parent.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(journal)))
    return StudyOptunaSearch(
        space=space, metric=metric, mode="max", sampler=sampler(kind, seed), study_name=study, storage=storage, epochs=epochs
    )
