"""A real MLflow tracking server that is unreachable at start, or goes away mid-run and comes back.

The server is ``mlflow server`` from the project's environment, on a free loopback port, with a
SQLite store and proxied artifacts in a temporary folder; the test stops it (SIGKILL, as a crash
would) and starts it again on the same port and store.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from mlflow_server import Server, free_port

from trainables.integration.tracking import (
    LOGGER_HTTP_BOUNDS,
    RunLogger,
    TrackingUnavailableError,
    bounded_http,
    check_reachable,
    create_run,
)
from trainables.spec import run_schema as rs

PASSWORD = "pw-Zq8T3nV1"  # in the tracking URI only: MLflow sends it as basic auth, the test server ignores it


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("mlflow-server"))
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
def server(started: Server) -> Server:
    """The module's server, running (started again if a failed test left it stopped)."""
    if started.process is None:
        started.start()
    return started


@pytest.fixture(autouse=True)
def bounded_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every MLflow call of these tests gives up within seconds, so that a failure cannot hang the suite."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


@pytest.fixture
def unbounded_env(monkeypatch: pytest.MonkeyPatch, bounded_client: None) -> None:
    """MLflow's own defaults for its HTTP client: what a training process gets unless someone sets them."""
    for name in LOGGER_HTTP_BOUNDS:
        monkeypatch.delenv(name, raising=False)


def epoch_metrics(epoch: int) -> dict[str, float]:
    return {rs.M_TRAIN_LOSS: 5.0 - epoch / 10, rs.M_POS_PROB: epoch / 100}


def test_a_server_that_goes_away_mid_run_loses_no_epoch(
    server: Server, unbounded_env: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uri = f"http://alice:{PASSWORD}@127.0.0.1:{server.port}"
    check_reachable(uri)  # credentials in the URI do not stop the check from reaching the server
    run_id = create_run(uri, "nce-study", run_name="server-goes-away", params={"lr": 0.1}, tags={rs.KIND: rs.KIND_PRETRAIN})
    logger = RunLogger(uri, run_id)
    for epoch in (1, 2):
        logger.log_epoch(epoch, epoch_metrics(epoch))
    assert logger.pending == []

    server.stop()
    checkpoint = tmp_path / "nce-ckpt-final"
    checkpoint.mkdir()
    (checkpoint / "state.pt").write_bytes(b"weights of epoch 5")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="trainables.integration.tracking"):
        for epoch in (3, 4, 5):
            logger.log_epoch(epoch, epoch_metrics(epoch))  # must neither raise nor stall the training loop
        logger.log_artifacts(checkpoint, "checkpoint")
    stalled = time.monotonic() - started
    shutil.rmtree(checkpoint)  # as the loop's TemporaryDirectory does right after
    assert stalled < 30, f"training stalled {stalled:.0f} s on a stopped server"
    assert sorted({m.step for m in logger.pending}) == [3, 4, 5] and len(logger.pending) == 6
    assert [artifact_path for _, artifact_path in logger.pending_artifacts] == ["checkpoint"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "trainables.integration.tracking"]
    assert len(warnings) == 4 and all("kept for retry" in w for w in warnings), warnings
    assert not any(PASSWORD in r.getMessage() for r in caplog.records)  # the URI's password is in no log line

    server.start()
    logger.flush_with_retry(deadline_s=60, wait_s=0.5)
    logger.log_epoch(6, epoch_metrics(6))
    logger.log_final({rs.M_FINAL_VAL_KNN: 0.42})
    assert logger.pending == [] and logger.pending_artifacts == []

    client = MlflowClient(uri)
    for key in (rs.M_TRAIN_LOSS, rs.M_POS_PROB):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        assert history == [(epoch, epoch_metrics(epoch)[key]) for epoch in range(1, 7)], key  # every epoch, exactly once
    run = client.get_run(run_id)
    assert run.data.metrics[rs.M_FINAL_VAL_KNN] == 0.42 and run.data.params["lr"] == "0.1"
    assert [a.path for a in client.list_artifacts(run_id, "checkpoint")] == ["checkpoint/state.pt"]
    downloaded = client.download_artifacts(run_id, "checkpoint/state.pt", str(tmp_path))
    assert Path(downloaded).read_bytes() == b"weights of epoch 5"


def test_a_live_server_passes_the_store_probe_with_credentials_in_the_uri(server: Server) -> None:
    """The driver's probe of the API (study/preflight.py) accepts a working server; it refuses erroring ones
    (tests/test_preflight.py)."""
    from study.preflight import checked_store

    uri = f"http://alice:{PASSWORD}@127.0.0.1:{server.port}"
    assert checked_store(uri, "nce-study") == uri


def test_a_resent_batch_is_stored_once(server: Server) -> None:
    """A write that reached the server but whose answer was lost is sent again: it must not duplicate."""
    run_id = create_run(server.plain_uri, "nce-study", run_name="resent", params={}, tags={})
    logger = RunLogger(server.plain_uri, run_id)
    sent = [Metric(rs.M_TRAIN_LOSS, 1.5, 1_700_000_000_000, 1)]
    logger.pending = list(sent)
    logger.flush()
    logger.pending = list(sent)  # as if the first answer never came back
    logger.flush()
    assert [(m.step, m.value) for m in MlflowClient(server.plain_uri).get_metric_history(run_id, rs.M_TRAIN_LOSS)] == [(1, 1.5)]


def test_mlflow_alone_would_stall_on_a_stopped_server_but_logger_writes_do_not(unbounded_env: None) -> None:
    """MLflow retries a refused request for minutes by default; RunLogger's writes give up at once."""
    client = MlflowClient(f"http://127.0.0.1:{free_port()}")  # nothing listens there

    def write() -> None:
        try:
            client.log_batch("0" * 32, metrics=[Metric("m", 1.0, 0, 1)])
        except Exception:
            pass

    unbounded = threading.Thread(target=write, daemon=True)  # left to give up in the background
    unbounded.start()
    unbounded.join(timeout=4)
    assert unbounded.is_alive(), "MLflow's default client gave up within 4 s"
    started = time.monotonic()
    with bounded_http(), pytest.raises(Exception, match="Connection refused|Max retries"):
        client.log_batch("0" * 32, metrics=[Metric("m", 1.0, 0, 1)])
    assert time.monotonic() - started < 4
    assert all(name not in os.environ for name in LOGGER_HTTP_BOUNDS)  # the bounds were lifted again


def test_bounds_set_in_the_environment_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "77")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    with bounded_http():
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77"
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == LOGGER_HTTP_BOUNDS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77" and "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ


def test_unreachable_server_at_start_names_the_uri() -> None:
    port = free_port()
    with pytest.raises(TrackingUnavailableError) as err:
        check_reachable(f"http://127.0.0.1:{port}", timeout_s=2)
    message = str(err.value)
    assert f"tracking_uri='http://127.0.0.1:{port}'" in message and "does not answer" in message and "mlflow server" in message


def test_credentials_in_the_uri_are_redacted_and_do_not_change_the_check() -> None:
    port = free_port()
    with pytest.raises(TrackingUnavailableError) as plain:
        check_reachable(f"http://127.0.0.1:{port}", timeout_s=2)
    with pytest.raises(TrackingUnavailableError) as with_credentials:
        check_reachable(f"http://alice:{PASSWORD}@127.0.0.1:{port}", timeout_s=2)
    assert PASSWORD not in str(with_credentials.value) and "alice" not in str(with_credentials.value)
    assert str(with_credentials.value) == str(plain.value)  # the same check, not a failed host lookup of "alice:..."


def test_local_stores_need_no_server(tmp_path: Path) -> None:
    check_reachable(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert not (tmp_path / "mlflow.db").exists()
