"""MLflow runs: created once by a driver, written by world rank 0 only, ended with a status.

Runs are addressed by explicit ids, never through MLflow's in-process active-run stack, so
that DDP workers, restarted workers and sweep trials in other processes all write to the
one run the driver made (the duplicate-run complaints of the anchors' users).
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from trainables import run_schema as rs

log = logging.getLogger(__name__)
DEFAULT_STORE = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
SECRET_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL")


class TrackingUnavailableError(RuntimeError):
    """The tracking server cannot be reached; raised before any run or trial starts."""


def resolve_tracking_uri(uri: str | None) -> str:
    """The flag, else MLFLOW_TRACKING_URI, else a SQLite store in the working directory."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{Path.cwd() / DEFAULT_STORE}"


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, with the URI in the message, when an HTTP tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s).close()
    except (urllib.error.URLError, OSError) as err:
        raise TrackingUnavailableError(
            f"tracking_uri={redact_url(uri)!r} does not answer ({err}). Start the server "
            f"(mlflow server --host 127.0.0.1 --port 5000 ...) or leave --tracking-uri unset for a local store."
        ) from err


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The experiment's id, creating it with artifacts beside a local SQLite store.

    Without an explicit artifact location MLflow 3 puts artifacts under ./mlruns of whichever
    process touches the experiment first.
    """
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if client.tracking_uri.startswith("sqlite:///"):
        location = (Path(client.tracking_uri.removeprefix("sqlite:///")).parent / DEFAULT_ARTIFACTS).as_uri()
    return client.create_experiment(name, artifact_location=location)


def redact_url(value: str) -> str:
    """A URL without the user:password part."""
    parts = urlsplit(value)
    if parts.password is None and parts.username is None:
        return value
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host))


def secret_values() -> set[str]:
    """Values of environment variables whose names mark them as secrets (AWS_*, *_TOKEN, ...)."""
    return {v for k, v in os.environ.items() if len(v) >= 6 and (k.startswith("AWS_") or any(m in k.upper() for m in SECRET_MARKERS))}


def safe_value(value: Any, secrets: set[str]) -> str:
    text = redact_url(str(value))
    return "<redacted>" if any(s in text for s in secrets) else text[:6000]


def code_version() -> str:
    """The git commit of the code, with +dirty when the tree has uncommitted changes."""
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    names = ("torch", "torchvision", "ray", "mlflow", "optuna", "numpy")
    found = {}
    for name in names:
        try:
            found[f"version_{name}"] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return found | {"version_python": platform.python_version()}


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys: MLflow params cannot hold dicts."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def pretrain_params(cfg: Any) -> dict[str, Any]:
    """A pretraining run's params: its whole config, what follows from it, and versions."""
    derived = {
        rs.P_VIEWS_PER_IMAGE: cfg.views_per_image,
        rs.P_LR_EFFECTIVE: cfg.effective_lr,
        rs.P_WORLD_SIZE: cfg.workers,
        rs.P_DEVICE_TYPE: "cuda" if cfg.gpu else "cpu",
    }
    return {k: v for k, v in cfg.to_dict().items() if k != "tags"} | derived | library_versions()


def create_run(tracking_uri: str, experiment: str, *, run_name: str, params: dict[str, Any], tags: dict[str, str], parent_run_id: str | None = None) -> str:
    """A new RUNNING run with its params and tags; returns its id."""
    client = MlflowClient(tracking_uri)
    all_tags = dict(tags) | {rs.CODE_VERSION: code_version()}
    if parent_run_id:
        all_tags[rs.PARENT] = parent_run_id
    run = client.create_run(ensure_experiment(client, experiment), run_name=run_name, tags=all_tags)
    secrets = secret_values()
    items = [Param(k, safe_value(v, secrets)) for k, v in flatten(params).items() if v is not None]
    for start in range(0, len(items), 100):  # log_batch takes at most 100 params a call
        client.log_batch(run.info.run_id, params=items[start : start + 100])
    return run.info.run_id


def end_run(tracking_uri: str, run_id: str, *, failed_reason: str | None = None, tags: dict[str, str] | None = None) -> None:
    """End a run FINISHED, or FAILED with the reason as a tag."""
    client = MlflowClient(tracking_uri)
    extra = dict(tags or {})
    if failed_reason is not None:
        extra[rs.FAILURE_REASON] = failed_reason.strip().splitlines()[-1][:500] if failed_reason.strip() else "unknown"
    for key, value in extra.items():
        client.set_tag(run_id, key, value)
    client.set_terminated(run_id, status="FAILED" if failed_reason is not None else "FINISHED")


@dataclass
class RunLogger:
    """Per-epoch metrics of one run, batched, from world rank 0.

    Epochs already in the run's history (from before a restart) are not logged again, so a
    resumed run's history has each epoch once. A failed write is kept and retried with the
    next one, so a tracking server that goes away mid-run loses nothing once it is back.
    """

    tracking_uri: str
    run_id: str
    pending: list[Metric] = field(default_factory=list)
    last_epoch: int = 0

    def __post_init__(self) -> None:
        self.client = MlflowClient(self.tracking_uri)
        history = self.client.get_metric_history(self.run_id, rs.M_TRAIN_LOSS)
        self.last_epoch = max((m.step for m in history), default=0)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        if epoch <= self.last_epoch:
            return
        now = int(time.time() * 1000)
        self.pending += [Metric(k, float(v), now, epoch) for k, v in metrics.items()]
        self.last_epoch = epoch
        self.flush(raise_on_error=False)

    def flush(self, *, raise_on_error: bool = True) -> None:
        try:
            for start in range(0, len(self.pending), 1000):
                self.client.log_batch(self.run_id, metrics=self.pending[start : start + 1000])
        except Exception as err:  # any transport failure: keep the metrics and retry later
            if raise_on_error:
                raise
            log.warning("MLflow write failed (%s); %d metric values kept for retry", err, len(self.pending))
            return
        self.pending = []

    def flush_with_retry(self, deadline_s: float = 600.0, wait_s: float = 5.0) -> None:
        """Retry buffered metrics until they are written or ``deadline_s`` has passed."""
        end = time.monotonic() + deadline_s
        while True:
            try:
                self.flush()
                return
            except Exception:
                if time.monotonic() > end:
                    raise
                time.sleep(wait_s)

    def log_final(self, metrics: dict[str, float], tags: dict[str, str] | None = None) -> None:
        now = int(time.time() * 1000)
        self.pending += [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        self.flush_with_retry()
        if tags:
            self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_artifacts(self, directory: Path, artifact_path: str) -> None:
        self.client.log_artifacts(self.run_id, str(directory), artifact_path=artifact_path)
