"""study/train.py under Ray Train (2 gloo workers) and study/linear_eval.py on its checkpoint."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from scripts import (  # tests/ helpers, via conftest
    REPO,
    TINY_TRAIN,
    overrides,
    run_script,
)

from trainables.integration.mlflow_search import search_runs
from trainables.spec import run_schema as rs


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("train")
    done = run_script("study/train.py", [*TINY_TRAIN, "--epochs", "2", "--run-name", "digits-ddp", "--loss", "flatnce"], cwd, timeout=300)
    (cwd / "train.log").write_text(done.stdout + done.stderr)
    (cwd / "train.out").write_text(done.stdout)  # what the command itself printed; Ray forwards the workers' lines to stderr
    return cwd


def runs_of_kind(tracking_uri: str, kind: str) -> list:
    return search_runs(MlflowClient(tracking_uri), {rs.KIND: kind})


def test_train_under_ray_train_logs_one_run_with_every_epoch_once(trained: Path) -> None:
    uri = f"sqlite:///{trained / 'mlflow.db'}"
    [run_] = runs_of_kind(uri, rs.KIND_PRETRAIN)  # 2 DDP workers, exactly one run
    assert run_.info.status == "FINISHED"
    params = run_.data.params
    assert (params["loss"], params["world_size"], params["views_per_image"], params["device_type"]) == ("flatnce", "2", "2", "cpu")
    assert params[rs.P_LR_EFFECTIVE] == params[rs.P_LR] and "version_torch" in params and run_.data.tags[rs.CODE_VERSION]
    history = MlflowClient(uri).get_metric_history(run_.info.run_id, rs.M_TRAIN_LOSS)
    assert sorted(m.step for m in history) == [1, 2]
    assert 0.1 < run_.data.metrics[rs.M_FINAL_VAL_KNN] <= 1.0
    artifacts = [a.path for a in MlflowClient(uri).list_artifacts(run_.info.run_id, "checkpoint")]
    assert "checkpoint/state.pt" in artifacts and "checkpoint/state.sha256" in artifacts
    assert (trained / "checkpoints" / "digits-ddp" / "epoch_00002" / "state.pt").is_file()


def test_linear_eval_writes_a_child_run_of_the_pretraining_run(trained: Path) -> None:
    args = ["--model_path", "checkpoints/digits-ddp/epoch_00002", "--epochs", "5", "--batch_size", "64"]
    done = run_script("study/linear_eval.py", args, trained, timeout=300)
    assert "test accuracy" in done.stdout
    uri = f"sqlite:///{trained / 'mlflow.db'}"
    [pre] = runs_of_kind(uri, rs.KIND_PRETRAIN)
    [ev] = runs_of_kind(uri, rs.KIND_EVAL)
    assert ev.data.tags[rs.PARENT] == pre.info.run_id and ev.data.params[rs.P_PRETRAIN_RUN_ID] == pre.info.run_id
    assert ev.info.status == "FINISHED" and ev.info.experiment_id == pre.info.experiment_id
    metrics = ev.data.metrics
    assert 0.1 < metrics[rs.M_TEST_AT_BEST_VAL] <= metrics[rs.M_MAX_TEST_OVER_EPOCHS] <= 1.0
    assert sorted(m.step for m in MlflowClient(uri).get_metric_history(ev.info.run_id, rs.M_EVAL_VAL_ACC)) == [1, 2, 3, 4, 5]
    assert list((trained / "logs").glob("linear-*.json"))


def test_train_on_a_real_cifar10_subset(tmp_path: Path, cifar10_root: Path) -> None:
    args = ["--dataset", "cifar10", "--data-dir", str(cifar10_root), "--limit-train", "512", "--backbone", "small", "--epochs", "1"]
    done = run_script("study/train.py", [*args, "--batch_size", "128", "--run-name", "cifar-subset"], tmp_path, timeout=300)
    assert "validation kNN accuracy" in done.stdout
    [run_] = runs_of_kind(f"sqlite:///{tmp_path / 'mlflow.db'}", rs.KIND_PRETRAIN)
    assert run_.info.status == "FINISHED" and run_.data.params["limit_train"] == "512"


def test_a_successful_train_run_prints_no_traceback(trained: Path) -> None:
    log = (trained / "train.log").read_text()
    assert "PlacementGroupCleaner" not in log and "multiple active Ray instances" not in log, log[-3000:]
    assert not any(line.startswith("Traceback") for line in log.splitlines()), log[-3000:]  # none from the driver itself
    out = (trained / "train.out").read_text()
    assert out.rstrip().splitlines()[-1].startswith("  resume with:"), out[-3000:]  # the summary comes last


@pytest.mark.slow
def test_sigterm_to_the_sweep_driver_ends_running_runs_killed_and_resume_continues(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = overrides("loss=[infonce,flatnce]", "epochs=3", "limit_train=256", "batch_size=[64]", "seeds=1", "knn_k=10", "eval.mode=knn")
    args = [str(REPO / "study/run_sweep.py"), "--preset", "quickstart", "--name", "stopped", *settings, "--max-concurrent", "1"]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    driver = subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not _running_trials(tmp_path / "mlflow.db"):
        assert driver.poll() is None and time.monotonic() < deadline, "the study ended before a trial was running"
        time.sleep(1)
    driver.send_signal(signal.SIGTERM)
    output, _ = driver.communicate(timeout=180)
    assert driver.returncode == 128 + signal.SIGTERM, output[-3000:]
    runs = search_runs(MlflowClient(uri), {rs.STUDY: "stopped"})
    assert runs and all(r.info.status != "RUNNING" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
    killed = [r for r in runs if r.info.status == "KILLED"]
    assert killed and all("SIGTERM" in r.data.tags[rs.FAILURE_REASON] for r in killed)
    resumed = run_script("study/run_sweep.py", ["--resume", "stopped"], tmp_path, timeout=600)
    trials = search_runs(MlflowClient(uri), {rs.STUDY: "stopped", rs.KIND: rs.KIND_PRETRAIN})
    assert sorted(r.data.params["loss"] for r in trials) == ["flatnce", "infonce"], resumed.stdout[-2000:]
    assert all(r.info.status == "FINISHED" for r in trials), [(r.info.run_name, r.info.status) for r in trials]


def _running_trials(db: Path) -> int:
    """Pretraining runs RUNNING in the store, read over a read-only connection.

    An MlflowClient here would race the driver's own creation of the tables: both run MLflow's
    migrations, and the loser fails (alembic: 'expected to match one row'). A read-only
    connection cannot migrate; until the tables exist it sees none.
    """
    query = "SELECT count(*) FROM runs JOIN tags USING (run_uuid) WHERE status = 'RUNNING' AND key = ? AND value = ?"
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as db_:
            return db_.execute(query, (rs.KIND, rs.KIND_PRETRAIN)).fetchone()[0]
    except sqlite3.OperationalError:  # no file or no tables yet, or the driver holds the write lock
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_train_ends_its_run_killed_and_prints_the_resume_command(tmp_path: Path, signum: int) -> None:
    """Ray Train's own SIGINT handler (abort, exit 1) would end the run FAILED with "SystemExit: 1"."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [str(REPO / "study/train.py"), *TINY_TRAIN, "--epochs", "50", "--run-name", "stopped"]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    driver = subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not _running_trials(tmp_path / "mlflow.db"):
        assert driver.poll() is None and time.monotonic() < deadline, "the run ended before it was running"
        time.sleep(1)
    driver.send_signal(signum)
    output, _ = driver.communicate(timeout=180)
    assert driver.returncode == 128 + signum, output[-3000:]
    [run_] = search_runs(MlflowClient(uri), {rs.KIND: rs.KIND_PRETRAIN})
    assert run_.info.status == "KILLED", output[-3000:]
    assert run_.data.tags[rs.FAILURE_REASON] == f"stopped by {signal.Signals(signum).name} to the driver"
    assert "resume it with: python study/train.py --resume stopped" in output
    assert not any(line.startswith("Traceback") for line in output.splitlines()), output[-3000:]
