"""Datasets, splits and the global-batch contract of trainables.data."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets

from trainables.data import (
    DATASETS,
    DatasetNotFoundError,
    FolderSplits,
    TensorSplits,
    batch_indices,
    load_dataset,
    worker_batch_indices,
)


def _hashes(images: torch.Tensor) -> list[bytes]:
    """One digest per image, to compare splits by content.

    Shape:
        images: uint8 [N, 3, H, W].
    """
    rows = images.reshape(len(images), -1).numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]


def _channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Exact per-channel mean and std in [0, 1] units, from a histogram of the 256 values.

    Shape:
        images: uint8 [N, 3, H, W].
    """
    values = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for channel in range(3):
        counts = torch.bincount(images[:, channel].flatten(), minlength=256).double()
        mean = (counts * values).sum() / counts.sum()
        means.append(float(mean))
        stds.append(float(((counts * values**2).sum() / counts.sum() - mean**2).sqrt()))
    return means, stds


# --- CIFAR-10 ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cifar10(cifar10_root: Path) -> TensorSplits:
    splits = load_dataset("cifar10", cifar10_root, split_seed=0)
    assert isinstance(splits, TensorSplits)
    return splits


def test_cifar10_sizes_shapes_and_labels(cifar10: TensorSplits) -> None:
    assert len(cifar10.train) + len(cifar10.val) == 50_000
    assert len(cifar10.val) == 5_000
    assert len(cifar10.test) == 10_000
    assert cifar10.pretrain is cifar10.train.images
    for split in (cifar10.train, cifar10.val, cifar10.test):
        assert split.images.dtype == torch.uint8
        assert split.images.shape[1:] == (3, 32, 32)
        assert split.labels.dtype == torch.int64
        assert set(split.labels.unique().tolist()) == set(range(10))
    assert cifar10.describe() == {
        "dataset": "cifar10",
        "num_classes": 10,
        "image_size": 32,
        "pretrain_size": 45_000,
        "train_size": 45_000,
        "val_size": 5_000,
        "test_size": 10_000,
        "split_seed": 0,
    }


def test_cifar10_val_split_is_stratified(cifar10: TensorSplits) -> None:
    per_class = torch.bincount(cifar10.val.labels, minlength=10)
    assert ((per_class - 500).abs() <= 1).all(), per_class.tolist()
    assert torch.bincount(cifar10.test.labels).tolist() == [1_000] * 10


def test_cifar10_val_is_disjoint_from_train(cifar10: TensorSplits) -> None:
    train, val = set(_hashes(cifar10.train.images)), set(_hashes(cifar10.val.images))
    assert not train & val
    # CIFAR-10's training images are all distinct, so together the splits cover them all.
    assert len(train | val) == 50_000


def test_cifar10_split_follows_split_seed(cifar10: TensorSplits, cifar10_root: Path) -> None:
    again = load_dataset("cifar10", cifar10_root, split_seed=0)
    other = load_dataset("cifar10", cifar10_root, split_seed=1)
    assert torch.equal(again.val.images, cifar10.val.images)
    assert torch.equal(again.train.labels, cifar10.train.labels)
    shared = set(_hashes(other.val.images)) & set(_hashes(cifar10.val.images))
    # Two independent 10% draws share about 10% of their images.
    assert 300 < len(shared) < 700


def test_cifar10_limit_train_keeps_val(cifar10: TensorSplits, cifar10_root: Path) -> None:
    limited = load_dataset("cifar10", cifar10_root, split_seed=0, limit_train=1_000)
    assert len(limited.train) == len(limited.pretrain) == 1_000
    assert torch.equal(limited.val.images, cifar10.val.images)
    assert set(_hashes(limited.train.images)) <= set(_hashes(cifar10.train.images))
    assert len(limited.train.labels.unique()) == 10


def test_cifar10_stats_match_registry(cifar10: TensorSplits) -> None:
    means, stds = _channel_stats(torch.cat([cifar10.train.images, cifar10.val.images]))
    assert means == pytest.approx(DATASETS["cifar10"].mean, abs=1e-4)
    assert stds == pytest.approx(DATASETS["cifar10"].std, abs=1e-4)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"), ("stl10", "stl10_binary")],
)
def test_missing_dataset_raises_without_downloading(tmp_path: Path, name: str, expected: str) -> None:
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset(name, tmp_path)
    message = str(caught.value)
    assert str(tmp_path) in message
    assert f"--dataset {name}" in message and "--download" in message
    assert expected in message
    assert isinstance(caught.value, FileNotFoundError)
    assert not any(tmp_path.iterdir())


# --- STL-10 (a miniature in the official binary layout) ---------------------------------------


def _write_stl_images(path: Path, images: np.ndarray) -> None:
    """The official files store each channel column-major, which torchvision transposes back."""
    path.write_bytes(np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes())


def test_stl10_pretrain_adds_unlabeled_and_leaves_out_val(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    train = rng.integers(0, 256, size=(100, 3, 96, 96), dtype=np.uint8)
    unlabeled = rng.integers(0, 256, size=(7, 3, 96, 96), dtype=np.uint8)
    test = rng.integers(0, 256, size=(10, 3, 96, 96), dtype=np.uint8)
    _write_stl_images(folder / "train_X.bin", train)
    _write_stl_images(folder / "unlabeled_X.bin", unlabeled)
    _write_stl_images(folder / "test_X.bin", test)
    # The official label files count classes from 1.
    (folder / "train_y.bin").write_bytes((np.arange(100) % 10 + 1).astype(np.uint8).tobytes())
    (folder / "test_y.bin").write_bytes((np.arange(10) + 1).astype(np.uint8).tobytes())
    monkeypatch.setattr(datasets.STL10, "_check_integrity", lambda self: True)

    splits = load_dataset("stl10", tmp_path)
    assert isinstance(splits, TensorSplits)
    assert (len(splits.train), len(splits.val), len(splits.test), len(splits.pretrain)) == (90, 10, 10, 97)
    assert torch.bincount(splits.val.labels).tolist() == [1] * 10
    assert splits.pretrain.shape[1:] == (3, 96, 96)
    assert torch.equal(splits.pretrain[-7:], torch.from_numpy(unlabeled))
    assert set(_hashes(splits.train.images)) | set(_hashes(splits.val.images)) == set(_hashes(torch.from_numpy(train)))
    assert not set(_hashes(splits.pretrain)) & set(_hashes(splits.val.images))
    assert torch.equal(splits.test.images, torch.from_numpy(test))


# --- digits -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> TensorSplits:
    splits = load_dataset("digits", "unused")
    assert isinstance(splits, TensorSplits)
    return splits


def test_digits_sizes_shapes_and_classes(digits: TensorSplits) -> None:
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1_797
    assert len(digits.test) == pytest.approx(0.2 * 1_797, abs=5)
    assert len(digits.val) == pytest.approx(0.1 * (1_797 - len(digits.test)), abs=5)
    for split in (digits.train, digits.val, digits.test):
        assert split.images.dtype == torch.uint8
        assert split.images.shape[1:] == (3, 32, 32)
        assert torch.equal(split.images[:, 0], split.images[:, 2])
        assert set(split.labels.unique().tolist()) == set(range(10))
    # Scaled to the full 0-255 range, not left at the raw 0-16.
    assert int(digits.train.images.max()) > 200


def test_digits_test_split_ignores_split_seed(digits: TensorSplits) -> None:
    other = load_dataset("digits", "unused", split_seed=3)
    assert torch.equal(other.test.images, digits.test.images)
    assert not torch.equal(other.val.images, digits.val.images)


def test_digits_stats_match_registry(digits: TensorSplits) -> None:
    means, stds = _channel_stats(torch.cat([digits.train.images, digits.val.images]))
    assert means == pytest.approx(DATASETS["digits"].mean, abs=1e-4)
    assert stds == pytest.approx(DATASETS["digits"].std, abs=1e-4)


# --- argument errors --------------------------------------------------------------------------


def test_unknown_dataset_names_field_and_allowed() -> None:
    with pytest.raises(ValueError) as caught:
        load_dataset("mnist", "anywhere")
    message = str(caught.value)
    assert "dataset" in message and "'mnist'" in message
    assert all(name in message for name in DATASETS)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"limit_train": 5_000}, "limit_train"),
        ({"load_size": 64}, "load_size"),
    ],
)
def test_bad_arguments_name_their_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        load_dataset("digits", "unused", **kwargs)


# --- batch order ------------------------------------------------------------------------------


def test_batch_indices_is_a_drop_last_permutation() -> None:
    batches = batch_indices(103, 10, epoch=0, seed=0)
    assert batches.shape == (10, 10)
    assert batches.dtype == torch.int64
    flat = batches.flatten()
    assert len(flat.unique()) == 100
    assert 0 <= int(flat.min()) and int(flat.max()) < 103
    assert not torch.equal(flat, torch.arange(100))


def test_batch_indices_depends_on_seed_and_epoch_only() -> None:
    first = batch_indices(1_000, 50, epoch=2, seed=7)
    assert torch.equal(first, batch_indices(1_000, 50, epoch=2, seed=7))
    assert not torch.equal(first, batch_indices(1_000, 50, epoch=3, seed=7))
    assert not torch.equal(first, batch_indices(1_000, 50, epoch=2, seed=8))
    # Nearby (seed, epoch) pairs must not collide.
    assert not torch.equal(batch_indices(1_000, 50, epoch=0, seed=1), batch_indices(1_000, 50, epoch=1, seed=0))


@pytest.mark.parametrize("world_size", [2, 4])
def test_worker_slices_make_up_the_global_batch(world_size: int) -> None:
    whole = worker_batch_indices(999, 64, epoch=5, seed=3, rank=0, world_size=1)
    slices = [worker_batch_indices(999, 64, epoch=5, seed=3, rank=r, world_size=world_size) for r in range(world_size)]
    assert all(piece.shape == (15, 64 // world_size) for piece in slices)
    assert torch.equal(torch.cat(slices, dim=1), whole)
    assert torch.equal(whole, batch_indices(999, 64, epoch=5, seed=3))


def test_batch_errors_name_their_field() -> None:
    with pytest.raises(ValueError, match="world_size"):
        worker_batch_indices(100, 10, epoch=0, seed=0, rank=0, world_size=3)
    with pytest.raises(ValueError, match="rank"):
        worker_batch_indices(100, 10, epoch=0, seed=0, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        batch_indices(9, 10, epoch=0, seed=0)


# --- image folders ----------------------------------------------------------------------------

CLASSES = ("ant", "bee", "cat")


def _write_pngs(folder: Path, count: int, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        pixels = rng.integers(0, 256, size=(50, 40, 3), dtype=np.uint8)  # 40 wide, 50 high
        Image.fromarray(pixels).save(folder / f"{i}.png")


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """3 classes x 6 training and 2 test PNGs of random pixels."""
    rng = np.random.default_rng(0)
    for name in CLASSES:
        _write_pngs(tmp_path / "train" / name, 6, rng)
        _write_pngs(tmp_path / "val" / name, 2, rng)
    return tmp_path


def _load_folder(root: Path, **kwargs: int) -> FolderSplits:
    splits = load_dataset("imagefolder", root, val_fraction=1 / 3, load_size=16, **kwargs)
    assert isinstance(splits, FolderSplits)
    return splits


def test_folder_splits(image_folder: Path) -> None:
    splits = _load_folder(image_folder)
    assert splits.classes == CLASSES
    assert splits.spec.num_classes == 3
    assert torch.bincount(splits.val.labels).tolist() == [2, 2, 2]
    assert torch.bincount(splits.train.labels).tolist() == [4, 4, 4]
    assert not set(splits.train.indices.tolist()) & set(splits.val.indices.tolist())
    assert splits.describe()["test_size"] == 6
    assert splits.describe()["load_size"] == 16
    limited = _load_folder(image_folder, limit_train=5)
    assert len(limited.train) == 5
    assert torch.equal(limited.val.indices, splits.val.indices)


def test_folder_labeled_loader_decodes_to_fixed_squares(image_folder: Path) -> None:
    splits = _load_folder(image_folder)
    batches = list(splits.test.loader(batch_size=4, num_workers=0))
    assert [len(labels) for _, labels in batches] == [4, 2]
    images = torch.cat([images for images, _ in batches])
    assert images.dtype == torch.uint8 and images.shape == (6, 3, 16, 16)
    assert torch.equal(torch.cat([labels for _, labels in batches]), splits.test.labels)


def test_folder_pretrain_loader_follows_the_slicing_contract(image_folder: Path) -> None:
    splits = _load_folder(image_folder)
    whole = list(splits.pretrain_loader(batch_size=4, epoch=1, seed=0, rank=0, world_size=1, num_workers=1))
    halves = [
        list(splits.pretrain_loader(batch_size=4, epoch=1, seed=0, rank=r, world_size=2, num_workers=0))
        for r in range(2)
    ]
    assert len(whole) == 3  # 12 training images, drop_last
    assert all(batch.dtype == torch.uint8 and batch.shape == (4, 3, 16, 16) for batch in whole)
    for step, batch in enumerate(whole):
        assert torch.equal(torch.cat([halves[0][step], halves[1][step]]), batch)
    seen = set(_hashes(torch.cat(whole)))
    assert len(seen) == 12


def test_folder_empty_class_raises(image_folder: Path) -> None:
    for png in (image_folder / "train" / "bee").iterdir():
        png.unlink()
    with pytest.raises(DatasetNotFoundError, match="bee"):
        _load_folder(image_folder)


def test_folder_missing_val_raises(image_folder: Path) -> None:
    (image_folder / "val").rename(image_folder / "elsewhere")
    with pytest.raises(DatasetNotFoundError) as caught:
        _load_folder(image_folder)
    assert str(image_folder / "val") in str(caught.value)
    assert "<class>" in str(caught.value)


def test_folder_class_mismatch_raises(image_folder: Path) -> None:
    (image_folder / "val" / "cat").rename(image_folder / "val" / "cow")
    with pytest.raises(ValueError, match="cow"):
        _load_folder(image_folder)


def test_folder_is_never_downloaded(image_folder: Path) -> None:
    with pytest.raises(ValueError, match="download"):
        load_dataset("imagefolder", image_folder, download=True)
