"""MLflow runs: created once by a driver, written by world rank 0 only, ended with a status.

Runs are addressed by explicit ids, never through MLflow's in-process active-run stack, so
that DDP workers, restarted workers and sweep trials in other processes all write to the
one run the driver made (the duplicate-run complaints of the anchors' users).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from trainables.integration.mlflow_search import experiment
from trainables.spec import run_schema as rs

log = logging.getLogger(__name__)
DEFAULT_STORE = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
SECRET_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL")
# MLflow's HTTP client retries a refused request 7 times with exponential backoff (about 4 minutes)
# and waits 120 s for an answer. RunLogger keeps failed writes and retries them itself, so its
# writes use these bounds instead, unless the environment sets the variables.
LOGGER_HTTP_BOUNDS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
# The MLflow UI's saved views of the runs table (experiment tags): which columns it shows, in which
# order, and how it sorts. The headline metrics lead (``columnOrder``; MLflow otherwise orders a
# group's columns alphabetically), then the axes a study varies and the run's kind. Sorted by a
# metric the table is flat, so trial, evaluation and baseline rows sort together by the one key;
# MLflow nests child runs only under a start-time sort, the tree view's. A saved view cannot hold
# expanded rows (MLflow leaves runsExpanded out of it): the tree opens with its study rows closed.
VIEW_COLUMNS = [f"metrics.`{k}`" for k in rs.HEADLINE_METRICS] + [
    f"params.`{k}`" for k in (rs.P_LOSS, rs.P_BATCH_SIZE, rs.P_VIEWS, rs.P_LR, rs.P_TEMPERATURE, rs.P_SEED, rs.P_EVAL_MODE)
] + [f"tags.`{rs.KIND}`"]
_BY_HEADLINE = {"orderByKey": f"metrics.`{rs.M_HEADLINE}`", "orderByAsc": False, "searchFilter": ""}
_COLUMNS = {"selectedColumns": VIEW_COLUMNS, "columnOrder": VIEW_COLUMNS}
VIEW_STATES = {
    rs.RESULTS_VIEW: _COLUMNS | _BY_HEADLINE,
    rs.TREE_VIEW: _COLUMNS | {"orderByKey": "attributes.start_time", "orderByAsc": False, "searchFilter": ""},
    rs.TRIALS_VIEW: _COLUMNS | _BY_HEADLINE | {"searchFilter": rs.TRIALS_FILTER},
}
_VIEW_CREATED_MS = 1_700_000_000_000  # a fixed time: the tags are rewritten only when a view changes


def view_tags() -> dict[str, str]:
    """The experiment tags of the saved views, as MLflow 3.17's "Views" menu lists them (an envelope
    with the name and the state as a JSON string; MLflow's share-key links read it too)."""
    times = {"createdAt": _VIEW_CREATED_MS, "updatedAt": _VIEW_CREATED_MS}
    return {rs.VIEW_TAG_PREFIX + view: json.dumps({"name": view, **times, "state": json.dumps(state)}) for view, state in VIEW_STATES.items()}


_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")


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
    # urllib cannot open a URL holding user:password@; send them as MLflow's client does.
    request = urllib.request.Request(f"{redact_url(uri).rstrip('/')}/health")
    parts = urlsplit(uri)
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        request.add_header("Authorization", "Basic " + base64.b64encode(pair.encode()).decode())
    try:
        urllib.request.urlopen(request, timeout=timeout_s).close()
    except (urllib.error.URLError, OSError) as err:
        raise TrackingUnavailableError(
            f"tracking_uri={redact_url(uri)!r} does not answer ({redact_text(str(err), secret_values())}). Start the server "
            f"(mlflow server --host 127.0.0.1 --port 5000 ...) or leave --tracking-uri unset for a local store."
        ) from err


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The experiment's id, creating it with artifacts beside a local SQLite store.

    Without an explicit artifact location MLflow 3 puts artifacts under ./mlruns of whichever
    process touches the experiment first. The experiment is tagged as model training (MLflow's
    ``mlflow.experimentKind``) and carries the runs-table views (:func:`view_tags`); :func:`results_url`
    opens the first.
    """
    found = experiment(client, name)
    tags = {rs.EXPERIMENT_KIND: rs.EXPERIMENT_KIND_TRAINING} | view_tags()
    if found is not None:
        for key, value in tags.items():
            if found.tags.get(key) != value:
                client.set_experiment_tag(found.experiment_id, key, value)
        return found.experiment_id
    location = None
    if client.tracking_uri.startswith("sqlite:///"):
        location = (Path(client.tracking_uri.removeprefix("sqlite:///")).parent / DEFAULT_ARTIFACTS).as_uri()
    return client.create_experiment(name, artifact_location=location, tags=tags)


UI_LAYOUT = "workflowType=machine_learning"  # MLflow 3.17's UI opens its GenAI layout for a page without it (in a new browser)


def results_url(ui: str, experiment_id: str, view: str = rs.RESULTS_VIEW) -> str:
    """The MLflow UI page of an experiment's runs table in the model-training layout, in one of the
    saved views (default: every run's headline numbers, best first)."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs?{UI_LAYOUT}&viewStateShareKey={view}"


def run_url(ui: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI page of a run, in the model-training layout (its metrics, child runs and note)."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{UI_LAYOUT}"


def redact_url(value: str) -> str:
    """A URL without the user:password part (the host and port stay as written)."""
    try:
        parts = urlsplit(value)
    except ValueError:  # not a URL after all (e.g. an unbalanced "[")
        return value
    if "@" not in parts.netloc:
        return value
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


REDACTED = "REDACTED"  # a valid run name too, so that a redacted config still validates (e.g. for a resume)


def redact_text(text: str, secrets: set[str]) -> str:
    """``text`` (an error message, say) without URL credentials and with secret values replaced."""
    text = _URL_CREDENTIALS.sub(r"\g<scheme>", text)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def secret_values() -> set[str]:
    """Values of environment variables whose names mark them as secrets (AWS_*, *_TOKEN, ...)."""
    return {v for k, v in os.environ.items() if len(v) >= 6 and (k.startswith("AWS_") or any(m in k.upper() for m in SECRET_MARKERS))}


def safe_value(value: Any, secrets: set[str]) -> str:
    text = redact_url(str(value))
    return REDACTED if any(s in text for s in secrets) else text[:6000]


def redact_secrets(values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``values`` (a config as a dict) whose strings carry no credentials or secrets.

    For what is written where others can read it, such as a checkpoint's config, which is
    uploaded as a run artifact. Other values are kept as they are.
    """
    secrets = secret_values()

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return safe_value(value, secrets) if isinstance(value, str) else value

    return clean(values)


@contextlib.contextmanager
def bounded_http() -> Iterator[None]:
    """MLflow HTTP requests within fail after ``LOGGER_HTTP_BOUNDS`` instead of minutes of retries.

    MLflow reads the variables at each request. They are set only for the duration and only
    where the environment leaves them unset.
    """
    added = {k: v for k, v in LOGGER_HTTP_BOUNDS.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def code_version() -> str:
    """The git commit of the code, with +dirty when the tree has uncommitted changes."""
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
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


def trial_run_name(cfg: Any) -> str:
    """A pretraining run's name in a study: its loss, batch, views, lr and seed."""
    return f"{cfg.loss}-b{cfg.batch_size}-m{cfg.views}-lr{cfg.lr:.3g}-s{cfg.seed}"


def pretrain_params(cfg: Any) -> dict[str, Any]:
    """A pretraining run's params: its whole config, what follows from it, and versions."""
    derived = {
        rs.P_VIEWS_PER_IMAGE: cfg.views_per_image,
        rs.P_LR_EFFECTIVE: cfg.effective_lr,
        rs.P_WORLD_SIZE: cfg.workers,
        rs.P_DEVICE_TYPE: "cuda" if cfg.gpu else "cpu",
    }
    # The loss's hyperparameters as it runs them: a published preset's values are recorded, not only its name.
    resolved = cfg.loss_hyperparameters()
    return {k: v for k, v in cfg.to_dict().items() if k != "tags"} | resolved | derived | library_versions()


def create_run(
    tracking_uri: str, experiment: str, *, run_name: str, params: dict[str, Any], tags: dict[str, str], parent_run_id: str | None = None
) -> str:
    """A new RUNNING run with its params and tags; returns its id."""
    client = MlflowClient(tracking_uri)
    secrets = secret_values()
    all_tags = {k: safe_value(v, secrets) for k, v in tags.items()} | {rs.CODE_VERSION: code_version()}
    if parent_run_id:
        all_tags[rs.PARENT] = parent_run_id
    run = client.create_run(ensure_experiment(client, experiment), run_name=run_name and safe_value(run_name, secrets), tags=all_tags)
    log_params(client, run.info.run_id, params)
    return run.info.run_id


def log_params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    """Params (nested dicts as dotted keys, None left out), secrets redacted; logging the same value again is allowed."""
    secrets = secret_values()
    items = [Param(k, safe_value(v, secrets)) for k, v in flatten(params).items() if v is not None]
    for start in range(0, len(items), 100):  # log_batch takes at most 100 params a call
        client.log_batch(run_id, params=items[start : start + 100])


def end_run(tracking_uri: str, run_id: str, *, failed_reason: str | None = None, tags: dict[str, str] | None = None) -> None:
    """End a run FINISHED, or FAILED with the reason as a tag."""
    client = MlflowClient(tracking_uri)
    secrets = secret_values()
    extra = {k: safe_value(v, secrets) for k, v in (tags or {}).items()}
    if failed_reason is not None:
        reason = redact_text(failed_reason, secrets).strip()  # an error message may hold a URL with a password
        extra[rs.FAILURE_REASON] = reason.splitlines()[-1][:500] if reason else "unknown"
    for key, value in extra.items():
        client.set_tag(run_id, key, value)
    client.set_terminated(run_id, status="FAILED" if failed_reason is not None else "FINISHED")


def ray_node_id() -> str | None:
    """The Ray node this process runs on; None outside Ray (a script or a test without a cluster)."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


@dataclass
class RunLogger:
    """Per-epoch metrics of one run, batched, from world rank 0.

    Epochs already in the run's history (from before a restart) are not logged again, so a
    resumed run's history has each epoch once. A failed write is kept and retried with the
    next one, so a tracking server that goes away mid-run loses nothing once it is back; while
    it is away, each write gives up after ``LOGGER_HTTP_BOUNDS`` rather than stalling training.
    Artifacts that cannot be uploaded are copied aside and uploaded with the next flush.
    """

    tracking_uri: str
    run_id: str
    pending: list[Metric] = field(default_factory=list)
    last_epoch: int = 0
    pending_artifacts: list[tuple[Path, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = MlflowClient(self.tracking_uri)
        history = self.client.get_metric_history(self.run_id, rs.M_TRAIN_LOSS)
        self.last_epoch = max((m.step for m in history), default=0)
        node = ray_node_id()
        if node is not None:  # each attempt of a trial tags where it runs: a restart on another node shows
            self.client.set_tag(self.run_id, rs.NODE_ID, node)

    def latest_metrics(self) -> dict[str, float]:
        """Each of the run's metrics at its latest value, as MLflow keeps it (waiting, with MLflow's own
        retries, for a server that is away: nothing else is left to do)."""
        return dict(self.client.get_run(self.run_id).data.metrics)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        if epoch <= self.last_epoch:
            return
        now = int(time.time() * 1000)
        self.pending += [Metric(k, float(v), now, epoch) for k, v in metrics.items()]
        self.last_epoch = epoch
        self.flush(raise_on_error=False)

    def flush(self, *, raise_on_error: bool = True) -> None:
        """Write the buffered metrics, then the artifacts waiting for upload.

        A re-sent metric keeps its timestamp, so MLflow stores it once even where an earlier
        attempt reached the server but its answer did not come back.
        """
        try:
            with bounded_http():
                while self.pending:
                    self.client.log_batch(self.run_id, metrics=self.pending[:1000])
                    del self.pending[:1000]
                while self.pending_artifacts:
                    copy, artifact_path = self.pending_artifacts[0]
                    self.client.log_artifacts(self.run_id, str(copy), artifact_path=artifact_path)
                    self.pending_artifacts.pop(0)
                    shutil.rmtree(copy.parent, ignore_errors=True)
        except Exception as err:  # any transport failure: keep what is left and retry later
            if raise_on_error:
                raise
            log.warning(
                "MLflow write failed (%s); %d metric values and %d artifact folders kept for retry",
                redact_text(str(err), secret_values()),
                len(self.pending),
                len(self.pending_artifacts),
            )

    def flush_with_retry(self, deadline_s: float = 600.0, wait_s: float = 5.0) -> None:
        """Retry buffered metrics and artifacts until they are written or ``deadline_s`` has passed."""
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
        """Upload ``directory``; while the server is away, a copy of it (the caller's folder may
        be temporary) waits for the next flush."""
        try:
            with bounded_http():
                self.client.log_artifacts(self.run_id, str(directory), artifact_path=artifact_path)
            return
        except Exception as err:
            log.warning("MLflow artifact upload failed (%s); %s kept for retry", redact_text(str(err), secret_values()), artifact_path)
        copy = Path(tempfile.mkdtemp(prefix="nce-artifacts-")) / "files"
        shutil.copytree(directory, copy)
        self.pending_artifacts.append((copy, artifact_path))
