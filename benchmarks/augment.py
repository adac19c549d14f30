"""Throughput of the batched SimCLR augmentations against the per-image pipelines users run.

Compares, per image size, the images per second that produce V views each of:
  ours         trainables.core.augment.SimCLRAugment on the device, whole batches at once;
  torchvision  torchvision.transforms.v2 per image, in a DataLoader with one worker per thread
               ours gets (the batches are moved to the device, as training would);
  kornia       kornia.augmentation's batched equivalent on the device, if kornia is importable.

Timing: time.perf_counter around one pass over `--batches` batches (for the DataLoader, one
epoch of at least as many, a whole number per worker), after a warm-up pass of each method.
The methods take turns for `--repeats` rounds and the median images/s of each is reported.
Each thread count of `--threads` is one budget of cores: ours and kornia run on that many torch
threads, torchvision on that many loader workers. On CUDA the clock stops after a synchronise.
Writes benchmarks/results/augment-<device>.json and appends one line to benchmarks/RESULTS.md.

    python benchmarks/augment.py --device cpu --sizes 32 64 96 224 --threads 1 2 --batch 256
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch import Tensor  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from benchmarks.common import median, parse_timing_args, record, report_header, timing_parser  # noqa: E402
from trainables.core.augment import AugmentConfig, SimCLRAugment  # noqa: E402
from trainables.spec.datasets import augment_defaults  # noqa: E402

SHARED_DATA = Path(os.environ.get("NCE_SHARED_DATA", REPO.parent / "shared" / "data"))  # as tests/conftest.py
CIFAR10_BATCH = SHARED_DATA / "cifar10" / "cifar-10-batches-py" / "data_batch_1"
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = timing_parser(__doc__, repeats=7)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 96, 224], help="image sides in pixels")
    parser.add_argument("--batch", type=int, default=512, help="images per batch")
    parser.add_argument("--views", type=int, default=2, help="views per image")
    parser.add_argument("--batches", type=int, default=4, help="batches per timed repeat")
    parser.add_argument(
        "--threads", type=int, nargs="+", help="core budgets: torch threads of ours and kornia, torchvision's workers"
    )
    return parse_timing_args(parser, argv)


def load_images(size: int, count: int) -> tuple[Tensor, str]:
    """Real CIFAR-10 images at 32 px where the shared copy exists, else random uint8 images.

    Shape:
        return: [count, 3, size, size] uint8, with a description of the data.
    """
    if size == 32 and CIFAR10_BATCH.is_file() and count <= 10_000:
        with CIFAR10_BATCH.open("rb") as f:
            pixels = pickle.load(f, encoding="bytes")[b"data"][:count]
        return torch.from_numpy(pixels).view(count, 3, 32, 32).clone(), "CIFAR-10 data_batch_1"
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (count, 3, size, size), generator=generator, dtype=torch.uint8), "random uint8"


def torchvision_transform(cfg: AugmentConfig) -> v2.Compose:
    """The same pipeline as torchvision per-image transforms, as SimCLR code bases write it."""
    s = cfg.jitter_strength
    steps: list[torch.nn.Module] = [
        v2.RandomResizedCrop(cfg.image_size, scale=cfg.crop_scale, ratio=cfg.crop_ratio, antialias=True),
        v2.RandomHorizontalFlip(cfg.flip_prob),
        v2.RandomApply([v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=cfg.jitter_prob),
        v2.RandomGrayscale(cfg.gray_prob),
    ]
    if cfg.blur_prob > 0:
        steps.append(v2.RandomApply([v2.GaussianBlur(cfg.blur_kernel_size, cfg.blur_sigma)], p=cfg.blur_prob))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(cfg.mean), list(cfg.std))]
    return v2.Compose(steps)


class MultiViewDataset(Dataset):
    """Each item is V independently transformed views of one image.

    Shape:
        images: [N, 3, H, W] uint8; item: [V, 3, S, S] float32.
    """

    def __init__(self, images: Tensor, transform: Callable[[Tensor], Tensor], views: int) -> None:
        self.images, self.transform, self.views = images, transform, views

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tensor:
        return torch.stack([self.transform(self.images[index]) for _ in range(self.views)])


def kornia_pipeline(cfg: AugmentConfig) -> Callable[[Tensor], Tensor] | None:
    """kornia.augmentation's batched equivalent, or None where kornia is not installed."""
    try:
        import kornia.augmentation as K
    except ImportError:
        return None
    s = cfg.jitter_strength
    steps = [
        K.RandomResizedCrop((cfg.image_size, cfg.image_size), scale=cfg.crop_scale, ratio=cfg.crop_ratio),
        K.RandomHorizontalFlip(p=cfg.flip_prob),
        K.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=cfg.jitter_prob),
        K.RandomGrayscale(p=cfg.gray_prob),
    ]
    if cfg.blur_prob > 0:
        size = cfg.blur_kernel_size
        steps.append(K.RandomGaussianBlur((size, size), cfg.blur_sigma, p=cfg.blur_prob))
    steps.append(K.Normalize(mean=torch.tensor(cfg.mean), std=torch.tensor(cfg.std)))
    return K.AugmentationSequential(*steps)


def synchronise(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def batches_rate(run_batch: Callable[[Tensor], Tensor], batches: list[Tensor], device: str) -> float:
    """Images per second of one pass of a batched pipeline over the batches."""
    synchronise(device)
    start = time.perf_counter()
    for batch in batches:
        run_batch(batch)
    synchronise(device)
    return sum(len(batch) for batch in batches) / (time.perf_counter() - start)


def loader_rate(loader: DataLoader, device: str) -> float:
    """Images per second of one epoch of the loader, each batch moved to the device."""
    start = time.perf_counter()
    for views in loader:
        views.to(device, non_blocking=True)
    synchronise(device)
    return len(loader.dataset) / (time.perf_counter() - start)


def pipelines(size: int, args: argparse.Namespace) -> tuple[dict[str, Callable[[], float]], str]:
    """One timed pass of each available method at one image size, and the data's description."""
    cfg = AugmentConfig(size, MEAN, STD, **augment_defaults(size))  # CIFAR's settings at 32 px, STL-10's above
    workers = torch.get_num_threads()  # the same cores for every method
    # A worker makes whole batches, so an epoch gives every worker the same number of them.
    loader_batches = -(-args.batches // workers) * workers
    images, source = load_images(size, args.batch * loader_batches)
    on_device = [chunk.to(args.device) for chunk in images[: args.batch * args.batches].split(args.batch)]
    generator = torch.Generator(args.device).manual_seed(0)
    augment = SimCLRAugment(cfg)
    dataset = MultiViewDataset(images, torchvision_transform(cfg), args.views)
    loader = DataLoader(
        dataset, args.batch, num_workers=workers, persistent_workers=True, pin_memory=args.device == "cuda"
    )
    timers = {
        "ours": lambda: batches_rate(lambda x: augment.views(x, args.views, generator), on_device, args.device),
        "torchvision": lambda: loader_rate(loader, args.device),
    }
    kornia = kornia_pipeline(cfg)
    if kornia is not None:
        kornia = kornia.to(args.device)

        def kornia_views(batch: Tensor) -> Tensor:
            return kornia(batch.float().div_(255).repeat_interleave(args.views, 0))

        timers["kornia"] = lambda: batches_rate(kornia_views, on_device, args.device)
    return timers, source


def bench_size(size: int, args: argparse.Namespace) -> dict[str, object]:
    """Times every method at one size, alternating methods so that drifting load hits all alike."""
    timers, source = pipelines(size, args)
    for timer in timers.values():  # warm-up; also starts the loader's workers
        timer()
    rates: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(args.repeats):
        for name, timer in timers.items():
            rates[name].append(timer())
    medians = {name: median(values) for name, values in rates.items()}
    baseline = medians["torchvision"]
    ratios = {f"{name}/torchvision": rate / baseline for name, rate in medians.items() if name != "torchvision"}
    return {"data": source, "images_per_s": rates, "median_images_per_s": medians, "ratios": ratios}


def summary(report: dict[str, object]) -> tuple[str, str]:
    """The RESULTS.md settings and result cells: medians in images/s and ratios to torchvision, per size."""
    parts = []
    for threads, sizes in report["threads"].items():
        for size, result in sizes.items():
            medians = ", ".join(f"{name} {rate:,.0f}" for name, rate in result["median_images_per_s"].items())
            ratios = ", ".join(f"{name} {ratio:.2f}x" for name, ratio in result["ratios"].items())
            parts.append(f"{threads} thread(s), {size} px: {medians} images/s; {ratios}")
    settings = (
        f"`{report['command']}`; batch {report['batch']}, {report['views']} views, "
        f"{report['batches']} batches per repeat, {report['repeats']} repeats, median; "
        "torch threads = loader workers = the thread count; load average "
        f"{report['load_average_before']:.1f} before, {report['load_average_after']:.1f} after"
    )
    return settings, "<br>".join(parts)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    report = {
        **report_header("augment", __file__, argv, args.device, ("torch", "torchvision", "kornia")),
        "device": args.device,
        **{key: getattr(args, key) for key in ("batch", "views", "batches", "repeats")},
        "load_average_before": os.getloadavg()[0],
        "threads": {},
    }
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        report["threads"][str(threads)] = {str(size): bench_size(size, args) for size in args.sizes}
    report["load_average_after"] = os.getloadavg()[0]
    medians = {
        f"{threads} thread(s), {size} px": result["median_images_per_s"] | result["ratios"]
        for threads, sizes in report["threads"].items()
        for size, result in sizes.items()
    }
    print(json.dumps(medians, indent=2))
    if not args.no_record:
        print(f"wrote {record(f'augment-{args.device}', report, *summary(report))} and a line in RESULTS.md")


if __name__ == "__main__":
    main()
