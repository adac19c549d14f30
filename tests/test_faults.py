"""Injected faults: a worker killed mid-epoch, a NaN loss, a batch that does not fit in memory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from scripts import TINY_TRAIN, overrides, run_script  # tests/ helpers, via conftest

from trainables.integration.mlflow_search import search_runs
from trainables.run.checkpoint import load_checkpoint
from trainables.spec import run_schema as rs


def runs(cwd: Path, kind: str) -> list:
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    return search_runs(client, {rs.KIND: kind})


TRAIN = [*TINY_TRAIN, "--head", "mlp", "--epochs", "3", "--optimizer", "sgd", "--lr", "0.1", "--run-name", "r", "--max-failures", "1"]


@pytest.mark.slow
def test_worker_killed_mid_epoch_resumes_to_the_same_parameters(tmp_path: Path) -> None:
    clean, faulty = tmp_path / "clean", tmp_path / "faulty"
    clean.mkdir(), faulty.mkdir()
    run_script("study/train.py", TRAIN, clean)
    run_script("study/train.py", TRAIN, faulty, env={"NCE_FAULT": f"kill:epoch=2:step=1:once={tmp_path / 'killed-once'}"})
    assert (tmp_path / "killed-once").exists()  # the worker really was killed
    [run_] = runs(faulty, rs.KIND_PRETRAIN)  # one MLflow run, not two
    assert run_.info.status == "FINISHED"
    steps = sorted(m.step for m in MlflowClient(f"sqlite:///{faulty / 'mlflow.db'}").get_metric_history(run_.info.run_id, rs.M_TRAIN_LOSS))
    assert steps == [1, 2, 3]  # no epoch duplicated or missing
    a = load_checkpoint(clean / "checkpoints" / "r" / "epoch_00003")["model"]
    b = load_checkpoint(faulty / "checkpoints" / "r" / "epoch_00003")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-7, msg=key)


@pytest.mark.slow
def test_nan_and_out_of_memory_trials_fail_with_reasons_and_the_study_goes_on(tmp_path: Path) -> None:
    faults = "nan:epoch=2:step=0:batch=64:seed=1;memcap:mb=60:batch=512:seed=0"
    settings = overrides("loss=[infonce]", "batch_size=[64,512]", "seeds=2", "epochs=2", "n_save_epochs=1", "eval.mode=knn")
    done = run_script("study/run_sweep.py", ["--preset", "quickstart", "--name", "faults", *settings], tmp_path, env={"NCE_FAULT": faults})
    by_trial = {(r.data.params["batch_size"], r.data.params["seed"]): r for r in runs(tmp_path, rs.KIND_PRETRAIN)}
    assert len(by_trial) == 4
    nan, oom = by_trial[("64", "1")], by_trial[("512", "0")]
    assert nan.info.status == "FAILED" and nan.data.tags[rs.STATUS] == rs.STATUS_FAILED
    assert "loss became nan at epoch 2, step 0" in nan.data.tags[rs.FAILURE_REASON]
    assert oom.info.status == "FAILED" and "out of memory at batch_size=512" in oom.data.tags[rs.FAILURE_REASON]
    assert "use more workers" in oom.data.tags[rs.FAILURE_REASON]
    for key in (("64", "0"), ("512", "1")):  # the other trials went on
        assert by_trial[key].info.status == "FINISHED" and by_trial[key].data.tags[rs.STATUS] == rs.STATUS_COMPLETED
    nan_trial = next((tmp_path / "nce_runs" / "faults").glob(f"*{nan.data.tags[rs.TRIAL_ID]}*"))
    assert list(nan_trial.glob("checkpoint_*/state.pt"))  # its last good checkpoint (epoch 1) is kept
    assert "Excluded" in done.stdout and "2 failed" in done.stdout
