"""Files the project writes: each one under its root, and written atomically.

A name from the user (a run, a study) becomes a folder only through :func:`under`, which resolves
the path and refuses one that leaves its root (``..``, an absolute name, a symlink pointing out).
State files (``study.json``, plans, hashes) go through :func:`write_atomically`: temporary file,
fsync, rename, fsync of the directory, so a kill at any moment leaves the old file or the new one,
never an empty or half-written one.
"""

from __future__ import annotations

import os
from pathlib import Path

from trainables.spec.validation import NAME_CHARS, NAME_PATTERN, ConfigError, problem


def under(root: str | Path, name: str, field: str) -> Path:
    """``root / name``, resolved, after checking that ``name`` is a plain name and stays under ``root``.

    Raises:
        ConfigError: naming ``field`` and the value, for a name outside NAME_CHARS or a path that
            resolves outside ``root`` (a symlink in between included).
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(problem(field, name, f"a name is made of {NAME_CHARS}"))
    base = Path(root).resolve()
    path = (base / name).resolve()
    if path.parent != base:
        raise ConfigError(problem(field, name, f"it must name a folder directly under {base}, and {path} is not"))
    return path


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX: the directory entry is data of the directory)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: str | Path, data: bytes | str) -> Path:
    """Replace ``path`` with ``data``: the old content or the new one survives any kill, never a mix."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_directory(path.parent)
    return path
