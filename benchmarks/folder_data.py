"""Folder datasets against the built-in CIFAR-10 path: images/s of a pretraining epoch.

A subset of CIFAR-10's training images (``--images``, 5,000 by default, the first of each class)
is written as PNG files in a temporary ``train/<class>/`` tree, with 100 test images per class in
``val/<class>/``. Three paths then pretrain with the same model, loss, batch and threads, through
``trainables.run.pretrain.pretrain`` itself (one process, no Ray, no MLflow):

builtin  ``dataset=cifar10`` with ``limit_train`` set so that an epoch has as many images as the
         folder's training split;
cached   ``dataset=imagefolder`` on the PNGs: decoded once into the decoded cache (timed apart, as
         ``first load``), then held in memory and trained like CIFAR;
streamed the same folder with ``in_memory_gb=0``: every epoch decodes the PNGs in DataLoader
         workers (one per CPU left to this process; ``--stream`` to include it).

Each run pretrains ``--epochs`` epochs; the first is the warm-up and the images/s of the others
(as the loop reports them, kNN and checkpoints outside) are kept. The paths take turns for
``--rounds`` rounds, so that machine load hits them alike. Reported: the median images/s of each
path and cached / builtin, whose goal is at least 0.9.

    python benchmarks/folder_data.py
    python benchmarks/folder_data.py --images 10000 --rounds 3 --stream
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.common import median, record, report_header  # noqa: E402
from trainables.core.data import LabeledImages, load_dataset  # noqa: E402
from trainables.integration.session import LocalSession  # noqa: E402
from trainables.run.pretrain import pretrain  # noqa: E402
from trainables.spec import run_schema as rs  # noqa: E402
from trainables.spec.losses import BASELINE  # noqa: E402
from trainables.spec.pretrain_config import PretrainConfig, from_dict  # noqa: E402

VAL_FRACTION = 0.1
TEST_PER_CLASS = 100
NEVER = 10_000  # n_eval_epochs / n_save_epochs beyond any epoch: kNN and the checkpoint only after the last


def write_pngs(cifar_root: Path, folder: Path, images: int) -> int:
    """The first ``images / 10`` training images of each class and 100 test images per class, as PNGs."""
    cifar = load_dataset("cifar10", cifar_root)
    per_class = images // 10
    for part, split, count in (("train", cifar.train, per_class), ("val", cifar.test, TEST_PER_CLASS)):
        assert isinstance(split, LabeledImages)
        for label in range(10):
            target = folder / part / cifar.classes[label]
            target.mkdir(parents=True)
            for row in (split.labels == label).nonzero().squeeze(1)[:count].tolist():
                Image.fromarray(split.images[row].permute(1, 2, 0).numpy()).save(target / f"{row}.png")
    return per_class * 10


def config(args: argparse.Namespace, **data: Any) -> PretrainConfig:
    return from_dict(
        {
            "backbone": args.backbone,
            "head": "mlp",
            "loss": BASELINE,
            "batch_size": args.batch,
            "epochs": args.epochs,
            "optimizer": "lars",
            "lr": 0.3,
            "val_fraction": VAL_FRACTION,
            "seed": 0,
            "knn_k": 20,
            "n_eval_epochs": NEVER,
            "n_save_epochs": NEVER,
            **data,
        }
    )


def epochs_per_s(cfg: PretrainConfig, folder: Path) -> list[float]:
    """images/s of the epochs after the first."""
    session = LocalSession(folder)
    pretrain(cfg, session)
    return [r[rs.M_IMAGES_PER_S] for r in session.reported[1:]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--cifar-root", type=Path, default=Path(os.environ.get("NCE_SHARED_DATA", REPO.parent / "shared" / "data")) / "cifar10"
    )
    parser.add_argument("--images", type=int, default=5_000, help="training PNGs written (a multiple of 10)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--backbone", default="small")
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is the warm-up")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--stream", action="store_true", help="also time the streamed folder path")
    parser.add_argument("--no-record", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="nce-folder-bench-") as tmp:
        root = Path(tmp)
        written = write_pngs(args.cifar_root, root / "pngs", args.images)
        train_images = written - round(written * VAL_FRACTION)
        paths = {
            "builtin": config(args, dataset="cifar10", data_dir=str(args.cifar_root), limit_train=train_images),
            "cached": config(args, dataset="imagefolder", data_dir=str(root / "pngs")),
        }
        if args.stream:
            paths["streamed"] = config(args, dataset="imagefolder", data_dir=str(root / "pngs"), in_memory_gb=0.0)
        started = time.perf_counter()
        first = load_dataset("imagefolder", root / "pngs", val_fraction=VAL_FRACTION)
        first_load = time.perf_counter() - started
        started = time.perf_counter()
        load_dataset("imagefolder", root / "pngs", val_fraction=VAL_FRACTION)
        cached_load = time.perf_counter() - started
        assert len(first.pretrain) == train_images, (len(first.pretrain), train_images)
        rates: dict[str, list[float]] = {name: [] for name in paths}
        for round_ in range(args.rounds):
            for name, cfg in paths.items():
                rates[name] += epochs_per_s(cfg, root / f"run-{name}-{round_}")
                print(f"round {round_ + 1}: {name} {median(rates[name]):,.0f} images/s so far", flush=True)
    medians = {name: median(values) for name, values in rates.items()}
    ratio = medians["cached"] / medians["builtin"]
    report = {
        **report_header("folder_data", __file__, argv),
        "images": train_images,
        "batch": args.batch,
        "backbone": args.backbone,
        "threads": args.threads,
        "epochs": args.epochs,
        "rounds": args.rounds,
        "images_per_s": rates,
        "median_images_per_s": medians,
        "cached_over_builtin": ratio,
        "first_load_s": first_load,
        "cached_load_s": cached_load,
        "load_average": os.getloadavg(),
    }
    settings = (
        f"`{report['command'].strip()}`; {train_images:,} CIFAR-10 PNGs (32 px) against cifar10 with limit_train {train_images:,}; "
        f"{args.backbone} + mlp, {BASELINE}, batch {args.batch}, {args.threads} torch threads; epochs 2..{args.epochs} of "
        f"{args.rounds} alternating rounds, median; load average after {report['load_average'][0]:.1f}"
    )
    result = (
        f"images/s: builtin {medians['builtin']:,.0f}, cached folder {medians['cached']:,.0f}"
        + (f", streamed folder {medians['streamed']:,.0f}" if "streamed" in medians else "")
        + f"; cached / builtin = {ratio:.3f} (goal >= 0.9); folder first load (decode + cache) {first_load:.1f} s, "
        f"then {cached_load:.1f} s from the cache"
    )
    print(result)
    if not args.no_record:
        print(f"wrote {record('folder_data-cpu', report, settings, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
