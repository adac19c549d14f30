"""A study and a run own their names: a claim held by one driver at a time, across threads and
processes, and a name in use (a folder, an MLflow run) refused before anything is written, unless
``--replace`` archives it. None of these tests starts Ray: reaching ``ray.init`` fails them."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from study import run_sweep, train
from study.owned_names import ARCHIVED_FROM, Claim, hold
from trainables.integration.tracking import create_run
from trainables.spec import run_schema as rs
from trainables.spec.validation import ConfigError

REPO = Path(__file__).resolve().parents[1]
HOLDER = """
import sys
from pathlib import Path
from study.owned_names import hold
claim = hold(Path(sys.argv[1]), "name", "study")
print("claimed", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def no_start(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a refused name reached Ray")

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


@pytest.fixture
def store(tmp_path: Path) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # creates the store's tables
    return uri


def run(main: object, argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
        code = main(argv)  # type: ignore[operator]
    return code, out.getvalue()


def test_two_claims_in_the_same_instant_exactly_one_wins(tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "same"
    start = threading.Barrier(8)
    won: list[Claim] = []
    lost: list[str] = []

    def claim() -> None:
        start.wait()
        try:
            won.append(hold(folder, "name", "study"))
        except ConfigError as err:
            lost.append(str(err))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 7, (won, lost)
    assert all("in use right now" in m and "same" in m for m in lost)
    won[0].release()
    hold(folder, "name", "study").release()  # released: the name can be claimed again


def test_a_claim_of_another_process_is_refused_and_dies_with_it(tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "busy"
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "claimed"
        with pytest.raises(ConfigError) as err:
            hold(folder, "name", "study")
        assert f"pid {child.pid}" in str(err.value)
    finally:
        child.kill()  # a crash: the claim must not outlive the process
        child.wait()
    hold(folder, "name", "study").release()


def sweep_args(storage: Path, uri: str, *extra: str) -> list[str]:
    return ["--preset", "quickstart", "--storage-path", str(storage), "--tracking-uri", uri, *extra]


def test_a_finished_study_name_is_refused_and_its_files_are_unchanged(tmp_path: Path, store: str, no_start: None) -> None:
    storage = tmp_path / "nce_runs"
    (storage / "done").mkdir(parents=True)
    plan = '{"preset": "quickstart", "overrides": {}, "mlflow_run_id": "abc"}'
    (storage / "done" / "study.json").write_text(plan)
    code, output = run(run_sweep.main, sweep_args(storage, store, "--name", "done"))
    assert code == 2, output
    assert "Traceback" not in output
    assert "study done exists" in output and "--resume done" in output and "--replace" in output and "--name" in output
    assert (storage / "done" / "study.json").read_text() == plan
    assert sorted(p.name for p in storage.iterdir()) == [".done.lock", "done"]


def test_a_study_name_recorded_in_mlflow_is_refused_without_its_folder(tmp_path: Path, store: str, no_start: None) -> None:
    run_id = create_run(store, "nce-study", run_name="elsewhere", params={}, tags={rs.KIND: rs.KIND_STUDY, rs.STUDY: "elsewhere"})
    code, output = run(run_sweep.main, sweep_args(tmp_path / "nce_runs", store, "--name", "elsewhere"))
    assert code == 2 and run_id in output and "--resume elsewhere" in output, output
    assert len(MlflowClient(store).search_runs([MlflowClient(store).get_experiment_by_name("nce-study").experiment_id])) == 1


def test_resume_of_a_study_whose_driver_runs_is_refused(tmp_path: Path, store: str, no_start: None) -> None:
    storage = tmp_path / "nce_runs"
    (storage / "live").mkdir(parents=True)
    (storage / "live" / "study.json").write_text('{"preset": "quickstart", "overrides": {}, "mlflow_run_id": "abc"}')
    running = hold(storage / "live", "name", "study")
    try:
        code, output = run(run_sweep.main, ["--resume", "live", "--storage-path", str(storage), "--tracking-uri", store])
    finally:
        running.release()
    assert code == 2 and "live is in use right now" in output, output


def test_replace_archives_the_old_folder_and_renames_its_runs(tmp_path: Path, store: str) -> None:
    storage = tmp_path / "nce_runs"
    (storage / "old").mkdir(parents=True)
    (storage / "old" / "study.json").write_text("{}")
    study = create_run(store, "nce-study", run_name="old", params={}, tags={rs.KIND: rs.KIND_STUDY, rs.STUDY: "old"})
    trial = create_run(store, "nce-study", run_name="t1", params={}, tags={rs.KIND: rs.KIND_PRETRAIN, rs.STUDY: "old"})
    other = create_run(store, "nce-study", run_name="x", params={}, tags={rs.KIND: rs.KIND_STUDY, rs.STUDY: "older"})
    args = run_sweep.build_parser().parse_args(sweep_args(storage, store, "--name", "old", "--replace"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        claim = run_sweep.own_study(args, "old", store)
    claim.release()
    archived = [p for p in storage.iterdir() if p.name.startswith("old.replaced-")]
    assert len(archived) == 1 and (archived[0] / "study.json").read_text() == "{}" and not (storage / "old").exists()
    assert archived[0].name in out.getvalue() and "2 MLflow runs renamed" in out.getvalue()
    client = MlflowClient(store)
    for run_id in (study, trial):
        tags = client.get_run(run_id).data.tags
        assert tags[rs.STUDY] == archived[0].name and tags[ARCHIVED_FROM] == "old"
    assert client.get_run(study).info.run_name == archived[0].name
    assert client.get_run(other).data.tags[rs.STUDY] == "older"  # a name that only starts alike is left alone


def train_args(save_dir: Path, uri: str, *extra: str) -> list[str]:
    return ["--dataset", "digits", "--backbone", "small", "--epochs", "1", "--save_dir", str(save_dir), "--tracking_uri", uri, *extra]


def test_a_finished_run_name_is_refused_and_its_checkpoint_kept(tmp_path: Path, store: str, no_start: None) -> None:
    save_dir = tmp_path / "checkpoints"
    (save_dir / "done" / "epoch_00001").mkdir(parents=True)
    (save_dir / "done" / "epoch_00001" / "state.pt").write_bytes(b"weights")
    code, output = run(train.main, train_args(save_dir, store, "--run_name", "done"))
    assert code == 2 and "Traceback" not in output, output
    assert "run done exists" in output and "--resume done" in output and "--run_name" in output and "--replace" in output
    assert (save_dir / "done" / "epoch_00001" / "state.pt").read_bytes() == b"weights"


def test_a_run_name_taken_by_a_running_train_is_refused(tmp_path: Path, store: str, no_start: None) -> None:
    save_dir = tmp_path / "checkpoints"
    running = hold(save_dir / "busy", "run_name", "run")
    try:
        code, output = run(train.main, train_args(save_dir, store, "--run_name", "busy"))
    finally:
        running.release()
    assert code == 2 and "run busy is in use right now" in output, output
    assert not (save_dir / "busy").exists()


def test_a_run_name_recorded_in_mlflow_is_refused(tmp_path: Path, store: str, no_start: None) -> None:
    create_run(store, "nce", run_name="seen", params={}, tags={rs.KIND: rs.KIND_PRETRAIN, rs.TRAIN_RUN: "seen"})
    code, output = run(train.main, train_args(tmp_path / "checkpoints", store, "--run_name", "seen", "--experiment", "nce"))
    assert code == 2 and "MLflow run 'seen'" in output, output


@pytest.mark.slow
def test_two_sweep_drivers_of_one_name_started_together_make_one_study(tmp_path: Path) -> None:
    """The issue's probe: both drivers used to run, and the study's one trial became two MLflow runs."""
    import os

    from scripts import overrides  # tests/ helpers, via conftest

    from trainables.integration.mlflow_search import search_runs

    settings = overrides("loss=[infonce]", "epochs=1", "limit_train=128", "batch_size=[64]", "seeds=1", "knn_k=10", "eval.mode=knn")
    command = [sys.executable, str(REPO / "study/run_sweep.py"), "--preset", "quickstart", "--name", "same", *settings]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()  # the store's tables, made once: not the race under test
    drivers = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [d.communicate(timeout=600)[0] for d in drivers]
    codes = sorted(d.returncode for d in drivers)
    assert codes == [0, 2], [o[-2000:] for o in outputs]
    refused = next(o for d, o in zip(drivers, outputs) if d.returncode == 2)
    assert "same" in refused and ("in use right now" in refused or "study same exists" in refused) and "Traceback" not in refused
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(search_runs(client, {rs.STUDY: "same", rs.KIND: rs.KIND_STUDY})) == 1
    assert len(search_runs(client, {rs.STUDY: "same", rs.KIND: rs.KIND_PRETRAIN})) == 1
