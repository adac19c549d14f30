"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_cifar10_root() -> Path | None:
    """The md5-verified CIFAR-10 folder beside the checkout, or None where it is absent."""
    root = Path(os.environ.get("NCE_SHARED_DATA", REPO.parent / "shared" / "data")) / "cifar10"
    return root if (root / "cifar-10-batches-py" / "data_batch_1").is_file() else None


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    root = shared_cifar10_root()
    if root is None:
        pytest.skip("real CIFAR-10 not found beside the checkout (../shared/data/cifar10); set NCE_SHARED_DATA")
    return root

# The tests import their helpers (loss_references, ...) as top-level modules.
import sys  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
