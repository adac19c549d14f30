"""Checkpoints on disk: corruption is detected and named, a resume falls back past it, and a write
killed midway never leaves a file that passes for the checkpoint."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from trainables.run import checkpoint
from trainables.run.checkpoint import (
    CHECKSUM_FILE,
    STATE_FILE,
    CorruptCheckpointError,
    load_checkpoint,
    load_latest_valid,
    save_checkpoint,
)

REPO = Path(__file__).resolve().parents[1]
PATTERN = torch.arange(4096, dtype=torch.float32)  # its bytes are easy to find inside state.pt


def state(tag: int) -> dict[str, Any]:
    return {"model": {"w": PATTERN + tag}, "epoch": tag, "config": {"loss": "infonce"}}


def flip_byte_in_tensor_data(folder: Path, tag: int) -> None:
    """Flip one bit in the middle of state(tag)'s tensor bytes, leaving the zip structure valid."""
    path = folder / STATE_FILE
    data = bytearray(path.read_bytes())
    offset = bytes(data).index((PATTERN + tag).numpy().tobytes()[:64]) + 2000
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def state_epoch(folder: Path) -> int:
    return int(torch.load(folder / STATE_FILE, weights_only=True)["epoch"])


def checksum_ok(folder: Path) -> bool:
    return hashlib.sha256((folder / STATE_FILE).read_bytes()).hexdigest() == (folder / CHECKSUM_FILE).read_text().strip()


def test_round_trip_in_a_folder_with_spaces_and_unicode(tmp_path: Path) -> None:
    folder = save_checkpoint(state(3), tmp_path / "my runs" / "épreuve 数据" / "epoch_00003")
    loaded = load_checkpoint(folder)
    assert loaded["epoch"] == 3 and torch.equal(loaded["model"]["w"], PATTERN + 3)
    assert sorted(p.name for p in folder.iterdir()) == [STATE_FILE, CHECKSUM_FILE]  # no temporary file left behind


def test_a_flipped_byte_is_detected_naming_the_folder(tmp_path: Path) -> None:
    folder = save_checkpoint(state(1), tmp_path / "epoch_00001")
    flip_byte_in_tensor_data(folder, 1)
    # Without the checksum the damage goes unnoticed: torch loads the altered weights silently.
    silently = torch.load(folder / STATE_FILE, weights_only=True)["model"]["w"]
    assert not torch.equal(silently, PATTERN + 1)
    with pytest.raises(CorruptCheckpointError, match="fails its checksum") as err:
        load_checkpoint(folder)
    assert str(folder) in str(err.value)


def test_a_truncated_state_file_is_detected(tmp_path: Path) -> None:
    folder = save_checkpoint(state(1), tmp_path / "epoch_00001")
    data = (folder / STATE_FILE).read_bytes()
    (folder / STATE_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError, match="truncated or altered") as err:
        load_checkpoint(folder)
    assert str(folder) in str(err.value)


@pytest.mark.parametrize("missing", [CHECKSUM_FILE, STATE_FILE])
def test_a_missing_file_makes_the_checkpoint_incomplete(tmp_path: Path, missing: str) -> None:
    folder = save_checkpoint(state(1), tmp_path / "epoch_00001")
    (folder / missing).unlink()
    with pytest.raises(CorruptCheckpointError, match="is incomplete") as err:
        load_checkpoint(folder)
    assert str(folder) in str(err.value)


def test_a_garbled_checksum_file_is_a_corrupt_checkpoint(tmp_path: Path) -> None:
    folder = save_checkpoint(state(1), tmp_path / "epoch_00001")
    (folder / CHECKSUM_FILE).write_bytes(b"\xff\xfe\x00garbage\x80")  # not even text
    with pytest.raises(CorruptCheckpointError, match="fails its checksum"):
        load_checkpoint(folder)


def test_latest_valid_falls_back_past_two_bad_ones_naming_each(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folders = [save_checkpoint(state(epoch), tmp_path / f"epoch_{epoch:05d}") for epoch in (1, 2, 3, 4)]
    flip_byte_in_tensor_data(folders[2], 3)
    (folders[3] / CHECKSUM_FILE).unlink()
    with caplog.at_level(logging.WARNING, logger="trainables.run.checkpoint"):
        found = load_latest_valid(folders)
    assert found is not None
    loaded, where = found
    assert where == folders[1] and loaded["epoch"] == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert str(folders[3]) in warnings[0] and "incomplete" in warnings[0]
    assert str(folders[2]) in warnings[1] and "checksum" in warnings[1]
    assert all("falling back" in w for w in warnings)


def test_latest_valid_is_none_when_every_checkpoint_is_bad(tmp_path: Path) -> None:
    folders = [save_checkpoint(state(epoch), tmp_path / f"epoch_{epoch:05d}") for epoch in (1, 2)]
    for folder in folders:
        (folder / STATE_FILE).write_bytes(b"")
    assert load_latest_valid(folders) is None
    assert load_latest_valid([]) is None


def failing_save(fraction: float):
    """A torch.save that writes the first ``fraction`` of the real bytes, then fails (disk full, killed)."""
    real_save = torch.save

    def save(obj: Any, f: Any) -> None:
        import io

        buffer = io.BytesIO()
        real_save(obj, buffer)
        data = buffer.getvalue()
        f.write(data[: int(len(data) * fraction)])
        raise OSError(28, "No space left on device")

    return save


def test_a_write_failing_midway_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = save_checkpoint(state(1), tmp_path / "latest")
    before = (folder / STATE_FILE).read_bytes(), (folder / CHECKSUM_FILE).read_bytes()
    monkeypatch.setattr(torch, "save", failing_save(0.5))
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(state(2), folder)
    assert ((folder / STATE_FILE).read_bytes(), (folder / CHECKSUM_FILE).read_bytes()) == before
    assert load_checkpoint(folder)["epoch"] == 1
    partial = [p for p in folder.iterdir() if p.name not in (STATE_FILE, CHECKSUM_FILE)]
    assert all(p.name.endswith(".tmp") for p in partial)  # the half-written bytes exist only under a temporary name


def test_a_first_write_failing_midway_leaves_no_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = save_checkpoint(state(1), tmp_path / "epoch_00001")
    monkeypatch.setattr(torch, "save", failing_save(0.9))
    with pytest.raises(OSError):
        save_checkpoint(state(2), tmp_path / "epoch_00002")
    assert not (tmp_path / "epoch_00002" / STATE_FILE).exists()
    found = load_latest_valid([good, tmp_path / "epoch_00002"])
    assert found is not None and found[1] == good


def test_a_kill_between_the_two_renames_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The state is renamed in, the checksum not yet: the new state must not pass with the old checksum."""
    older = save_checkpoint(state(1), tmp_path / "epoch_00001")
    latest = save_checkpoint(state(2), tmp_path / "epoch_00002")
    atomic_write, calls = checkpoint._atomic_write, []

    def killed_before_the_checksum(path: Path, write: Any) -> None:
        calls.append(path.name)
        if path.name == CHECKSUM_FILE:
            raise KeyboardInterrupt  # the process dies here
        atomic_write(path, write)

    monkeypatch.setattr(checkpoint, "_atomic_write", killed_before_the_checksum)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(state(3), latest)
    assert calls == [STATE_FILE, CHECKSUM_FILE] and state_epoch(latest) == 3  # the new state is in place
    with pytest.raises(CorruptCheckpointError):
        load_checkpoint(latest)
    found = load_latest_valid([older, latest])
    assert found is not None and found[1] == older and found[0]["epoch"] == 1


WRITER = """
import os, sys, time, torch
from trainables.run import checkpoint
def fsync_then_hang(fd):  # the bytes are out; the rename would come next
    os.fsync(fd)
    time.sleep(600)
checkpoint.os.fsync = fsync_then_hang
big = {"model": {"w": torch.ones(48 * 2**20)}, "epoch": 2, "config": {}}
checkpoint.save_checkpoint(big, sys.argv[1])
"""


def test_a_writer_killed_by_sigkill_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    folder = save_checkpoint(state(1), tmp_path / "latest")
    before = (folder / STATE_FILE).read_bytes(), (folder / CHECKSUM_FILE).read_bytes()
    env = os.environ | {"PYTHONPATH": str(REPO)}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)], env=env, stderr=subprocess.PIPE)
    tmp = folder / f".{STATE_FILE}.tmp"
    try:
        deadline = time.monotonic() + 60
        while not (tmp.is_file() and tmp.stat().st_size > 0):
            assert writer.poll() is None, writer.stderr.read().decode()[-2000:] if writer.stderr else ""
            assert time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.005)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    assert 0 < tmp.stat().st_size  # the partial (or complete but unrenamed) write is there, under its temporary name
    assert ((folder / STATE_FILE).read_bytes(), (folder / CHECKSUM_FILE).read_bytes()) == before
    assert checksum_ok(folder) and load_checkpoint(folder)["epoch"] == 1
    save_checkpoint(state(3), folder)  # the next write replaces the leftover
    assert load_checkpoint(folder)["epoch"] == 3 and not tmp.exists()
