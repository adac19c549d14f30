"""A study or a run owns its name: one driver at a time, and a name in use is never reused silently.

The claim is an exclusive ``flock`` on ``ROOT/.NAME.lock`` (ROOT: the storage folder of studies or
the save folder of runs), taken before anything of the study or run is written and held for the
driver's life. Two drivers started in the same second cannot both hold it; a driver that crashes
loses it with its process, so a crash leaves no stale claim (the lock file stays, unlocked, and the
next driver locks it again: removing it would let two drivers lock two different files).

Once held, a new study or run is refused where its name is in use: its folder exists and holds
files, or the experiment already records a study run (a pretraining run) of that name. The message
names the existing one and the choices: ``--resume NAME``, another name, or ``--replace``, which
archives the old folder as ``NAME.replaced-<time>`` and renames the old MLflow runs' name tags to
match, saying so. ``--resume`` of a name whose driver still runs is refused: the lock is held.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainables.spec import run_schema as rs
from trainables.spec.files import under
from trainables.spec.validation import ConfigError, problem

ARCHIVE_SUFFIX = ".replaced-"
ARCHIVED_FROM = "nce.replaced_name"  # on each archived run: the name it had before --replace


@dataclass
class Claim:
    """A held claim on ``folder``'s name; released by ``release`` or by the process's end."""

    folder: Path
    lock_file: Path
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the only descriptor of the lock releases the flock
            self.fd = -1


def lock_path(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.lock")


def holder(lock_file: Path) -> str:
    """What the lock file says of the process holding it (its pid and start), for the message."""
    try:
        text = lock_file.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return "another process"
    return text[:200] or "another process"


def hold(folder: Path, field: str, what: str) -> Claim:
    """The exclusive claim on ``folder``'s name, or a ConfigError naming the process holding it."""
    lock_file = lock_path(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as err:
        raise ConfigError(problem(field, folder.name, f"its claim {lock_file} cannot be created ({err.strerror})")) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(
            problem(field, folder.name, f"{what} {folder.name} is in use right now by {holder(lock_file)} (its claim: {lock_file}); "
                    "wait for it to end or stop it, or choose another name")
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
    return Claim(folder, lock_file, fd)


def folder_in_use(folder: Path) -> bool:
    """A folder holding files, or a file where the folder would be."""
    return (folder.is_dir() and any(folder.iterdir())) or (folder.exists() and not folder.is_dir())


def archive_name(folder: Path) -> Path:
    """``NAME.replaced-<time>``, numbered where two replacements fall in one second."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, n = folder.with_name(f"{folder.name}{ARCHIVE_SUFFIX}{stamp}"), 1
    while candidate.exists() or lock_path(candidate).exists():
        n += 1
        candidate = folder.with_name(f"{folder.name}{ARCHIVE_SUFFIX}{stamp}-{n}")
    return candidate


def own(
    folder: Path, *, field: str, what: str, resume: bool, replace: bool, recorded: Callable[[], list[str]], choices: str
) -> tuple[Claim, str | None]:
    """The claim on ``folder``'s name, checked as the module docstring says: (the claim, under
    ``replace`` the name the old study or run is archived as, else None), the old folder renamed to
    it. ``recorded``: what MLflow records under the name, one line each, asked once the claim is held."""
    claim = hold(folder, field, what)
    if resume:
        return claim, None
    in_use = folder_in_use(folder)
    try:
        known = recorded()
    except BaseException:
        claim.release()
        raise
    if not (in_use or known):
        return claim, None
    if not replace:
        claim.release()
        where = "; ".join(([f"folder {folder}"] if in_use else []) + known)
        raise ConfigError(problem(field, folder.name, f"{what} {folder.name} exists ({where}); {choices}"))
    archive = archive_name(folder)
    if in_use:
        folder.rename(archive)
    return claim, archive.name


def own_name(
    root: Path,
    name: str,
    *,
    field: str,
    what: str,
    name_flag: str,
    resume: bool,
    replace: bool,
    tracking_uri: str,
    experiment: str,
    tag: str,
    kind: str,
) -> Claim:
    """A driver's claim on ``name`` under ``root`` (:func:`own`), where MLflow records its runs of
    ``kind`` by ``tag``; under ``--replace``, the old one archived in the folder and in MLflow, saying so.
    ``name_flag``: the flag that picks another name, for the message."""
    folder = under(root, name, field)
    claim, archive = own(
        folder,
        field=field,
        what=what,
        resume=resume,
        replace=replace,
        recorded=lambda: recorded_runs(tracking_uri, experiment, {tag: name, rs.KIND: kind}),
        choices=f"continue it with --resume {name}, choose another {name_flag}, or add --replace to archive it and start afresh",
    )
    if archive is not None:
        renamed = rename_recorded(tracking_uri, experiment, tag, name, archive)
        print(f"--replace: the {what} {name} that was there is archived as {archive} (folder {folder.with_name(archive)}, {renamed} MLflow runs renamed)")
    return claim


def recorded_runs(tracking_uri: str, experiment: str, tags: dict[str, str]) -> list[str]:
    """One line per run of ``experiment`` whose tags equal ``tags``: its name, id and status. Read
    only: an experiment that does not exist records nothing (and is not created here)."""
    from mlflow.tracking import MlflowClient

    from trainables.integration.mlflow_search import experiment as experiment_named
    from trainables.integration.mlflow_search import search_runs

    client = MlflowClient(tracking_uri)
    found = experiment_named(client, experiment)
    if found is None:
        return []
    runs = search_runs(client, tags, experiments=[found.experiment_id])
    return [f"MLflow run {r.info.run_name!r} ({r.info.run_id}, {r.info.status}) in experiment {experiment!r}" for r in runs]


def rename_recorded(tracking_uri: str, experiment: str, tag: str, name: str, archive: str) -> int:
    """Every run of ``experiment`` whose ``tag`` is ``name`` (or ``name/...``) carries ``archive``
    instead, with the runs named after it renamed too, so that the new study or run shares nothing
    with the archived one; how many runs were renamed."""
    from mlflow.tracking import MlflowClient

    from trainables.integration.mlflow_search import PAGE_SIZE
    from trainables.integration.mlflow_search import experiment as experiment_named

    client = MlflowClient(tracking_uri)
    found = experiment_named(client, experiment)
    if found is None:
        return 0
    runs, token = [], None
    while True:  # names are plain (NAME_CHARS), so LIKE's only wildcard in one is '_', filtered out below
        page = client.search_runs([found.experiment_id], f"tags.`{tag}` LIKE '{name}%'", max_results=PAGE_SIZE, page_token=token)
        runs += [r for r in page if r.data.tags.get(tag, "").split("/")[0] == name]
        token = page.token
        if not token:
            break
    for run in runs:
        client.set_tag(run.info.run_id, tag, archive + run.data.tags[tag][len(name):])
        client.set_tag(run.info.run_id, ARCHIVED_FROM, name)
        if run.info.run_name == name:
            client.update_run(run.info.run_id, name=archive)
    return len(runs)
