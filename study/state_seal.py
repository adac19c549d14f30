"""A study folder is data: Tune's state in it is restored only if it is what this study wrote.

``Tuner.restore`` unpickles ``tuner.pkl``, the searcher's and callbacks' ``*.pkl`` and the trials
pickled inside ``experiment_state-*.json``: whoever can write the study folder could make a resume
run code. The sweep driver therefore records a SHA-256 digest of those files in the study's MLflow
run (another trust domain: the tracking server or store) each time Tune changes them, and
``--resume`` refuses a folder whose files do not match the digest, before anything is unpickled.
Trial checkpoints are not covered here: they are loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from trainables.config import ConfigError

SEAL_TAG = "nce.state_sha256"  # on the study run: digest of every sealed file, with its count
OWN_FILES = ("study.json", "tuning.json")  # plain JSON this program reads itself
CHECK_EVERY_S = 0.5  # Tune's loop steps many times a second; its state is saved every few seconds at most
# A check walks every trial folder, so it costs more as the study grows: the next one waits this many
# times as long as the last took, which keeps the driver's time spent on checks under about 5 %.
CHECK_SHARE = 20
OWN_FOLDERS = ("train", "report", "tuning")  # checkpoints (weights only), the report, tuning runs started afresh: never restored


def sealed_files(folder: Path) -> list[Path]:
    """The files a restore unpickles: every *.pkl below ``folder``, and Tune's top-level *.json."""
    found = [p for p in folder.glob("*.json") if p.name not in OWN_FILES]
    for entry in folder.iterdir() if folder.is_dir() else ():
        if entry.is_dir() and entry.name not in OWN_FOLDERS:
            found += entry.rglob("*.pkl")
    found += folder.glob("*.pkl")
    return sorted(p for p in found if p.is_file())


def digest(folder: Path) -> str:
    """One SHA-256 over the sealed files' relative names and contents, and how many there are."""
    total, files = hashlib.sha256(), sealed_files(folder)
    for path in files:
        total.update(str(path.relative_to(folder)).encode() + b"\0")
        total.update(hashlib.sha256(path.read_bytes()).digest())
    return f"{len(files)}:{total.hexdigest()}"


def signature(folder: Path) -> tuple[Any, ...]:
    """A cheap fingerprint (names, sizes, modification times) to tell when the digest must be redone."""
    return tuple((str(p), (s := p.stat()).st_size, s.st_mtime_ns) for p in sealed_files(folder))


def record(tracking_uri: str, run_id: str, folder: Path) -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri).set_tag(run_id, SEAL_TAG, digest(folder))


def check(tracking_uri: str, run_id: str | None, folder: Path) -> None:
    """Refuse (ConfigError) a study folder whose Tune state is not what the study last recorded."""
    from mlflow.tracking import MlflowClient

    if not run_id:
        raise ConfigError(
            f"{folder}: the study has no MLflow study run in this experiment and tracking store, so its state is not restored"
        )
    recorded = MlflowClient(tracking_uri).get_run(run_id).data.tags.get(SEAL_TAG)
    if recorded is None:
        raise ConfigError(f"{folder}: the study's MLflow run {run_id} records no digest of its state, so it is not restored")
    found = digest(folder)
    if found != recorded:
        raise ConfigError(
            f"{folder}: Tune's state files (tuner.pkl, experiment_state-*.json, *.pkl) are not those the study wrote "
            f"(recorded {recorded}, found {found}); restoring them could run code, so the study is not resumed. "
            "Remove what was added or altered, or start the study anew under another --name."
        )


class SealCallback(Callback):
    """Records the digest on the study run whenever Tune's state files change (checked every loop step)."""

    def __init__(self, tracking_uri: str, run_id: str, folder: Path) -> None:
        self.tracking_uri, self.run_id, self.folder = tracking_uri, run_id, folder
        self._last: tuple[Any, ...] | None = None
        self._checked, self._interval = 0.0, CHECK_EVERY_S

    def _update(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._checked < self._interval:
            return
        started = time.monotonic()
        now = signature(self.folder)
        self._checked = time.monotonic()
        self._interval = max(CHECK_EVERY_S, CHECK_SHARE * (self._checked - started))
        if now != self._last:
            record(self.tracking_uri, self.run_id, self.folder)
            self._last = now

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._update()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._update(force=True)

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_last": None, "_checked": 0.0, "_interval": CHECK_EVERY_S}  # after a restore, the files are hashed afresh
