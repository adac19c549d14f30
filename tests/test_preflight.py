"""Faults the driver refuses before Ray, and data scans that neither drop nor multiply images.

Storage faults (a folder that is a file, a tracking store that is corrupt, locked, erroring or has
its experiment deleted), splits too small for the run, relative paths, and odd folder contents
(link loops, names that are not UTF-8, hidden files, paths too long, decompression bombs, corrupt
caches). The command-line cases run ``main`` with ``ray.init`` replaced by a failure: each must exit 2
naming the path, URI or field, with no traceback, before Ray starts and before any MLflow run exists.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from study import run_sweep, train
from study.preflight import absolute_paths
from trainables.core.data import load_dataset
from trainables.spec.dataset_errors import MalformedDatasetError, UnreadableImageError
from trainables.spec.datasets import DATASETS
from trainables.spec.layouts import scan
from trainables.spec.pretrain_config import from_dict


@pytest.fixture
def no_start(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a refused run reached Ray or MLflow")

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(MlflowClient, "create_run", refuse)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def run(main: object, argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
        code = main(argv)  # type: ignore[operator]
    return code, out.getvalue()


def refused(main: object, argv: list[str], *named: str) -> str:
    code, output = run(main, argv)
    assert code == 2, output[-2000:]
    assert "Traceback" not in output, output[-2000:]
    for text in named:
        assert text in output, (text, output[-2000:])
    return output


def write_images(folder: Path, count: int, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, size=(20, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """2 classes x 6 training and 2 test PNGs."""
    root = tmp_path / "images"
    for name in ("ant", "bee"):
        write_images(root / "train" / name, 6)
        write_images(root / "val" / name, 2, seed=1)
    return root


def digits_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["--dataset", "digits", "--backbone", "small", "--epochs", "1", "--save_dir", str(tmp_path / "ck"),
            "--tracking_uri", f"sqlite:///{tmp_path / 'mlflow.db'}", *extra]


# --- splits and paths -------------------------------------------------------------------------------


def test_a_batch_larger_than_the_training_split_is_refused_with_the_split_sizes(tmp_path: Path, no_start: None) -> None:
    output = refused(train.main, digits_args(tmp_path, "--batch_size", "100000"), "batch_size=100000", "pretraining images")
    assert "pretrain 1" in output and "val " in output and "test " in output  # the split sizes, each named


def test_an_empty_validation_split_is_refused_naming_it(tmp_path: Path, images: Path, no_start: None) -> None:
    args = ["--dataset", "imagefolder", "--data-dir", str(images), "--batch_size", "4", "--val_fraction", "0.01",
            "--save_dir", str(tmp_path / "ck"), "--tracking_uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    refused(train.main, args, "val_fraction=0.01", "val split", "is empty", "val 0")


def test_relative_paths_are_resolved_where_they_were_typed(tmp_path: Path, images: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(images.parent)
    cfg = absolute_paths(from_dict({"dataset": "imagefolder", "data_dir": "images", "cache_dir": "cache", "save_dir": "~/ck"}))
    assert cfg.data_dir == str(images) and cfg.cache_dir == str(tmp_path / "cache")
    assert cfg.save_dir == os.path.expanduser("~/ck")
    handed: list[object] = []
    monkeypatch.setattr(train, "train", lambda args, cfg, name, uri: handed.append(cfg) or 0)
    argv = ["--dataset", "imagefolder", "--data-dir", "images", "--batch_size", "4", "--save_dir", "ck",
            "--tracking_uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    assert train.main(argv) == 0
    assert handed[0].data_dir == str(images) and handed[0].save_dir == str(tmp_path / "ck")  # type: ignore[attr-defined]


# --- folders that cannot be written ------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--save_dir", "--cache_dir"])
def test_a_train_folder_that_is_a_file_is_refused_naming_it(tmp_path: Path, flag: str, no_start: None) -> None:
    (tmp_path / "plain").write_text("not a folder")
    refused(train.main, digits_args(tmp_path, flag, str(tmp_path / "plain")), str(tmp_path / "plain"), "not a folder")


def test_a_storage_path_under_a_file_is_refused_naming_it(tmp_path: Path, no_start: None) -> None:
    (tmp_path / "plain").write_text("not a folder")
    argv = ["--preset", "quickstart", "--storage-path", str(tmp_path / "plain" / "runs"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]
    refused(run_sweep.main, argv, "storage_path", str(tmp_path / "plain"), "is a file")
    assert not (tmp_path / "m.db").exists()  # refused before the store was touched


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_save_dir_is_refused_naming_it(tmp_path: Path, no_start: None) -> None:
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    try:
        refused(train.main, digits_args(tmp_path, "--save_dir", str(tmp_path / "ro" / "ck")), "not writable", str(tmp_path / "ro"))
    finally:
        (tmp_path / "ro").chmod(0o700)


# --- tracking stores that cannot record -------------------------------------------------------------


def test_a_corrupt_sqlite_store_is_refused_naming_it(tmp_path: Path, no_start: None) -> None:
    (tmp_path / "mlflow.db").write_bytes(b"this is no database" * 100)
    refused(train.main, digits_args(tmp_path), "tracking_uri=", "mlflow.db", "not a readable SQLite database")


def test_a_locked_sqlite_store_is_refused_naming_it(tmp_path: Path, no_start: None) -> None:
    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()
    holder = sqlite3.connect(tmp_path / "mlflow.db")
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, and not letting go
    try:
        refused(train.main, digits_args(tmp_path), "mlflow.db", "locked by another process")
    finally:
        holder.rollback()
        holder.close()


def test_a_deleted_experiment_is_refused_naming_it(tmp_path: Path, no_start: None) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.delete_experiment(client.create_experiment("gone"))
    refused(train.main, digits_args(tmp_path, "--experiment", "gone"), "experiment 'gone' is deleted", "mlflow experiments restore")


class HealthOnly(http.server.BaseHTTPRequestHandler):
    """A server whose /health answers and whose API answers ``status``."""

    status = 503

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        code = 200 if self.path == "/health" else self.status
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"OK" if code == 200 else b"<html>unavailable</html>")

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def health_only_server(status: int) -> Iterator[str]:
    handler = type("Handler", (HealthOnly,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [404, 503])
def test_a_server_healthy_but_erroring_its_api_is_refused_without_hanging(tmp_path: Path, status: int, no_start: None) -> None:
    with health_only_server(status) as uri:
        argv = digits_args(tmp_path)[:-2] + ["--tracking_uri", uri]
        refused(train.main, argv, f"tracking_uri='{uri}'", "its API answers with an error")
        refused(run_sweep.main, ["--preset", "quickstart", "--storage-path", str(tmp_path / "runs"), "--tracking-uri", uri], uri)
    assert os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES") is None  # the probe's bounds are not left behind


# --- scans that neither drop nor multiply ------------------------------------------------------------


def test_a_symlink_loop_is_an_error_naming_it(images: Path) -> None:
    (images / "train" / "ant" / "loop").symlink_to(images / "train" / "ant")
    with pytest.raises(MalformedDatasetError) as err:
        scan(DATASETS["imagefolder"], images)
    assert str(images / "train" / "ant" / "loop") in str(err.value) and "read twice" in str(err.value)


def test_a_symlink_loop_is_refused_by_the_dry_run(images: Path, tmp_path: Path) -> None:
    (images / "train" / "bee" / "up").symlink_to(images / "train")
    refused(train.main, ["--dataset", "imagefolder", "--data-dir", str(images), "--dry-run"], str(images / "train" / "bee" / "up"))


def test_files_not_read_are_counted_and_named(images: Path, tmp_path: Path) -> None:
    ant = images / "train" / "ant"
    (ant / ".DS_Store").write_bytes(b"x")
    (ant / "README.txt").write_text("notes")
    (ant / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (16, 20)).save(ant / ".ipynb_checkpoints" / "9.png")
    odd = os.path.join(os.fsencode(ant), b"caf\xe9.png")  # a Latin-1 name
    Image.new("RGB", (16, 20)).save(open(odd, "wb"), format="PNG")
    deep = os.open(ant, os.O_RDONLY)
    for _ in range(25):  # 25 x 200 characters: a path longer than the system's PATH_MAX (4096)
        os.mkdir("d" * 200, dir_fd=deep)
        deeper = os.open("d" * 200, os.O_RDONLY, dir_fd=deep)
        os.close(deep)
        deep = deeper
    with os.fdopen(os.open("far.png", os.O_CREAT | os.O_WRONLY, dir_fd=deep), "wb") as f:
        Image.new("RGB", (16, 20)).save(f, format="PNG")
    os.close(deep)
    files = scan(DATASETS["imagefolder"], images)
    assert len(files.train) == 12  # the six of each class, nothing else
    assert {reason: len(paths) for reason, paths in files.skipped.items()} == {
        "hidden": 1, "not an image extension": 1, "hidden folder": 1, "name not UTF-8": 1, "folder not readable (File name too long)": 1,
    }
    code, output = run(train.main, ["--dataset", "imagefolder", "--data-dir", str(images), "--dry-run"])
    assert code == 0 and "files and folders not read: " in output and "1 name not UTF-8" in output and "caf\\xe9.png" in output, output


def test_a_class_folder_not_named_in_utf8_is_named(images: Path) -> None:
    write_images(Path(os.fsdecode(os.path.join(os.fsencode(images / "train"), b"k\xe4fer"))), 2)
    write_images(Path(os.fsdecode(os.path.join(os.fsencode(images / "val"), b"k\xe4fer"))), 2)
    with pytest.raises(MalformedDatasetError, match=r"k\\xe4fer is not named in UTF-8"):
        scan(DATASETS["imagefolder"], images)


def test_a_decompression_bomb_is_named_by_its_path(images: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 16 x 20 = 320 pixels: over twice the limit, as a 20000 x 20000 PNG is
    with pytest.raises(UnreadableImageError, match=r"images/train/ant/0.png cannot be read \(DecompressionBombError"):
        load_dataset("imagefolder", images, image_size=16, load_size=16)


def test_a_garbage_statistics_cache_and_a_truncated_decoded_cache_are_rebuilt_saying_so(
    images: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    first = load_dataset("imagefolder", images, image_size=16, load_size=16, cache_dir=cache)
    stats = [p for p in cache.iterdir() if p.suffix == ".json"]
    arrays = sorted(p for p in cache.iterdir() if p.suffix == ".npy")
    assert len(stats) == 1 and arrays
    stats[0].write_text("{not json")
    arrays[0].write_bytes(arrays[0].read_bytes()[:200])  # the header and a little of the pixels
    with caplog.at_level(logging.WARNING):
        again = load_dataset("imagefolder", images, image_size=16, load_size=16, cache_dir=cache)
    said = caplog.text
    assert f"statistics cache {stats[0]} is not readable" in said and "decoded cache" in said and str(arrays[0]) in said
    assert again.spec.mean == first.spec.mean and json.loads(stats[0].read_text())["mean"] == list(first.spec.mean)
    assert bool((again.train.images == first.train.images).all())  # type: ignore[attr-defined]


# --- interrupted work ---------------------------------------------------------------------------------


def test_an_evaluation_stopped_by_a_signal_ends_its_run_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trainables.integration.tracking import create_run
    from trainables.run import evaluation
    from trainables.spec import run_schema as rs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = create_run(uri, "e", run_name="eval", params={}, tags={})

    def stopped(*args: object) -> None:
        raise KeyboardInterrupt("stopped by SIGTERM to the driver")  # what study/stopping.py raises on the signal

    monkeypatch.setattr(evaluation, "evaluate_predicting", stopped)
    with pytest.raises(KeyboardInterrupt):
        evaluation.record(None, None, None, tracking_uri=uri, run_id=run_id)  # type: ignore[arg-type]
    run_ = MlflowClient(uri).get_run(run_id)
    assert run_.info.status == "KILLED" and run_.data.tags[rs.FAILURE_REASON] == "stopped by SIGTERM to the driver"


def test_a_decoding_interrupted_midway_leaves_no_partial_cache(images: Path, tmp_path: Path) -> None:
    from trainables.core.data.decode import ImageFiles, decoded

    class Interrupted(ImageFiles):
        def __getitem__(self, index: int):  # type: ignore[no-untyped-def]
            if index == 5:
                raise KeyboardInterrupt  # Ctrl-C while the folder is decoded
            return super().__getitem__(index)

    files = Interrupted(sorted((images / "train" / "ant").glob("*.png")), 16)
    with pytest.raises(KeyboardInterrupt):
        decoded(files, tmp_path / "cache" / "train.npy", num_workers=0)
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []
