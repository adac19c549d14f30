"""What a worker or the tracking store would refuse after Ray started, refused by the driver first.

Both ``train.py`` and ``run_sweep.py`` call these before Ray starts and before any run is created;
each problem is a ConfigError naming the field, path or URI, answered in seconds:

- relative paths (``data_dir``, ``cache_dir``, ``save_dir``) are made absolute where the user typed
  them, since every Ray worker runs in a folder of its own;
- a folder the run writes to (``save_dir``, ``cache_dir``, ``--storage-path``) must be a folder, or
  creatable, and writable (a regular file, or a read-only mount, is named);
- the tracking store must answer its API, not only ``/health``: a SQLite file that is read-only,
  locked or corrupt, a server that errors (404, 503) or does not answer, an experiment that was
  deleted — every probe bounded (``PROBE_TIMEOUT_S``, no retries), where MLflow's own client would
  retry for minutes;
- the dataset's splits must hold what the run takes from them: at least one batch of pretraining
  images, a non-empty training, validation and test split.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from trainables.spec.pretrain_config import PretrainConfig
from trainables.spec.validation import ConfigError, problem

PROBE_TIMEOUT_S = 5  # one probe of the tracking store, where MLflow's client waits 120 s per request
PATH_FIELDS = ("data_dir", "cache_dir", "save_dir")


def absolute_paths(cfg: PretrainConfig) -> PretrainConfig:
    """``cfg`` with its paths absolute, as the folder the command ran in means them."""
    given = {f: getattr(cfg, f) for f in PATH_FIELDS if getattr(cfg, f) is not None}
    return dataclasses.replace(cfg, **{f: os.path.abspath(os.path.expanduser(v)) for f, v in given.items()})


def writable_folder(path: str | Path, field: str) -> None:
    """``path`` is a writable folder, or one that can be created (its nearest existing parent is one)."""
    path = Path(path).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ConfigError(problem(field, str(path), "it is a file, not a folder; give a folder"))
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(problem(field, str(path), f"{existing} is a file, so the folder cannot be created; give a folder"))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(problem(field, str(path), f"{existing} is not writable (read-only, or not this user's); give a writable folder"))


def run_folders(cfg: PretrainConfig) -> None:
    """The folders a pretraining run writes: its checkpoints and, for an image folder, its decoded cache."""
    from trainables.spec.datasets import DATASETS

    writable_folder(cfg.save_dir, "save_dir")
    if cfg.cache_dir is not None:
        writable_folder(cfg.cache_dir, "cache_dir")
    elif DATASETS[cfg.dataset].from_files:
        writable_folder(Path(cfg.data_dir) / ".nce-cache", "cache_dir (default: DATA_DIR/.nce-cache)")


def check_splits(cfg: PretrainConfig, sizes: dict[str, int]) -> None:
    """The run's batch fits its pretraining images and every split it evaluates on holds images."""
    shown = ", ".join(f"{split} {n}" for split, n in sizes.items())
    where = f"dataset {cfg.dataset!r} (splits: {shown})"
    if sizes["pretrain"] < cfg.batch_size:
        raise ConfigError(
            problem("batch_size", cfg.batch_size, f"it is larger than the {sizes['pretrain']} pretraining images of {where}; lower it or add images")
        )
    for split, field in (("train", "limit_train"), ("val", "val_fraction"), ("test", "dataset")):
        if sizes[split] < 1:
            raise ConfigError(problem(field, getattr(cfg, field), f"the {split} split of {where} is empty; every run evaluates on it"))


@contextlib.contextmanager
def bounded_mlflow_requests() -> Iterator[None]:
    """MLflow's HTTP requests made here give up after one PROBE_TIMEOUT_S try; the environment as before after."""
    bounds = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(PROBE_TIMEOUT_S), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    before = {key: os.environ.get(key) for key in bounds}
    os.environ.update(bounds)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def sqlite_problem(path: Path) -> str | None:
    """Why a SQLite store at ``path`` cannot take writes, or None: read-only, locked, corrupt, not a file."""
    if not path.exists():
        folder = path.parent
        return None if folder.is_dir() and os.access(folder, os.W_OK | os.X_OK) else f"{folder} is not a writable folder to create it in"
    if not path.is_file():
        return "it is not a file"
    if not os.access(path, os.R_OK | os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
        return "it (or its folder, where SQLite writes its journal) is read-only"
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=PROBE_TIMEOUT_S)) as db:
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                return "it is corrupt (PRAGMA quick_check fails)"
            db.execute("BEGIN IMMEDIATE")  # the write lock every MLflow write takes
            db.rollback()
    except sqlite3.OperationalError as err:
        if "locked" in str(err) or "busy" in str(err):
            return f"it is locked by another process (waited {PROBE_TIMEOUT_S} s)"
        return f"it cannot be opened for writing ({err})"
    except sqlite3.DatabaseError as err:
        return f"it is not a readable SQLite database ({err})"
    return None


def store_problem(uri: str, experiment: str) -> str | None:
    """Why the store at ``uri`` cannot record a run in ``experiment``, or None (each probe bounded)."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///").split("?")[0])
        if not path.exists():  # a new store: nothing in it can be wrong, and a refused run must not create it
            return sqlite_problem(path)
        found = sqlite_problem(path)
        if found:
            return found
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        with bounded_mlflow_requests():
            client = MlflowClient(uri)
            client.search_experiments(max_results=1)
            found = client.get_experiment_by_name(experiment)
    except MlflowException as err:
        return f"its API answers with an error ({str(err).splitlines()[0][:300]})"
    except OSError as err:
        return f"its API does not answer within {PROBE_TIMEOUT_S} s ({type(err).__name__})"
    except Exception as err:  # noqa: BLE001 - a store that fails its probe in any other way (SQLAlchemy, alembic) cannot record either
        return f"it fails when opened ({type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''})"
    if found is not None and found.lifecycle_stage == "deleted":
        return (f"its experiment {experiment!r} is deleted; restore it (mlflow experiments restore --experiment-id "
                f"{found.experiment_id}) or choose another experiment")
    return None


def checked_store(given: str | None, experiment: str) -> str:
    """The tracking URI a command records to, reachable (``/health``) and able to record a run."""
    from study.cli import reachable_tracking_uri
    from trainables.integration.tracking import redact_url

    uri = reachable_tracking_uri(given)
    found = store_problem(uri, experiment)
    if found:
        raise ConfigError(problem("tracking_uri", redact_url(uri), found))
    return uri
