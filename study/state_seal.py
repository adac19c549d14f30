"""A study folder is data: Tune's state in it is restored only if it is what this study wrote.

``Tuner.restore`` unpickles ``tuner.pkl``, the searcher's and callbacks' ``*.pkl`` and the trials
pickled inside ``experiment_state-*.json``: whoever can write the study folder could make a resume
run code. Each time Tune changes that state the sweep driver *seals* it: it writes a copy of the
files as ``sealed/<digest>.zip`` and records their SHA-256 digest on the study's MLflow run
(another trust domain: the tracking server or store). ``--resume`` looks before anything is
unpickled: files that match the digest are used as they are; otherwise the sealed copy, if it
matches the digest, is put in their place and what differed is set aside in a zip; otherwise the
study is refused.

Why a copy, and why taken from Tune's staging folder: Tune writes its state into a local staging
folder and uploads it to the study folder from a background thread, so at any instant the study
folder may hold a half-uploaded state, or one newer than the last seal. A driver killed then
(SIGKILL, out of memory, a lost node) would leave a folder that no recorded digest matches. The
staging folder is written only by Tune's loop, so between two of its steps it is whole.
Trial checkpoints are not covered here: they are loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from ray.tune import Callback

from trainables.spec.files import write_atomically
from trainables.spec.validation import ConfigError

SEAL_TAG = "nce.state_sha256"  # on the study run: digest of every sealed file, with its count
OWN_FILES = ("study.json", "tuning.json")  # plain JSON this program reads itself
SEALED = "sealed"  # the sealed copies and what a restore set aside: zips, which Tune's restore does not download
# checkpoints (weights only), the report, tuning runs and adaptive rounds started afresh: never restored
OWN_FOLDERS = ("train", "report", "tuning", "rounds", SEALED)
TUNER_PKL = "tuner.pkl"  # the Tuner writes it straight into the study folder; everything else goes through staging
COPY_NAME = re.compile(r"[0-9a-f]{64}\.zip")
CHECK_EVERY_S = 0.5  # Tune's loop steps many times a second; it saves its state every 10 s at most
# A check walks every trial folder, so it costs more as the study grows: the next one waits this many
# times as long as the last took, which keeps the driver's time spent on checks under about 5 %.
CHECK_SHARE = 20

State = dict[str, bytes]  # a file's path relative to the study folder (POSIX) -> its content


def sealed_files(folder: Path) -> list[Path]:
    """The files a restore unpickles: every *.pkl below ``folder``, and Tune's top-level *.json."""
    found = [p for p in folder.glob("*.json") if p.name not in OWN_FILES]
    for entry in folder.iterdir() if folder.is_dir() else ():
        if entry.is_dir() and entry.name not in OWN_FOLDERS:
            found += entry.rglob("*.pkl")
    found += folder.glob("*.pkl")
    return sorted(p for p in found if p.is_file())


def state_paths(folder: Path, staging: Path | None) -> dict[str, Path]:
    """Where Tune's current state is: its staging folder (None: no trial yet, nothing staged), and
    the study folder's ``tuner.pkl``."""
    paths = {p.relative_to(staging).as_posix(): p for p in sealed_files(staging)} if staging else {}
    if (folder / TUNER_PKL).is_file():
        paths[TUNER_PKL] = folder / TUNER_PKL
    return paths


def read(paths: dict[str, Path]) -> State:
    return {name: path.read_bytes() for name, path in paths.items()}


def read_state(folder: Path) -> State:
    """The sealable files as they are in ``folder`` now."""
    return read({p.relative_to(folder).as_posix(): p for p in sealed_files(folder)})


def digest_of(state: State) -> str:
    """One SHA-256 over the files' relative names and contents, and how many there are."""
    total = hashlib.sha256()
    for name in sorted(state, key=lambda n: PurePosixPath(n).parts):
        total.update(name.encode() + b"\0")
        total.update(hashlib.sha256(state[name]).digest())
    return f"{len(state)}:{total.hexdigest()}"


def signature(paths: dict[str, Path]) -> tuple[Any, ...]:
    """A cheap fingerprint (names, sizes, modification times) to tell when the state must be sealed again."""
    return tuple((name, (s := p.stat()).st_size, s.st_mtime_ns) for name, p in sorted(paths.items()))


def zipped(state: State) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in state.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def copy_path(folder: Path, value: str) -> Path:
    return folder / SEALED / f"{value.partition(':')[2]}.zip"


def seal(tracking_uri: str, run_id: str, folder: Path, state: State) -> str:
    """Keep ``state`` as ``sealed/<digest>.zip``, record the digest on the study run, then drop the
    older copies; a kill at any point leaves the recorded digest's copy in place."""
    from mlflow.tracking import MlflowClient

    value = digest_of(state)
    copy = copy_path(folder, value)
    if not copy.is_file():
        copy.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(copy, zipped(state))
    MlflowClient(tracking_uri).set_tag(run_id, SEAL_TAG, value)
    for old in copy.parent.iterdir():
        if old != copy and COPY_NAME.fullmatch(old.name):
            old.unlink(missing_ok=True)
    return value


def recorded_digest(tracking_uri: str, run_id: str) -> str | None:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri).get_run(run_id).data.tags.get(SEAL_TAG)


def sealed_copy(folder: Path, value: str) -> State | None:
    """The sealed copy whose digest is ``value``; None if it is missing, unreadable or altered."""
    path = copy_path(folder, value)
    try:
        with zipfile.ZipFile(path) as archive:
            state = {info.filename: archive.read(info) for info in archive.infolist()}
    except (OSError, zipfile.BadZipFile, zlib.error, ValueError):
        return None
    return state if digest_of(state) == value else None


def check(tracking_uri: str, run_id: str | None, folder: Path) -> str | None:
    """Make ``folder``'s Tune state the one the study last sealed, or refuse (ConfigError).

    Returns None when the files were already those, else a note of what was put back and set aside.
    """
    if not run_id:
        raise ConfigError(
            f"{folder}: the study has no MLflow study run in this experiment and tracking store, so its state is not restored"
        )
    recorded = recorded_digest(tracking_uri, run_id)
    if recorded is None:
        raise ConfigError(f"{folder}: the study's MLflow run {run_id} records no digest of its state, so it is not restored")
    live = read_state(folder)
    found = digest_of(live)
    if found == recorded:
        return None
    sealed = sealed_copy(folder, recorded)
    if sealed is None:
        raise ConfigError(
            f"{folder}: Tune's state files (tuner.pkl, experiment_state-*.json, *.pkl) are not those the study wrote "
            f"(recorded {recorded}, found {found}), and {copy_path(folder, recorded)} is missing or altered; "
            "restoring them could run code, so the study is not resumed. "
            "Remove what was added or altered, or start the study anew under another --name."
        )
    return put_back(folder, live, sealed)


def put_back(folder: Path, live: State, sealed: State) -> str:
    """Replace the live state files with the sealed ones; the live files that differ go into a zip."""
    differing = {name: data for name, data in live.items() if sealed.get(name) != data}
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{digest_of(differing).partition(':')[2][:8]}"
    aside = folder / SEALED / f"set-aside-{stamp}.zip"
    if differing:
        write_atomically(aside, zipped(differing))
        for name in differing:
            (folder / name).unlink()
    for name, data in sealed.items():
        if live.get(name) != data:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            write_atomically(folder / name, data)
    names = ", ".join(sorted(differing)[:5]) + (", ..." if len(differing) > 5 else "")
    kept = f"; those set aside are in {aside}" if differing else ""
    return (
        f"{folder}: Tune's state differed from the state the study last sealed ({len(differing)} file(s) differ or were "
        f"added: {names or 'none'}; {len(sealed.keys() - live.keys())} missing), as a driver stopped while Tune saved "
        f"leaves it, or an edit; the sealed state is put back{kept}"
    )


class SealCallback(Callback):
    """Seals Tune's state whenever it changes (looked at after a step of Tune's loop, at most every
    CHECK_EVERY_S, and always when the experiment ends)."""

    def __init__(self, tracking_uri: str, run_id: str, folder: Path) -> None:
        self.tracking_uri, self.run_id, self.folder = tracking_uri, run_id, folder
        self._last: tuple[Any, ...] | None = None
        self._checked, self._interval = 0.0, CHECK_EVERY_S

    def _update(self, trials: list, force: bool = False) -> None:
        if not force and time.monotonic() - self._checked < self._interval:
            return
        started = time.monotonic()
        # Every trial's staging path is the experiment's, below its own folder.
        paths = state_paths(self.folder, Path(trials[0].local_experiment_path) if trials else None)
        now = signature(paths)
        if now != self._last:
            seal(self.tracking_uri, self.run_id, self.folder, read(paths))
            self._last = now
        self._checked = time.monotonic()
        self._interval = max(CHECK_EVERY_S, CHECK_SHARE * (self._checked - started))

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._update(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._update(trials, force=True)

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_last": None, "_checked": 0.0, "_interval": CHECK_EVERY_S}  # after a restore, the files are sealed afresh
