"""Datasets, splits and the global-batch contract of trainables.core.data."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets

from trainables.core.data import (
    FolderImages,
    LabeledImages,
    Splits,
    batch_indices,
    epoch_seed,
    load_dataset,
    worker_batch_indices,
)
from trainables.core.data.decode import ImageFiles, decoding_workers
from trainables.spec.dataset_errors import DatasetNotFoundError, UnreadableImageError
from trainables.spec.datasets import DATASETS


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
def cifar10(cifar10_root: Path) -> Splits:
    return load_dataset("cifar10", cifar10_root, split_seed=0)


def test_cifar10_sizes_shapes_and_labels(cifar10: Splits) -> None:
    assert len(cifar10.train) + len(cifar10.val) == 50_000
    assert len(cifar10.val) == 5_000
    assert len(cifar10.test) == 10_000
    assert cifar10.pretrain is cifar10.train
    for split in (cifar10.train, cifar10.val, cifar10.test):
        assert split.images.dtype == torch.uint8
        assert split.images.shape[1:] == (3, 32, 32)
        assert split.labels.dtype == torch.int64
        assert set(split.labels.unique().tolist()) == set(range(10))
    assert cifar10.describe() == {
        "dataset": "cifar10",
        "num_classes": 10,
        "image_size": 32,
        "load_size": 32,
        "mean": "0.4914,0.4822,0.4465",
        "std": "0.247,0.2435,0.2616",
        "stats_source": "constants",
        "classes": "airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck",
        "in_memory": True,
        "pretrain_size": 45_000,
        "train_size": 45_000,
        "val_size": 5_000,
        "test_size": 10_000,
        "split_seed": 0,
    }


def test_cifar10_val_split_is_stratified(cifar10: Splits) -> None:
    per_class = torch.bincount(cifar10.val.labels, minlength=10)
    assert ((per_class - 500).abs() <= 1).all(), per_class.tolist()
    assert torch.bincount(cifar10.test.labels).tolist() == [1_000] * 10


def test_cifar10_val_is_disjoint_from_train(cifar10: Splits) -> None:
    train, val = set(_hashes(cifar10.train.images)), set(_hashes(cifar10.val.images))
    assert not train & val
    # CIFAR-10's training images are all distinct, so together the splits cover them all.
    assert len(train | val) == 50_000


def test_cifar10_split_follows_split_seed(cifar10: Splits, cifar10_root: Path) -> None:
    again = load_dataset("cifar10", cifar10_root, split_seed=0)
    other = load_dataset("cifar10", cifar10_root, split_seed=1)
    assert torch.equal(again.val.images, cifar10.val.images)
    assert torch.equal(again.train.labels, cifar10.train.labels)
    shared = set(_hashes(other.val.images)) & set(_hashes(cifar10.val.images))
    # Two independent 10% draws share about 10% of their images.
    assert 300 < len(shared) < 700


def test_cifar10_limit_train_keeps_val(cifar10: Splits, cifar10_root: Path) -> None:
    limited = load_dataset("cifar10", cifar10_root, split_seed=0, limit_train=1_000)
    assert len(limited.train) == len(limited.pretrain) == 1_000
    assert torch.equal(limited.val.images, cifar10.val.images)
    assert set(_hashes(limited.train.images)) <= set(_hashes(cifar10.train.images))
    assert len(limited.train.labels.unique()) == 10


def test_cifar10_stats_match_registry(cifar10: Splits) -> None:
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
    pretrain = splits.pretrain
    assert isinstance(pretrain, LabeledImages) and isinstance(splits.train, LabeledImages) and isinstance(splits.val, LabeledImages)
    assert (len(splits.train), len(splits.val), len(splits.test), len(pretrain)) == (90, 10, 10, 97)
    assert torch.bincount(splits.val.labels).tolist() == [1] * 10
    assert pretrain.images.shape[1:] == (3, 96, 96)
    assert torch.equal(pretrain.images[-7:], torch.from_numpy(unlabeled))
    assert (pretrain.labels[-7:] == -1).all() and torch.equal(pretrain.labels[:90], splits.train.labels)
    assert set(_hashes(splits.train.images)) | set(_hashes(splits.val.images)) == set(_hashes(torch.from_numpy(train)))
    assert not set(_hashes(pretrain.images)) & set(_hashes(splits.val.images))
    assert torch.equal(splits.test.images, torch.from_numpy(test))


# --- digits -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> Splits:
    return load_dataset("digits", "unused")


def test_digits_sizes_shapes_and_classes(digits: Splits) -> None:
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


def test_digits_test_split_ignores_split_seed(digits: Splits) -> None:
    other = load_dataset("digits", "unused", split_seed=3)
    assert torch.equal(other.test.images, digits.test.images)
    assert not torch.equal(other.val.images, digits.val.images)


def test_digits_stats_match_registry(digits: Splits) -> None:
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
        ({"image_size": 28}, "image_size"),
        ({"mean": (0.5, 0.5, 0.5)}, "mean, std"),  # a mean without its std
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


# --- seed rule and cost -----------------------------------------------------------------------


def test_batch_order_seed_is_the_plain_seed_sequence_and_views_have_their_own() -> None:
    plain = int(np.random.SeedSequence([7, 3]).generate_state(1, dtype=np.uint64)[0])
    assert epoch_seed(7, 3, "batches") == plain
    assert epoch_seed(7, 3, "views") not in (plain, epoch_seed(7, 4, "batches"), epoch_seed(3, 7, "views"))
    reference = torch.randperm(105, generator=torch.Generator().manual_seed(plain))[:100].view(10, 10)
    assert torch.equal(batch_indices(105, 10, epoch=3, seed=7), reference)
    with pytest.raises(ValueError, match="purpose"):
        epoch_seed(0, 0, "crops")


def test_pretraining_images_count_stl10_unlabeled_without_the_hold_out() -> None:
    stl = DATASETS["stl10"]
    assert stl.pretrain_images(0.1, None) == 4_500 + 100_000
    assert stl.pretrain_images(0.1, 1_000) == 1_000 + 100_000
    assert DATASETS["cifar10"].pretrain_images(0.1, None) == 45_000
    with pytest.raises(ValueError, match="imagefolder"):
        DATASETS["imagefolder"].pretrain_images(0.1, None)


# --- image folders ----------------------------------------------------------------------------

CLASSES = ("ant", "bee", "cat")


def _write_images(folder: Path, sizes: list[tuple[int, int]], rng: np.random.Generator, suffix: str = ".png") -> list[np.ndarray]:
    """One random RGB image per (width, height); returns the pixels as written (HWC uint8)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (width, height) in enumerate(sizes):
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}{suffix}")
        written.append(pixels)
    return written


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """3 classes x 6 training and 2 test PNGs of random pixels, 40 wide and 50 high."""
    rng = np.random.default_rng(0)
    for name in CLASSES:
        _write_images(tmp_path / "train" / name, [(40, 50)] * 6, rng)
        _write_images(tmp_path / "val" / name, [(40, 50)] * 2, rng)
    return tmp_path


def _streamed(root: Path, **kwargs: int) -> Splits:
    splits = load_dataset("imagefolder", root, val_fraction=1 / 3, image_size=16, load_size=16, in_memory_gb=0, **kwargs)
    assert isinstance(splits.train, FolderImages)
    return splits


@pytest.mark.parametrize("with_val", [False, True])
def test_a_test_folder_is_the_test_split_wherever_there_is_one(tmp_path: Path, with_val: bool) -> None:
    rng = np.random.default_rng(1)
    tests = {name: _write_images(tmp_path / "test" / name, [(20, 20)] * 3, rng) for name in CLASSES}
    for name in CLASSES:
        _write_images(tmp_path / "train" / name, [(20, 20)] * 4, rng)
        if with_val:  # train/val/test: val/ is neither trained on nor tested on
            _write_images(tmp_path / "val" / name, [(20, 20)] * 1, rng)
    splits = load_dataset("imagefolder", tmp_path, val_fraction=0.25, in_memory_gb=0)
    assert splits.describe()["test_size"] == 9
    expected = torch.stack([torch.from_numpy(x).permute(2, 0, 1) for name in CLASSES for x in tests[name]])
    assert torch.equal(torch.cat(list(splits.test.batches(9))), expected)


def test_folder_splits(image_folder: Path) -> None:
    splits = _streamed(image_folder)
    assert splits.classes == CLASSES
    assert splits.spec.num_classes == 3
    assert torch.bincount(splits.val.labels).tolist() == [2, 2, 2]
    assert torch.bincount(splits.train.labels).tolist() == [4, 4, 4]
    assert splits.pretrain is splits.train
    assert not set(splits.train.indices.tolist()) & set(splits.val.indices.tolist())
    described = splits.describe()
    assert (described["test_size"], described["load_size"], described["image_size"], described["classes"]) == (6, 16, 16, "ant,bee,cat")
    assert described["in_memory"] is False
    limited = _streamed(image_folder, limit_train=5)
    assert len(limited.train) == 5
    assert torch.equal(limited.val.indices, splits.val.indices)


def test_hidden_files_and_folders_are_neither_images_nor_classes(image_folder: Path) -> None:
    clean = _streamed(image_folder)
    for part in ("train", "val"):
        (image_folder / part / ".ipynb_checkpoints").mkdir()  # Jupyter's, beside the class folders
        (image_folder / part / "ant" / "._0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble metadata")  # from a Mac
    cluttered = _streamed(image_folder)
    assert cluttered.classes == CLASSES
    assert cluttered.describe() == clean.describe() | {"stats_source": "cached"}  # the same files: their statistics are reused
    assert torch.equal(torch.cat(list(cluttered.test.batches(4))), torch.cat(list(clean.test.batches(4))))


def test_folder_batches_decode_to_fixed_squares_in_order(image_folder: Path) -> None:
    splits = _streamed(image_folder)
    batches = list(splits.test.batches(4))
    assert [len(b) for b in batches] == [4, 2]
    assert all(b.dtype == torch.uint8 and b.shape[1:] == (3, 16, 16) for b in batches)
    assert torch.equal(torch.cat(list(splits.test.batches(4, slice(2, 5)))), torch.cat(batches)[2:5])


def test_folder_worker_batches_follow_the_slicing_contract(image_folder: Path) -> None:
    splits = _streamed(image_folder)
    whole = list(splits.pretrain.worker_batches(4, epoch=1, seed=0, rank=0, world_size=1))
    halves = [list(splits.pretrain.worker_batches(4, epoch=1, seed=0, rank=r, world_size=2)) for r in range(2)]
    assert len(whole) == 3  # 12 training images, drop_last
    assert all(batch.dtype == torch.uint8 and batch.shape == (4, 3, 16, 16) for batch in whole)
    for step, batch in enumerate(whole):
        assert torch.equal(torch.cat([halves[0][step], halves[1][step]]), batch)
    assert len(set(_hashes(torch.cat(whole)))) == 12


def test_a_folder_in_memory_holds_the_same_pixels_as_streamed(image_folder: Path) -> None:
    streamed = _streamed(image_folder)
    held = load_dataset("imagefolder", image_folder, val_fraction=1 / 3, image_size=16, load_size=16)
    assert isinstance(held.train, LabeledImages) and held.describe()["in_memory"] is True
    for name in ("train", "val", "test"):
        a, b = getattr(held, name), getattr(streamed, name)
        assert torch.equal(a.labels, b.labels)
        assert torch.equal(torch.cat(list(a.batches(5))), torch.cat(list(b.batches(5)))), name
    in_memory = list(held.pretrain.worker_batches(4, epoch=2, seed=1, rank=0, world_size=1))
    assert all(torch.equal(x, y) for x, y in zip(in_memory, streamed.pretrain.worker_batches(4, epoch=2, seed=1, rank=0, world_size=1)))
    assert held.spec.mean == streamed.spec.mean and held.spec.std == streamed.spec.std


def test_cifar_as_pngs_loads_bit_for_bit_at_32_px(tmp_path: Path, cifar10_root: Path) -> None:
    cifar = load_dataset("cifar10", cifar10_root)
    for part, split, count in (("train", cifar.train, 6), ("val", cifar.test, 2)):
        rows = torch.cat([(split.labels == c).nonzero().squeeze(1)[:count] for c in range(10)])
        for row in rows.tolist():
            folder = tmp_path / part / f"c{int(split.labels[row])}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(split.images[row].permute(1, 2, 0).numpy()).save(folder / f"{row}.png")
    folder = load_dataset("imagefolder", tmp_path, val_fraction=0.2)
    assert (folder.spec.image_size, folder.spec.load_size) == (32, 32)
    originals = set(_hashes(cifar.train.images)) | set(_hashes(cifar.test.images))
    decoded = torch.cat([folder.train.images, folder.val.images, folder.test.images])
    assert set(_hashes(decoded)) <= originals and len(decoded) == 80


def test_a_28px_folder_trains_at_28px_with_its_own_statistics(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pixels = []
    for name in CLASSES:
        pixels += _write_images(tmp_path / "train" / name, [(28, 28)] * 20, rng)
        _write_images(tmp_path / "val" / name, [(28, 28)] * 4, rng)
    splits = load_dataset("imagefolder", tmp_path)
    assert (splits.spec.image_size, splits.spec.load_size, splits.spec.num_classes) == (28, 28, 3)
    assert splits.train.in_memory and torch.cat(list(splits.pretrain.batches(64))).shape[1:] == (3, 28, 28)
    values = np.stack(pixels).reshape(-1, 3) / 255  # every training pixel: the sample covers them all
    assert splits.spec.mean == pytest.approx(tuple(values.mean(0)), abs=1e-6)
    assert splits.spec.std == pytest.approx(tuple(values.std(0)), abs=1e-6)
    assert splits.spec.augment == DATASETS["cifar10"].augment  # CIFAR's recipe at CIFAR's size
    assert splits.describe()["stats_source"] == "computed"
    stats = list((tmp_path / ".nce-cache").glob("*-stats.json"))
    assert len(stats) == 1  # cached beside the decoded images, and read back next time
    stats[0].write_text('{"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}')
    cached = load_dataset("imagefolder", tmp_path).spec
    assert (cached.mean, cached.stats_source) == ((0.1, 0.2, 0.3), "cached")
    given = load_dataset("imagefolder", tmp_path, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert (given.spec.mean, given.spec.std, given.spec.stats_source) == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "config")


def test_mixed_sizes_train_at_the_median_shorter_side_and_never_upsample(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    sizes = [(30, 20), (24, 36), (50, 40), (26, 26), (60, 22)]  # shorter sides 20, 24, 40, 26, 22: median 24
    for name in CLASSES[:2]:
        _write_images(tmp_path / "train" / name, sizes, rng, suffix=".jpg")
        _write_images(tmp_path / "val" / name, sizes[:1], rng, suffix=".jpg")
    own = load_dataset("imagefolder", tmp_path, val_fraction=0.2)
    assert (own.spec.image_size, own.spec.load_size) == (24, 24)
    smaller = load_dataset("imagefolder", tmp_path, val_fraction=0.2, image_size=14)
    assert (smaller.spec.image_size, smaller.spec.load_size) == (14, 16)  # 14 x 8/7
    asked = load_dataset("imagefolder", tmp_path, val_fraction=0.2, image_size=48)
    assert (asked.spec.image_size, asked.spec.load_size) == (48, 48)  # larger only when asked for
    with pytest.raises(ValueError, match="load_size: got 20 for image_size 24"):
        load_dataset("imagefolder", tmp_path, val_fraction=0.2, load_size=20)


def test_the_decoded_cache_is_reused_and_follows_the_files(image_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_dataset("imagefolder", image_folder, val_fraction=1 / 3, image_size=16, load_size=16)
    cached = sorted((image_folder / ".nce-cache").glob("*.npy"))
    assert len(cached) == 2  # train/ and val/
    monkeypatch.setattr(ImageFiles, "__getitem__", lambda self, i: pytest.fail("decoded again"))
    again = load_dataset("imagefolder", image_folder, val_fraction=1 / 3, image_size=16, load_size=16)
    assert torch.equal(again.train.images, first.train.images)
    monkeypatch.undo()
    Image.fromarray(np.zeros((50, 40, 3), dtype=np.uint8)).save(image_folder / "train" / "ant" / "0.png")
    changed = load_dataset("imagefolder", image_folder, val_fraction=1 / 3, image_size=16, load_size=16)
    assert len(sorted((image_folder / ".nce-cache").glob("*.npy"))) == 3
    assert not torch.equal(
        torch.cat([changed.train.images, changed.val.images]).sum(0), torch.cat([first.train.images, first.val.images]).sum(0)
    )


@pytest.mark.parametrize("in_memory_gb", [4.0, 0.0])
def test_a_corrupt_image_is_named_by_path(image_folder: Path, in_memory_gb: float) -> None:
    bad = image_folder / "train" / "bee" / "3.png"
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    with pytest.raises(UnreadableImageError, match=re.escape(str(bad))):
        splits = load_dataset("imagefolder", image_folder, val_fraction=1 / 3, image_size=16, load_size=16, in_memory_gb=in_memory_gb)
        for split in (splits.train, splits.val):
            list(split.batches(4))


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_sixteen_bit_greyscale_is_scaled_to_eight_bits_not_clipped(tmp_path: Path, mode: str) -> None:
    wide = np.arange(0, 65536, 257 * 3, dtype=np.int64)[:64].reshape(8, 8)  # 0 .. 48,573 across the range
    path = tmp_path / ("wide.png" if mode == "I;16" else "wide.tif")  # PNG holds 16 bits; 32-bit integers go in TIFF
    image = Image.fromarray(wide.astype(np.uint16) if mode == "I;16" else wide.astype(np.int32))
    assert image.mode == mode
    image.save(path)
    (decoded,) = [ImageFiles([path], load_size=8)[0]]
    expected = torch.from_numpy(np.rint(wide / 257).astype(np.uint8))
    assert decoded.shape == (3, 8, 8) and all(torch.equal(decoded[c], expected) for c in range(3))
    assert int(decoded.max()) < 255  # PIL's own conversion would have clipped nearly every pixel to 255


# How a camera stores each EXIF orientation of an upright picture U (the EXIF 2.3 standard, Table 6
# as inverted): stored = STORED[o](U); a viewer shows U.
STORED = {
    1: lambda u: u,
    2: lambda u: u[:, ::-1],  # mirrored left-right
    3: lambda u: u[::-1, ::-1],  # turned 180 degrees
    4: lambda u: u[::-1, :],  # mirrored top-bottom
    5: lambda u: u.transpose(1, 0, 2),  # mirrored along the main diagonal
    6: lambda u: np.rot90(u, 1),  # shown turned 90 degrees clockwise, so stored turned counter-clockwise
    7: lambda u: np.rot90(u, 2).transpose(1, 0, 2),  # mirrored along the other diagonal
    8: lambda u: np.rot90(u, -1),  # shown turned 90 degrees counter-clockwise
}


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_a_photo_is_decoded_upright_by_its_exif_orientation(tmp_path: Path, orientation: int) -> None:
    upright = np.random.default_rng(orientation).integers(0, 256, size=(6, 10, 3), dtype=np.uint8)  # 6 high, 10 wide
    path = tmp_path / "photo.png"  # lossless, and PNG carries EXIF as JPEG does
    exif = Image.Exif()
    exif[0x0112] = orientation  # the Orientation tag
    Image.fromarray(np.ascontiguousarray(STORED[orientation](upright))).save(path, exif=exif)
    decoded = ImageFiles([path], load_size=6)[0]  # shorter side 6: no resize, the centre 6 x 6 kept
    assert torch.equal(decoded, torch.from_numpy(upright[:, 2:8].transpose(2, 0, 1).copy()))


def test_float_pixels_are_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "float.tif"
    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)).save(path)
    with pytest.raises(UnreadableImageError, match=re.escape(str(path)) + r".*float pixels"):
        ImageFiles([path], load_size=8)[0]


def test_an_unreadable_file_is_named_when_measuring_the_folder(image_folder: Path) -> None:
    bad = image_folder / "train" / "cat" / "0.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(UnreadableImageError, match=re.escape(str(bad))):
        load_dataset("imagefolder", image_folder)


def test_folder_empty_class_raises(image_folder: Path) -> None:
    for png in (image_folder / "train" / "bee").iterdir():
        png.unlink()
    with pytest.raises(DatasetNotFoundError, match="bee"):
        _streamed(image_folder)


def test_folder_missing_val_raises(image_folder: Path) -> None:
    (image_folder / "val").rename(image_folder / "elsewhere")
    with pytest.raises(DatasetNotFoundError) as caught:
        _streamed(image_folder)
    assert str(image_folder / "val") in str(caught.value)
    assert "<class>" in str(caught.value)


def test_folder_class_mismatch_raises(image_folder: Path) -> None:
    (image_folder / "val" / "cat").rename(image_folder / "val" / "cow")
    with pytest.raises(ValueError, match="cow"):
        _streamed(image_folder)


def test_folder_is_never_downloaded(image_folder: Path) -> None:
    with pytest.raises(ValueError, match="download"):
        load_dataset("imagefolder", image_folder, download=True)


def test_decoding_workers_leave_one_cpu_to_training() -> None:
    assert decoding_workers() == max(0, len(os.sched_getaffinity(0)) - 1)


# --- Tiny-ImageNet (a miniature in the official layout) ---------------------------------------

WNIDS = ("n01443537", "n01629819", "n01641577")


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """3 wnids x 5 training JPEGs of 64 px, and 6 validation JPEGs labelled by val_annotations.txt."""
    rng = np.random.default_rng(3)
    root = tmp_path / "tiny-imagenet-200"
    root.mkdir()
    (root / "wnids.txt").write_text("\n".join(reversed(WNIDS)) + "\n")  # not sorted in the file
    for wnid in WNIDS:
        _write_images(root / "train" / wnid / "images", [(64, 64)] * 5, rng, suffix=".JPEG")
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    _write_images(root / "val" / "images", [(64, 64)] * 6, rng, suffix=".JPEG")
    lines = [f"{i}.JPEG\t{WNIDS[i % 3]}\t0\t0\t63\t63" for i in range(6)]
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_tiny_imagenet_reads_its_official_layout(tiny: Path) -> None:
    splits = load_dataset("tinyimagenet", tiny, val_fraction=0.2)
    assert splits.classes == WNIDS  # sorted, as ImageFolder would label them
    assert (splits.spec.image_size, splits.spec.load_size, splits.spec.num_classes) == (64, 64, 3)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 3, 6)
    assert splits.test.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert torch.bincount(splits.val.labels).tolist() == [1, 1, 1]
    assert torch.cat(list(splits.test.batches(4))).shape == (6, 3, 64, 64)
    assert splits.spec.mean is not None and splits.spec.mean != DATASETS["imagenet"].mean


def test_tiny_imagenet_bad_layouts_are_named(tiny: Path) -> None:
    annotations = tiny / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    annotations.write_text("0.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(ValueError, match="val_annotations.txt line 1"):
        load_dataset("tinyimagenet", tiny)
    annotations.unlink()
    with pytest.raises(DatasetNotFoundError, match="val_annotations.txt is missing"):
        load_dataset("tinyimagenet", tiny)
    with pytest.raises(DatasetNotFoundError, match="tiny-imagenet-200"):
        load_dataset("tinyimagenet", tiny / "tiny-imagenet-200")


@pytest.mark.slow  # an MLflow store and a pretraining epoch: about a minute on 2 busy cores
def test_a_28px_folder_pretrains_at_28px_and_its_run_records_the_data(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from trainables.integration.session import LocalSession
    from trainables.integration.tracking import create_run
    from trainables.run.epoch_end import EpochEnd
    from trainables.run.pretrain import pretrain
    from trainables.spec.pretrain_config import from_dict

    rng = np.random.default_rng(4)
    for name in CLASSES:
        _write_images(tmp_path / "data" / "train" / name, [(28, 28)] * 24, rng)
        _write_images(tmp_path / "data" / "val" / name, [(28, 28)] * 4, rng)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = create_run(uri, "data", run_name="folder", params={}, tags={})
    cfg = from_dict(
        {
            "dataset": "imagefolder",
            "data_dir": str(tmp_path / "data"),
            "backbone": "small",
            "head": "mlp",
            "epochs": 1,
            "batch_size": 32,
            "knn_k": 5,
        }
    )
    session = LocalSession(tmp_path / "run")
    pretrain(cfg, session, EpochEnd(cfg, session, run_id=run_id, tracking_uri=uri))
    assert np.isfinite(session.reported[-1]["train_loss"])
    params = MlflowClient(uri).get_run(run_id).data.params
    stats = load_dataset("imagefolder", tmp_path / "data").spec
    assert (params["data.image_size"], params["data.load_size"], params["data.classes"]) == ("28", "28", "ant,bee,cat")
    assert params["data.mean"] == ",".join(f"{v:.6g}" for v in stats.mean or ()) and params["data.in_memory"] == "True"


def test_an_unwritable_cache_dir_is_named(image_folder: Path) -> None:
    blocked = image_folder / "a file"
    blocked.write_text("not a folder")
    for in_memory_gb in (4.0, 0.0):
        with pytest.raises(ValueError, match=f"cache_dir: {re.escape(str(blocked / 'cache'))} cannot be created"):
            load_dataset("imagefolder", image_folder, cache_dir=blocked / "cache", in_memory_gb=in_memory_gb)


def test_train_py_refuses_a_folder_with_a_corrupt_image_naming_it(
    image_folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from study import train

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(image_folder)
    bad = image_folder / "val" / "ant" / "1.png"
    bad.write_bytes(bad.read_bytes()[:200])
    assert train.main(["--dataset", "imagefolder", "--data-dir", str(image_folder), "--backbone", "small"]) == 2
    stderr = capsys.readouterr().err
    assert f"image file {bad} cannot be read" in stderr and "Traceback" not in stderr
