"""Checkpoints are loaded without running code, and no secret reaches an MLflow run.

A malicious checkpoint carries a *valid* checksum, so that only ``weights_only`` loading stands
between it and code execution. The secrets are environment variables of the kinds the issue names
(``AWS_*``, ``MLFLOW_TRACKING_PASSWORD``, tokens) plus a password that appears only in a tracking URI.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow.tracking import MlflowClient

from study import linear_eval as linear_eval_cli
from trainables.integration.session import LocalSession
from trainables.integration.tracking import (
    create_run,
    end_run,
    pretrain_params,
    redact_secrets,
)
from trainables.run.checkpoint import (
    CHECKSUM_FILE,
    STATE_FILE,
    CorruptCheckpointError,
    UnsafeCheckpointError,
    load_checkpoint,
    load_latest_valid,
    save_checkpoint,
)
from trainables.run.epoch_end import EpochEnd
from trainables.run.pretrain import pretrain
from trainables.spec import run_schema as rs
from trainables.spec.pretrain_config import from_dict


class Payload:
    """Unpickling this runs ``exec``, which writes ``marker``: any code could run instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",)


def write_malicious_checkpoint(folder: Path, marker: Path, fmt: str) -> Path:
    """A checkpoint whose state.pt unpickles to ``exec``, with a checksum that matches it."""
    folder.mkdir(parents=True)
    if fmt == "torch":
        torch.save({"model": {"w": torch.zeros(3)}, "epoch": 9, "config": Payload(marker)}, folder / STATE_FILE)
    else:  # a bare pickle, which torch.load reads as its legacy format
        (folder / STATE_FILE).write_bytes(pickle.dumps({"epoch": 9, "config": Payload(marker)}, protocol=2))
    (folder / CHECKSUM_FILE).write_text(hashlib.sha256((folder / STATE_FILE).read_bytes()).hexdigest())
    return folder


@pytest.mark.parametrize("fmt", ["torch", "pickle"])
def test_a_malicious_pickle_with_a_valid_checksum_is_refused(tmp_path: Path, fmt: str) -> None:
    marker = tmp_path / "code-ran"
    folder = write_malicious_checkpoint(tmp_path / "epoch_00009", marker, fmt)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint(folder)
    message = str(err.value)
    assert str(folder) in message and "refused" in message and "exec" in message
    assert "weights_only=False" not in message  # torch's own message suggests it; ours must not
    assert not marker.exists()


def test_the_same_file_loaded_unprotected_would_run_code(tmp_path: Path) -> None:
    """What weights_only=True prevents: a plain torch.load executes the payload (in a child process)."""
    marker = tmp_path / "code-ran"
    folder = write_malicious_checkpoint(tmp_path / "epoch_00009", marker, "torch")
    load = f"import torch; torch.load({str(folder / STATE_FILE)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", load], check=True, capture_output=True, timeout=120)
    assert marker.read_text() == "code ran"


def test_resume_skips_a_malicious_checkpoint_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    marker = tmp_path / "code-ran"
    good = save_checkpoint({"model": {"w": torch.ones(3)}, "epoch": 1}, tmp_path / "epoch_00001")
    evil = write_malicious_checkpoint(tmp_path / "epoch_00002", marker, "torch")
    with caplog.at_level(logging.WARNING, logger="trainables.run.checkpoint"):
        found = load_latest_valid([good, evil])
    assert found is not None and found[1] == good and found[0]["epoch"] == 1
    assert any(str(evil) in r.getMessage() and "refused" in r.getMessage() for r in caplog.records)
    assert issubclass(UnsafeCheckpointError, CorruptCheckpointError) and not marker.exists()


def test_linear_eval_refuses_a_malicious_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "code-ran"
    evil = write_malicious_checkpoint(tmp_path / "checkpoints" / "run" / "epoch_00009", marker, "torch")
    assert linear_eval_cli.main(["--model_path", str(evil), "--mode", "knn"]) == 2
    assert "refused" in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "mlflow.db").exists()  # refused before any MLflow run was made


# --- secrets ----------------------------------------------------------------------------------

ENV_SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "aws-Sk3y-9fQ2mW7xL0pR4tV8",
    "MLFLOW_TRACKING_PASSWORD": "mlflow-Pw-4hJ8kD2sN6",
    "HF_TOKEN": "hf_T0kenZ5yB1cX3vQ7",
}
URI_PASSWORD = "uri-only-Pw-7Gh2Lk"  # in a tracking URI, in no environment variable
SECRETS = [*ENV_SECRETS.values(), URI_PASSWORD]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module (creating one costs seconds); each test makes its own runs."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV_SECRETS.items():
        monkeypatch.setenv(name, value)


def leaky_config(**extra: Any) -> dict[str, Any]:
    """A config that carries every secret in a field where it could leak."""
    return {
        "tracking_uri": f"http://alice:{URI_PASSWORD}@mlflow.internal:5000",
        "run_name": f"run-{ENV_SECRETS['HF_TOKEN']}",
        "tags": {"owner": "alice", "note": f"key {ENV_SECRETS['AWS_SECRET_ACCESS_KEY']}", "pw": ENV_SECRETS["MLFLOW_TRACKING_PASSWORD"]},
        "experiment": "secrets",
        "lr": 0.1,
        **extra,
    }


def leaks(texts: list[str]) -> list[str]:
    return [f"{secret!r} in {text[:120]!r}" for text in texts for secret in SECRETS if secret in text]


def test_no_secret_reaches_params_tags_or_the_failure_reason(store: str, secret_env: None) -> None:
    uri = store
    cfg = from_dict(leaky_config())
    run_id = create_run(
        uri, cfg.experiment, run_name=cfg.run_name or "", params=pretrain_params(cfg), tags=cfg.tags | {rs.KIND: rs.KIND_PRETRAIN}
    )
    end_run(
        uri,
        run_id,
        failed_reason=f"MlflowException: API request to {cfg.tracking_uri}/api/2.0/mlflow/runs/log-batch failed; token {ENV_SECRETS['HF_TOKEN']}",
    )
    run = MlflowClient(uri).get_run(run_id)
    texts = [*run.data.params.values(), *run.data.params, *run.data.tags.values(), *run.data.tags, run.info.run_name]
    assert leaks(texts) == []
    # What is not secret is still there, so the check above compares real values.
    assert run.data.params["lr"] == "0.1" and run.data.params["tracking_uri"] == "http://mlflow.internal:5000"
    assert run.data.tags["owner"] == "alice" and run.data.tags[rs.KIND] == rs.KIND_PRETRAIN
    assert "mlflow.internal:5000/api/2.0" in run.data.tags[rs.FAILURE_REASON]


def test_the_secret_check_would_catch_a_leak(store: str, tmp_path: Path, secret_env: None) -> None:
    """Written straight through MLflow, without the project's redaction, the same values do leak."""
    client = MlflowClient(store)
    run_id = client.create_run(client.create_experiment("raw", artifact_location=(tmp_path / "art").as_uri())).info.run_id
    for key, value in from_dict(leaky_config()).tags.items():
        client.set_tag(run_id, key, value)
    assert len(leaks(list(client.get_run(run_id).data.tags.values()))) == 2


def test_redacted_config_keeps_what_is_not_secret(secret_env: None) -> None:
    values = from_dict(leaky_config(data_dir="/data/cifar 10")).to_dict()
    clean = redact_secrets(values)
    assert leaks([repr(clean)]) == [] and leaks([repr(values)]) != []
    assert clean["tracking_uri"] == "http://mlflow.internal:5000" and clean["tags"]["owner"] == "alice"
    assert clean["data_dir"] == "/data/cifar 10" and clean["lr"] == 0.1
    from_dict(clean)  # still a valid config, e.g. for a resume


def artifact_texts(client: MlflowClient, run_id: str, into: Path) -> list[str]:
    """Every artifact file of the run: its raw bytes as text, and for a checkpoint its loaded values."""
    texts = []
    for path in Path(client.download_artifacts(run_id, "", str(into))).rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode("latin-1"))
            if path.name == STATE_FILE:
                with zipfile.ZipFile(path) as archive:
                    texts += [archive.read(name).decode("latin-1") for name in archive.namelist()]
                texts.append(repr(torch.load(path, weights_only=True)))
    return texts


def test_no_secret_reaches_the_run_artifacts(store: str, tmp_path: Path, secret_env: None) -> None:
    torch.set_num_threads(1)
    uri = store
    cfg = from_dict(
        leaky_config(
            dataset="digits",
            backbone="small",
            head="mlp",
            limit_train=128,
            batch_size=64,
            epochs=1,
            n_eval_epochs=1,
            knn_k=5,
        )
    )
    run_id = create_run(uri, cfg.experiment, run_name=cfg.run_name or "", params=pretrain_params(cfg), tags=cfg.tags)
    session = LocalSession(tmp_path / "checkpoints")
    pretrain(cfg, session, EpochEnd(cfg, session, run_id=run_id, tracking_uri=uri))
    client = MlflowClient(uri)
    assert [a.path for a in client.list_artifacts(run_id, "checkpoint")] == ["checkpoint/state.pt", "checkpoint/state.sha256"]
    texts = artifact_texts(client, run_id, tmp_path / "downloaded")
    assert any("mlflow.internal" in t for t in texts)  # the config is in there
    assert leaks(texts) == []


def test_the_artifact_scan_finds_a_planted_secret(store: str, tmp_path: Path, secret_env: None) -> None:
    """The scan itself can fail: a secret planted in an artifact is found."""
    uri = store
    run_id = create_run(uri, "scan", run_name="scan", params={}, tags={})
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "env.txt").write_text(os.environ["HF_TOKEN"])
    MlflowClient(uri).log_artifacts(run_id, str(folder), artifact_path="notes")
    assert len(leaks(artifact_texts(MlflowClient(uri), run_id, tmp_path / "downloaded"))) == 1


# --- a study folder is data ------------------------------------------------------------------------


@pytest.fixture
def sealed_study(tmp_path: Path) -> tuple[Path, str, str]:
    """(study folder, tracking URI, study run id) of a study whose Tune state was sealed, as the sweep does."""
    from study import state_seal
    from study.study_file import write_plan_file

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = create_run(uri, "nce-study", run_name="planted", params={}, tags={rs.KIND: rs.KIND_STUDY, rs.STUDY: "planted"})
    end_run(uri, run_id)
    folder = tmp_path / "nce_runs" / "planted"
    write_plan_file(folder, "quickstart", {}, run_id)
    (folder / "tuner.pkl").write_bytes(pickle.dumps({"tuner": "state"}))
    (folder / "experiment_state-2026.json").write_text('{"trial_data": []}')
    (folder / "run_trial_0").mkdir()
    (folder / "run_trial_0" / "params.pkl").write_bytes(pickle.dumps({"lr": 0.1}))
    state_seal.seal(uri, run_id, folder, state_seal.read_state(folder))
    return folder, uri, run_id


def resume(folder: Path, uri: str, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    from study import run_sweep

    code = run_sweep.main(["--resume", folder.name, "--storage-path", str(folder.parent), "--tracking-uri", uri])
    return code, capsys.readouterr().err


def files_below(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` but the sealed copies: what a restore would read (written here without the code under test)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file() and "sealed" not in p.parts}


PLANTED = ["tuner.pkl", "run_trial_0/params.pkl", "searcher-state-2026.pkl"]


@pytest.mark.parametrize("where", PLANTED)
def test_a_planted_pickle_is_set_aside_and_the_sealed_state_put_back(
    sealed_study: tuple[Path, str, str], where: str, tmp_path: Path
) -> None:
    from study import state_seal

    folder, uri, run_id = sealed_study
    before = files_below(folder)
    marker = tmp_path / "pwned"
    planted = pickle.dumps(Payload(marker))
    (folder / where).write_bytes(planted)
    note = state_seal.check(uri, run_id, folder)
    assert note is not None and where in note and "put back" in note
    assert files_below(folder) == before  # exactly the sealed files, the planted one gone
    assert not marker.exists()
    (aside,) = (folder / "sealed").glob("set-aside-*.zip")
    with zipfile.ZipFile(aside) as kept:
        assert kept.namelist() == [where] and kept.read(where) == planted  # nothing is lost: the altered file is kept, unread
    assert state_seal.check(uri, run_id, folder) is None  # put back, the folder is the sealed one


@pytest.mark.parametrize("where", PLANTED)
@pytest.mark.parametrize("copy", ["altered", "missing"])
def test_a_planted_pickle_without_an_intact_sealed_copy_is_refused_without_running(
    sealed_study: tuple[Path, str, str],
    where: str,
    copy: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray

    folder, uri, run_id = sealed_study
    marker = tmp_path / "pwned"
    (folder / where).write_bytes(pickle.dumps(Payload(marker)))
    (sealed,) = (folder / "sealed").glob("*.zip")
    if copy == "missing":
        sealed.unlink()
    else:  # whoever can write the study folder can write the copy too
        with zipfile.ZipFile(sealed) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
        with zipfile.ZipFile(sealed, "w") as archive:
            for name, data in (members | {where: pickle.dumps(Payload(marker))}).items():
                archive.writestr(name, data)
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started on a tampered study"))
    code, err = resume(folder, uri, capsys)
    assert code == 2 and str(folder) in err and "not those the study wrote" in err and "missing or altered" in err, err
    assert not marker.exists()
    assert MlflowClient(uri).get_run(run_id).info.status == "FINISHED"  # the study run is not reopened


def test_the_planted_pickle_would_run_code_if_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(Payload(marker)))  # noqa: S301 - the point of the test
    assert marker.read_text() == "code ran"


def test_an_untouched_sealed_study_passes_and_an_unrecorded_one_is_refused(sealed_study: tuple[Path, str, str]) -> None:
    from study import state_seal
    from trainables.spec.validation import ConfigError

    folder, uri, run_id = sealed_study
    assert state_seal.check(uri, run_id, folder) is None  # what the sweep sealed is what it finds
    MlflowClient(uri).delete_tag(run_id, state_seal.SEAL_TAG)
    with pytest.raises(ConfigError, match="records no digest"):
        state_seal.check(uri, run_id, folder)
    with pytest.raises(ConfigError, match="no MLflow study run"):
        state_seal.check(uri, None, folder)


# Tune writes its state into a staging folder, then a background thread uploads it into the study
# folder; a driver can die at any point of that. Each case: what the study folder holds when it dies.
UPLOADS = {
    "whole": lambda staged, older: staged,
    "not yet begun": lambda staged, older: older,
    "half done": lambda staged, older: older | {"experiment_state-1.json": staged["experiment_state-1.json"][:9]},
    "newer than the seal": lambda staged, older: staged | {"experiment_state-1.json": b'{"v": 3}', "t_2/params.pkl": b"3"},
}


@pytest.mark.parametrize("upload", UPLOADS)
def test_a_driver_killed_at_any_point_of_tunes_save_leaves_a_state_that_resumes(tmp_path: Path, upload: str) -> None:
    from types import SimpleNamespace

    from study import state_seal

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = create_run(uri, "nce-study", run_name="killed", params={}, tags={rs.KIND: rs.KIND_STUDY})
    folder, staging = tmp_path / "study", tmp_path / "staging"
    trial = SimpleNamespace(local_experiment_path=str(staging))
    seal = state_seal.SealCallback(uri, run_id, folder)

    def write(root: Path, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)

    write(folder, {"tuner.pkl": b"tuner"})
    first = {"experiment_state-1.json": b'{"v": 1}', "t_0/params.pkl": b"0"}
    write(staging, first)
    seal.on_step_end(1, [trial])
    write(folder, first)  # uploaded
    second = first | {"experiment_state-1.json": b'{"v": 2}', "t_1/params.pkl": b"1"}
    write(staging, second)
    seal.on_experiment_end([trial])  # a step of Tune's loop after its save: the seal sees the staged state
    write(folder, UPLOADS[upload](second, first))  # ... and the driver dies during or after the upload
    note = state_seal.check(uri, run_id, folder)
    assert (note is None) == (upload == "whole")
    assert state_seal.read_state(folder) == second | {"tuner.pkl": b"tuner"}


def test_a_seal_cut_short_before_its_digest_is_recorded_keeps_the_previous_one(
    sealed_study: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from study import state_seal

    folder, uri, run_id = sealed_study
    before = files_below(folder)
    (folder / "experiment_state-2026.json").write_text('{"trial_data": [1]}')

    def killed(*args: Any) -> None:
        raise KeyboardInterrupt  # the driver dies between writing the new copy and recording its digest

    monkeypatch.setattr(MlflowClient, "set_tag", killed)
    with pytest.raises(KeyboardInterrupt):
        state_seal.seal(uri, run_id, folder, state_seal.read_state(folder))
    monkeypatch.undo()
    assert len(list((folder / "sealed").glob("*.zip"))) == 2
    assert "experiment_state-2026.json" in (state_seal.check(uri, run_id, folder) or "")
    assert files_below(folder) == before


def test_study_json_of_the_wrong_shape_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from study import run_sweep

    for text in ("[1, 2]", '{"overrides": {}}', "", '{"preset": 3, "overrides": {}, "mlflow_run_id": "x"}'):
        folder = tmp_path / "nce_runs" / "shape"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "study.json").write_text(text)
        assert run_sweep.main(["--resume", "shape", "--storage-path", str(tmp_path / "nce_runs")]) == 2
        assert str(folder / "study.json") in capsys.readouterr().err


def test_study_json_is_replaced_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that dies midway leaves the previous study.json whole (and no temporary file behind)."""
    from study.study_file import PLAN_FILE, read_plan_file, write_plan_file

    write_plan_file(tmp_path, "quickstart", {"epochs": 2}, "run-1")
    real_fsync = os.fsync

    def dying_fsync(fd: int) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", dying_fsync)
    with pytest.raises(OSError, match="disk gone"):
        write_plan_file(tmp_path, "tpe-lr", {"epochs": 9}, "run-2")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert read_plan_file(tmp_path / PLAN_FILE) == {"preset": "quickstart", "overrides": {"epochs": 2}, "mlflow_run_id": "run-1"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [PLAN_FILE]


@pytest.mark.parametrize("name", ["../x", "../../etc", "/abs", "a/b", "..", "link"])
def test_no_name_escapes_its_root(tmp_path: Path, name: str) -> None:
    from trainables.spec.files import under
    from trainables.spec.validation import ConfigError

    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    with pytest.raises(ConfigError, match="resume="):
        under(tmp_path / "root", name, "resume")
    assert under(tmp_path / "root", "study-1.b_2", "resume") == (tmp_path / "root" / "study-1.b_2").resolve()


def test_a_truncated_checkpoint_with_a_matching_checksum_falls_back_naming_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = save_checkpoint({"epoch": 1, "w": torch.zeros(3)}, tmp_path / "epoch_00001")
    bad = save_checkpoint({"epoch": 2, "w": torch.ones(3)}, tmp_path / "epoch_00002")
    data = (bad / STATE_FILE).read_bytes()
    (bad / STATE_FILE).write_bytes(data[: len(data) // 2])
    (bad / CHECKSUM_FILE).write_text(hashlib.sha256((bad / STATE_FILE).read_bytes()).hexdigest())  # the checksum agrees
    with pytest.raises(CorruptCheckpointError, match="cannot be read"):
        load_checkpoint(bad)
    with caplog.at_level(logging.WARNING):
        state, found = load_latest_valid([good, bad])
    assert found == good and state["epoch"] == 1
    assert str(bad) in caplog.text and "falling back" in caplog.text


def test_the_seal_checks_less_often_as_a_check_grows_dearer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from study import state_seal

    clock = [100.0]
    cost = [0.001]  # seconds one signature takes: a study folder with more trials costs more
    checks, records = [], []

    def signature(paths: dict) -> tuple:
        checks.append(clock[0])
        clock[0] += cost[0]
        return (len(checks),)  # always changed: every check records

    monkeypatch.setattr(state_seal.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(state_seal, "signature", signature)
    monkeypatch.setattr(state_seal, "seal", lambda *args: records.append(args))
    seal = state_seal.SealCallback("uri", "run", tmp_path)

    def steps(seconds: float, every: float = 0.01) -> int:
        before, end = len(checks), clock[0] + seconds
        while clock[0] < end:
            seal.on_step_end(0, [])
            clock[0] += every
        return len(checks) - before

    cheap = steps(10.0)
    assert 18 <= cheap <= 20  # every CHECK_EVERY_S (0.5 s) while a check is cheap
    cost[0] = 0.1
    steps(1.0)
    dear = steps(20.0)
    assert 9 <= dear <= 10  # every 20 x 0.1 s = 2 s: at most 5 % of the driver's time
    assert len(records) == len(checks)
    seal.on_experiment_end([])  # the last state is always sealed, however recent the last check
    assert len(checks) == len(records) and clock[0] - checks[-1] < 0.2
