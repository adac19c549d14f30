"""The project's scripts run as a user runs them: a subprocess in a folder of the test's own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# study/train.py on 256 digits images: the small backbone, two DDP workers sharing a core, a kNN
# evaluation and a checkpoint every epoch (the epochs, loss and run name are the test's).
TINY_TRAIN = [
    "--dataset", "digits", "--backbone", "small", "--limit-train", "256", "--batch_size", "64",
    "--workers", "2", "--cpus-per-worker", "0.5", "--n_eval_epochs", "1", "--n_save_epochs", "1", "--knn-k", "10",
]  # fmt: skip


def run_script(
    script: str, args: list[str], cwd: Path, timeout: int = 420, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python REPO/script *args`` in ``cwd``, the checkout importable; the test fails, with the output's tail, where it fails.

    Ray's log deduplication is off, so that a failure shows every worker's lines.
    """
    env = os.environ | {"PYTHONPATH": str(REPO), "RAY_DEDUP_LOGS": "0"} | (env or {})
    command = [sys.executable, str(REPO / script), *args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done


def overrides(*settings: str) -> list[str]:
    """run_sweep.py's ``--set`` options, one per ``key=value``, spelled as docs/cluster.md shows them (``--set key=value``)."""
    return [word for setting in settings for word in ("--set", setting)]
