"""One headline vocabulary across run kinds, and stores written before it.

Trial runs once carried their evaluation's numbers as ``eval_test_acc_at_best_val`` and
``eval_best_val_acc`` (and study runs ``best_trial_eval_*``); today they carry them under the
evaluation's own keys. A store of either kind must load, report and resume alike.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow_fixtures import make_synthetic_study, synthetic_baseline, synthetic_trial

from analysis.load import load_baselines, load_study
from study.study_run import record_best_trial
from trainables.spec import run_schema as rs

OLD = {rs.M_HEADLINE: "eval_test_acc_at_best_val", rs.M_HEADLINE_VAL: "eval_best_val_acc"}  # the keys old sweeps wrote


def test_old_keys_map_to_the_current_ones_and_current_keys_win() -> None:
    assert rs.current_metrics({"eval_test_acc_at_best_val": 0.7, "eval_best_val_acc": 0.8, "train_loss": 1.0}) == {
        rs.M_HEADLINE: 0.7, rs.M_HEADLINE_VAL: 0.8, rs.M_TRAIN_LOSS: 1.0,
    }
    assert rs.current_metrics({"eval_test_acc_at_best_val": 0.1, rs.M_HEADLINE: 0.7})[rs.M_HEADLINE] == 0.7
    assert rs.current_metrics({"best_trial_eval_best_val_acc": 0.8}) == {rs.BEST_TRIAL_PREFIX + rs.M_HEADLINE_VAL: 0.8}
    assert rs.M_HEADLINE == rs.M_TEST_AT_BEST_VAL and rs.M_HEADLINE_VAL == rs.M_BEST_VAL_ACC  # one key per quantity


def planted(root: Path, keys: dict[str, str]) -> tuple[str, str]:
    """A study whose trial runs carry their evaluation's numbers under ``keys``; (tracking URI, study run id)."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    trials = [synthetic_trial(loss, 64, seed, test_acc=acc) for loss, acc in (("infonce", 0.55), ("flatnce", 0.62)) for seed in (0, 1)]
    for trial in trials:
        evaluation = trial["evals"][0]["metrics"]
        trial["metrics"] |= {keys[key]: evaluation[key] for key in (rs.M_HEADLINE, rs.M_HEADLINE_VAL)}
    return uri, make_synthetic_study(uri, "keys", trials, baselines=[synthetic_baseline(0, test_acc=0.2)])


@pytest.mark.parametrize("keys", [OLD, {k: k for k in OLD}], ids=["old store", "current store"])
def test_the_best_trial_is_recorded_from_either_store(tmp_path: Path, keys: dict[str, str]) -> None:
    uri, study_run_id = planted(tmp_path, keys)
    best = record_best_trial(uri, study_run_id)
    assert best is not None and best.data.params[rs.P_LOSS] == "flatnce"
    recorded = MlflowClient(uri).get_run(study_run_id).data.metrics
    assert recorded[rs.BEST_TRIAL_PREFIX + rs.M_HEADLINE] == pytest.approx(0.62)
    assert recorded[rs.BEST_TRIAL_PREFIX + rs.M_HEADLINE_VAL] == pytest.approx(0.63)


def test_an_old_store_loads_as_a_current_one(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old, _ = planted(tmp_path / "old", OLD)
    new, _ = planted(tmp_path / "new", {k: k for k in OLD})
    columns = [rs.P_LOSS, rs.P_SEED, rs.M_HEADLINE, rs.M_HEADLINE_VAL, rs.M_FINAL_VAL_KNN]
    frames = [load_study("keys", uri)[columns].sort_values([rs.P_LOSS, rs.P_SEED], ignore_index=True) for uri in (old, new)]
    pd.testing.assert_frame_equal(*frames)
    assert sorted(frames[0][rs.M_HEADLINE]) == pytest.approx([0.55, 0.55, 0.62, 0.62])
    assert list(load_baselines("keys", old)[rs.M_HEADLINE]) == pytest.approx([0.2])
