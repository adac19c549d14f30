"""Checkpoints that are written atomically, verified by checksum and loaded without running code.

A checkpoint is a directory holding ``state.pt`` (tensors and plain values only, so that
``torch.load(weights_only=True)`` reads it) and ``state.sha256``. Both are written to a
temporary name and renamed, the checksum last, so a kill during a write never leaves a
half file that passes for a checkpoint.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.pt"
CHECKSUM_FILE = "state.sha256"
log = logging.getLogger(__name__)


class CorruptCheckpointError(RuntimeError):
    """A checkpoint whose file is missing, truncated or altered."""


class UnsafeCheckpointError(CorruptCheckpointError):
    """A checkpoint holding Python objects other than tensors and plain values, which could run code."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(state: dict[str, Any], directory: str | Path) -> Path:
    """Write ``state`` into ``directory`` (created if needed); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_write(directory / STATE_FILE, lambda f: torch.save(state, f))
    checksum = _sha256(directory / STATE_FILE).encode()
    _atomic_write(directory / CHECKSUM_FILE, lambda f: f.write(checksum))
    return directory


def load_checkpoint(directory: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The state saved in ``directory``, after checking its checksum; never unpickles code."""
    directory = Path(directory)
    state_file, checksum_file = directory / STATE_FILE, directory / CHECKSUM_FILE
    if not state_file.is_file() or not checksum_file.is_file():
        raise CorruptCheckpointError(f"checkpoint {directory} is incomplete: {STATE_FILE} or {CHECKSUM_FILE} is missing")
    if _sha256(state_file).encode() != checksum_file.read_bytes().strip():  # bytes: a garbled checksum file is not text
        raise CorruptCheckpointError(f"checkpoint {directory} fails its checksum: {STATE_FILE} is truncated or altered")
    try:
        return torch.load(state_file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # torch's own message suggests weights_only=False: never for us
        found = re.search(r"Unsupported (global: GLOBAL|operand) \S+", str(err))
        raise UnsafeCheckpointError(
            f"checkpoint {directory} is refused: {STATE_FILE} holds objects other than tensors and plain values, "
            f"which could run code when loaded{f' ({found.group(0)})' if found else ''}. This code never writes "
            "such checkpoints; the file comes from elsewhere or was altered."
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:  # truncated with a matching checksum
        raise CorruptCheckpointError(
            f"checkpoint {directory} cannot be read: {STATE_FILE}: {type(err).__name__}: {str(err)[:200]}"
        ) from err


def load_latest_valid(candidates: list[Path], map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], Path] | None:
    """The newest checkpoint of ``candidates`` (oldest first) that passes its checksum.

    A corrupt one is skipped with a warning naming it, so a resume falls back to the
    previous good checkpoint instead of failing or, worse, loading garbage.
    """
    for directory in reversed(candidates):
        try:
            return load_checkpoint(directory, map_location), directory
        except CorruptCheckpointError as err:
            log.warning("%s; falling back to the previous checkpoint", err)
    return None
