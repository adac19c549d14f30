"""study/run_sweep.py: dry runs, an Optuna search, and a study resumed after its driver is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from study import run_sweep
from trainables import run_schema as rs
from trainables.mlflow_search import search_runs

REPO = Path(__file__).resolve().parents[1]
SWEEP = str(REPO / "study" / "run_sweep.py")
SMALL = ["--set", "epochs=2", "--set", "limit_train=256", "--set", "batch_size=[64]", "--set", "knn_k=10", "--set", "eval.mode=knn"]


def sweep(args: list[str], cwd: Path, timeout: int = 420) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, SWEEP, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done


def trial_runs(cwd: Path, study: str) -> list:
    return search_runs(MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}"), {rs.STUDY: study, rs.KIND: rs.KIND_PRETRAIN})


def test_dry_run_of_the_flatnce_grid_prints_36_trials(capsys: pytest.CaptureFixture) -> None:
    assert run_sweep.main(["--preset", "flatnce-batch-size", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "36 trials" in out
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit() and ("infonce" in line or "flatnce" in line)]
    assert len(rows) == 36
    assert sum("flatnce" in r for r in rows) == 18 and sum(" 512 " in r for r in rows) == 6


def test_bad_input_is_rejected_before_any_trial(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cases = [
        (["--preset", "nope"], "preset='nope'"),
        (["--preset", "quickstart", "--set", "lossx=[infonce]"], "--set lossx"),
        (["--preset", "quickstart", "--set", "batch_size=[30]", "--set", "workers=4"], "batch_size=30 is not divisible by workers=4"),
        (["--preset", "quickstart", "--set", "loss=[simclr]"], "loss='simclr'"),
        (["--preset", "cifar10-cpu", "--set", f"data_dir={tmp_path / 'none'}"], "--download"),
        (["--resume", "never-ran"], "resume='never-ran'"),
    ]
    for args, message in cases:
        assert run_sweep.main(args) == 2, args
        assert message in capsys.readouterr().err, args
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "nce_runs").exists()


def test_tpe_proposes_conditional_parameters_only_for_their_losses(tmp_path: Path) -> None:
    sweep(["--preset", "tpe-lr", "--name", "tpe", "--set", "num_samples=4", "--set", "dataset=digits", "--set", "backbone=small",
           "--set", "gpu=false", "--set", "epochs=1", "--set", "limit_train=256", "--set", "knn_k=10", "--set", "eval.mode=knn"], tmp_path)
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "nce_runs" / "tpe" / "optuna.journal")))
    trials = optuna.load_study(study_name="tpe", storage=journal).trials
    assert len(trials) == 4
    own = {"d_pos": {"attentionnce"}, "d_neg": {"attentionnce"}, "tau_plus": {"dcl", "hcl"}, "beta": {"hcl"}}
    for trial in trials:
        for name, losses in own.items():
            assert (name in trial.params) == (trial.params["loss"] in losses), trial.params
        assert {"loss", "batch_size", "lr", "temperature"} <= set(trial.params)
    runs = trial_runs(tmp_path, "tpe")
    assert len(runs) == 4
    by_lr = sorted(float(r.data.params["lr"]) for r in runs)
    assert by_lr == pytest.approx(sorted(t.params["lr"] for t in trials))  # the trials ran what Optuna proposed


def wait_for(condition, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_killed_driver_resumes_with_each_trial_once(tmp_path: Path) -> None:
    args = ["--preset", "quickstart", "--name", "killed", "--set", "loss=[infonce,flatnce,dcl]", "--max-concurrent", "1", *SMALL]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    driver = subprocess.Popen([sys.executable, SWEEP, *args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # study.json is written once the MLflow store exists: polling earlier would race its creation.
        started = tmp_path / "nce_runs" / "killed" / "study.json"
        wait_for(lambda: started.exists() and any(r.info.status == "FINISHED" for r in trial_runs(tmp_path, "killed")), 300, "a first finished trial")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        driver.wait()
    before = {r.data.tags[rs.TRIAL_ID] for r in trial_runs(tmp_path, "killed") if r.info.status == "FINISHED"}
    assert 1 <= len(before) < 3
    done = sweep(["--resume", "killed"], tmp_path)
    runs = trial_runs(tmp_path, "killed")
    assert len(runs) == 3 and len({r.data.tags[rs.TRIAL_ID] for r in runs}) == 3  # each trial exactly once
    assert all(r.info.status == "FINISHED" and r.data.tags[rs.STATUS] == rs.STATUS_COMPLETED for r in runs)
    assert before <= {r.data.tags[rs.TRIAL_ID] for r in runs}
    for r in runs:  # no epoch logged twice, none missing
        steps = [m.step for m in MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_metric_history(r.info.run_id, rs.M_TRAIN_LOSS)]
        assert sorted(steps) == [1, 2], (r.data.tags[rs.TRIAL_ID], steps)
    assert "Accuracy vs batch size" in done.stdout
    # The resumed study's numbers are an uninterrupted study's: training is deterministic on CPU.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    sweep(["--preset", "quickstart", "--name", "killed", "--set", "loss=[infonce,flatnce,dcl]", *SMALL], fresh)
    table = lambda cwd: {r.data.params["loss"]: r.data.metrics[rs.M_FINAL_VAL_KNN] for r in trial_runs(cwd, "killed")}  # noqa: E731
    assert table(tmp_path) == table(fresh)
