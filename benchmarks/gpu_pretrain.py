"""SimCLR ResNet-18 on CIFAR-10, batch 512, on one GPU: seconds per epoch and images per second.

Standalone: needs only torch and torchvision, and imports the project's loss, augmentation,
model and optimiser code (trainables/core/losses, augment.py, models.py, optim.py) by path.

Two input pipelines feed the same training step:
  ours         CIFAR-10 resident on the GPU as uint8, a randperm on the GPU picks each batch and
               trainables.core.augment.SimCLRAugment makes the views on the GPU, whole batches at once;
  torchvision  torchvision.transforms.v2 per image in a DataLoader with --workers processes
               (default: every core), batches copied to the GPU from pinned memory.
The step: ResNet-18 (CIFAR stem) + mlp head, all views in one forward, bf16 autocast,
channels_last weights, the loss in float32, fused SGD (or LARS), no host sync in the step
(the loss is summed on the device and read once per epoch). --compile compiles the model;
compilation happens in the warm-up epoch, which is never timed.

Timing: one warm-up epoch, then --epochs timed epochs, each between two CUDA events (on the
CPU, time.perf_counter); s/epoch is the median. After the timed epochs --profile-steps steps
run under torch.profiler and the time spent in augmentation, forward, loss, backward and
optimiser is reported, with the host syncs one step makes.

Data: --data-dir holds cifar-10-batches-py (or is it). With all five training batches,
torchvision's CIFAR10 reads them; with data_batch_1 only, it is read with pickle and tiled to
50,000 images (printed and recorded as such).

    python benchmarks/gpu_pretrain.py --data-dir data/cifar10 --losses infonce flatnce
    python benchmarks/gpu_pretrain.py --data-dir data/cifar10 --compile --no-baseline --losses infonce
    python benchmarks/gpu_pretrain.py --device cpu --epochs 1 --limit 1024 --data-dir ../shared/data/cifar10
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch.profiler import ProfilerActivity, profile, record_function  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from benchmarks.augment import torchvision_transform  # noqa: E402
from benchmarks.common import machine, median, record, report_header  # noqa: E402
from trainables.core.augment import AugmentConfig, SimCLRAugment, augment_config_for, eval_transform  # noqa: E402
from trainables.core.knn import knn_predict  # noqa: E402
from trainables.core.losses import CATALOG, build_loss  # noqa: E402
from trainables.core.losses.base import ContrastiveLoss  # noqa: E402
from trainables.core.models import build_model, prepare_for_device  # noqa: E402
from trainables.core.optim import build_optimizer  # noqa: E402
from trainables.spec.datasets import DATASETS  # noqa: E402
from trainables.spec.losses import BASELINE, HYPERPARAMETERS, hyperparameter_names  # noqa: E402

CIFAR_TRAIN_IMAGES = 50_000
PHASES = ("augment", "forward", "loss", "backward", "optimizer")


# --- data --------------------------------------------------------------------------------------
def load_cifar10(data_dir: Path, limit: int | None) -> tuple[Tensor, Tensor, str]:
    """The CIFAR-10 training images as uint8 [N, 3, 32, 32] on the CPU, their labels, and where they came from."""
    folder = data_dir if data_dir.name == "cifar-10-batches-py" else data_dir / "cifar-10-batches-py"
    batches = [folder / f"data_batch_{i}" for i in range(1, 6)]
    if all(b.is_file() for b in batches):
        dataset = torchvision.datasets.CIFAR10(str(folder.parent), train=True, download=False)
        images, source = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous(), "CIFAR-10 training set (torchvision CIFAR10)"
        labels = torch.tensor(dataset.targets)
    elif batches[0].is_file():
        with batches[0].open("rb") as f:
            batch = pickle.load(f, encoding="latin1")
        first = torch.from_numpy(batch["data"]).view(-1, 3, 32, 32)
        images = first.repeat(CIFAR_TRAIN_IMAGES // len(first), 1, 1, 1)
        labels = torch.tensor(batch["labels"]).repeat(CIFAR_TRAIN_IMAGES // len(first))
        source = f"CIFAR-10 data_batch_1 ({len(first):,} images) tiled to {len(images):,}"
    else:
        raise SystemExit(f"--data-dir {data_dir}: no cifar-10-batches-py/data_batch_1 there")
    if limit is not None:
        images, labels, source = images[:limit], labels[:limit], f"{source}, first {limit:,}"
    return images, labels, source


def hold_out(images: Tensor, labels: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(train images, train labels, validation images, validation labels): n images drawn with seed 0."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    return images[order[n:]], labels[order[n:]], images[order[:n]], labels[order[:n]]


@torch.no_grad()
def validation_knn(
    trainer: Trainer, cfg: AugmentConfig, train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor], device: torch.device
) -> float:
    """kNN accuracy (k = 200, t = 0.1, the project's monitor) of the held-out images against the training images."""
    trainer.model.eval()

    def features(images: Tensor) -> Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=trainer.bf16):
            parts = [trainer.model.features(eval_transform(chunk.to(device), cfg)).float() for chunk in images.split(1024)]
        return torch.nn.functional.normalize(torch.cat(parts), dim=1)

    predicted = knn_predict(features(train[0]), train[1].to(device), features(val[0]), k=200, temperature=0.1, num_classes=10)
    return (predicted.cpu() == val[1]).float().mean().item()


class TorchvisionViews(Dataset):
    """V views of one image through torchvision's per-image v2 transforms (SimCLR's CIFAR recipe).

    Shape:
        images: [N, 3, 32, 32] uint8; item: [V, 3, S, S] float32.
    """

    def __init__(self, images: Tensor, cfg: AugmentConfig, views: int) -> None:
        self.images, self.transform, self.views = images, torchvision_transform(cfg), views

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tensor:
        return torch.stack([self.transform(self.images[index]) for _ in range(self.views)])


def resident_batches(
    images: Tensor, augment: SimCLRAugment, args: argparse.Namespace, views_per_image: int, generator: torch.Generator
) -> Iterator[Tensor]:
    """An epoch of views made on the device from the resident uint8 images."""
    order = torch.randperm(len(images), device=images.device, generator=generator)
    for step in range(len(images) // args.batch):
        with record_function("augment"):
            views = augment.views(images[order[step * args.batch : (step + 1) * args.batch]], views_per_image, generator)
        yield views


def loader_batches(loader: DataLoader, device: torch.device) -> Iterator[Tensor]:
    for views in loader:
        yield views.to(device, non_blocking=True)


# --- training ----------------------------------------------------------------------------------
class Trainer:
    """The training step shared by both pipelines."""

    def __init__(self, args: argparse.Namespace, loss_name: str, device: torch.device, compile_model: bool) -> None:
        torch.manual_seed(0)
        self.device, self.args = device, args
        model = prepare_for_device(build_model("resnet18", "mlp", 32), device, distributed=False)
        self.model = model
        self.forward: nn.Module = torch.compile(model) if compile_model else model
        given = {name: getattr(args, name) for name in CATALOG[loss_name].hyperparameters if getattr(args, name) is not None}
        self.loss: ContrastiveLoss = build_loss(loss_name, gather_distributed=False, **given)
        self.optimizer = build_optimizer(
            args.optimizer, model, args.lr, weight_decay=args.weight_decay, momentum=0.9, fused=device.type == "cuda"
        )
        self.bf16 = device.type == "cuda" and not args.fp32
        self.loss_sum = torch.zeros((), device=device)
        self.schedule = None
        if args.cosine:  # over the warm-up epoch and the timed ones, stepped every step
            total = (1 + args.epochs) * (args.train_images // args.batch)
            self.schedule = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
            )

    def step(self, views: Tensor) -> None:
        with record_function("forward"), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            z = self.forward(views)
        with record_function("loss"):
            loss = self.loss(z)
        with record_function("backward"):
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with record_function("optimizer"):
            self.optimizer.step()
            if self.schedule is not None:
                self.schedule.step()
        self.loss_sum += loss.detach()

    def epoch(self, batches: Iterator[Tensor]) -> tuple[float, float, int]:
        """(seconds, mean loss, steps) of one pass; the only host sync is at its end."""
        self.model.train()
        self.loss_sum.zero_()
        timer = EpochTimer(self.device)
        steps = 0
        for views in batches:
            self.step(views)
            steps += 1
        seconds = timer.stop()
        return seconds, self.loss_sum.item() / max(steps, 1), steps


class EpochTimer:
    """CUDA events on the GPU, time.perf_counter on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.begin = time.perf_counter()

    def stop(self) -> float:
        if not self.cuda:
            return time.perf_counter() - self.begin
        self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end) / 1e3


def host_syncs(trainer: Trainer, make_batches: Callable[[], Iterator[Tensor]]) -> dict[str, int]:
    """Synchronising CUDA calls during one step, by the project source line that made them."""
    found: dict[str, int] = {}

    def note(message: Warning | str, *rest: object, **kw: object) -> None:
        frames = [f for f in traceback.extract_stack() if str(REPO) in f.filename and "gpu_pretrain" not in f.filename]
        where = f"{Path(frames[-1].filename).relative_to(REPO)}:{frames[-1].lineno} {frames[-1].line}" if frames else "benchmark"
        found[where] = found.get(where, 0) + 1

    batches = make_batches()
    torch.cuda.synchronize()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = note  # type: ignore[assignment]
        torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer.step(next(batches))
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return found


def phase_profile(trainer: Trainer, make_batches: Callable[[], Iterator[Tensor]], steps: int) -> dict[str, object]:
    """Device (and host) milliseconds per step of each phase, and the top kernels."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if trainer.device.type == "cuda" else [])
    batches = make_batches()
    with profile(activities=activities) as prof:
        begin = time.perf_counter()
        for _ in range(steps):
            trainer.step(next(batches))
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - begin) * 1e3 / steps
    averages = prof.key_averages()
    device_ms = lambda e: getattr(e, "device_time_total", 0.0) / 1e3 / steps  # noqa: E731
    phases = {e.key: {"host_ms": e.cpu_time_total / 1e3 / steps, "device_ms": device_ms(e)} for e in averages if e.key in PHASES}
    kernels = sorted((e for e in averages if getattr(e, "self_device_time_total", 0) > 0), key=lambda e: -e.self_device_time_total)
    top = [{"kernel": e.key[:100], "device_ms": e.self_device_time_total / 1e3 / steps} for e in kernels[:15]]
    return {"steps": steps, "wall_ms_per_step_profiled": wall_ms, "phases": phases, "top_kernels": top}


def diagnostic(measure: Callable[[], object]) -> object:
    try:
        return measure()
    except Exception as err:  # noqa: BLE001 - reported in the JSON instead
        return {"error": f"{type(err).__name__}: {err}"}


def run_variant(
    args: argparse.Namespace,
    pipeline: str,
    loss_name: str,
    compile_model: bool,
    images: Tensor,
    device: torch.device,
    val: tuple[Tensor, Tensor, Tensor] | None = None,
) -> dict[str, object]:
    """One pipeline's warm-up and timed epochs; with ``val`` = (train labels, val images, val labels),
    also the validation kNN accuracy and the whole run's wall-clock."""
    trainer = Trainer(args, loss_name, device, compile_model)
    cfg = augment_config_for(DATASETS["cifar10"])
    views = CATALOG[loss_name].views_per_image(args.views)
    if pipeline == "ours":
        resident = images.to(device)
        augment, generator = SimCLRAugment(cfg), torch.Generator(device).manual_seed(0)
        make_batches = lambda: resident_batches(resident, augment, args, views, generator)  # noqa: E731
    else:
        dataset = TorchvisionViews(images, cfg, views)
        loader = DataLoader(
            dataset,
            args.batch,
            shuffle=True,
            drop_last=True,
            num_workers=args.workers,
            pin_memory=device.type == "cuda",
            persistent_workers=args.workers > 0,
        )
        make_batches = lambda: loader_batches(loader, device)  # noqa: E731
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    warmup_s, _, steps = trainer.epoch(make_batches())
    timed = [trainer.epoch(make_batches()) for _ in range(args.epochs)]
    seconds = [t[0] for t in timed]
    result: dict[str, object] = {
        "pipeline": pipeline,
        "loss": loss_name,
        "views_per_image": views,
        "compile": compile_model,
        "steps_per_epoch": steps,
        "warmup_epoch_s": warmup_s,
        "s_per_epoch": seconds,
        "median_s_per_epoch": median(seconds),
        "images_per_s": steps * args.batch / median(seconds),
        "epoch_losses": [t[1] for t in timed],
    }
    if device.type == "cuda":
        result["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    if val is not None:
        result["wall_clock_s"] = warmup_s + sum(seconds)
        result["val_knn_acc"] = validation_knn(trainer, cfg, (images, val[0]), (val[1], val[2]), device)
        print(
            f"{pipeline:11s} {loss_name:8s} {1 + args.epochs} epochs in {result['wall_clock_s']:.0f} s; validation kNN {result['val_knn_acc']:.2%}",
            flush=True,
        )
    # Diagnostics after the timed epochs; a failure here must not lose the timings.
    if device.type == "cuda" and pipeline == "ours":
        result["host_syncs_per_step"] = diagnostic(lambda: host_syncs(trainer, make_batches))
    if pipeline == "ours" and args.profile_steps > 0:
        result["profile"] = diagnostic(lambda: phase_profile(trainer, make_batches, args.profile_steps))
    print(
        f"{pipeline:11s} {loss_name:8s} compile={compile_model!s:5s} warm-up {warmup_s:6.1f} s, "
        f"{result['median_s_per_epoch']:.2f} s/epoch, {result['images_per_s']:,.0f} images/s (epochs {', '.join(f'{s:.2f}' for s in seconds)})",
        flush=True,
    )
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding cifar-10-batches-py (or that folder)")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--batch", type=int, default=512, help="images per step (default 512)")
    parser.add_argument("--views", type=int, default=1, help="M, positive views per anchor (default 1: two views)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up epoch (default 3)")
    parser.add_argument("--limit", type=int, help="use only the first N training images (smoke tests)")
    parser.add_argument("--losses", nargs="+", default=[BASELINE], choices=list(CATALOG), help=f"default: {BASELINE}")
    for name in hyperparameter_names():
        parser.add_argument(
            f"--{name}", type=float, help=f"{HYPERPARAMETERS[name].meaning}, for the losses taking it (default: each loss's own)"
        )
    parser.add_argument("--optimizer", choices=("sgd", "lars"), default="sgd")
    parser.add_argument("--lr", type=float, help="default: 0.06 x batch/128 for sgd (lightly's CIFAR-10 recipe), 0.3 x batch/256 for lars")
    parser.add_argument("--weight-decay", type=float, help="default: 5e-4 for sgd, 1e-6 for lars")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (warm-up epoch absorbs the compilation)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the torchvision per-image pipeline")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="DataLoader workers of the torchvision pipeline (default: all cores)"
    )
    parser.add_argument("--profile-steps", type=int, default=10, help="steps profiled after the timed epochs (0: none)")
    parser.add_argument("--no-record", action="store_true", help="print only; write no JSON or RESULTS.md line")
    parser.add_argument(
        "--knn-holdout",
        type=int,
        default=0,
        help="hold out N training images (seed 0) and report their kNN accuracy and the run's wall-clock",
    )
    parser.add_argument("--cosine", action="store_true", help="cosine lr decay over all epochs, stepped every step (default: constant lr)")
    args = parser.parse_args(argv)
    for name in hyperparameter_names():
        if getattr(args, name) is not None and not any(name in CATALOG[loss].hyperparameters for loss in args.losses):
            parser.error(f"--{name}={getattr(args, name)}: none of --losses {' '.join(args.losses)} takes it")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    if args.lr is None:
        args.lr = 0.06 * args.batch / 128 if args.optimizer == "sgd" else 0.3 * args.batch / 256
    if args.weight_decay is None:
        args.weight_decay = 5e-4 if args.optimizer == "sgd" else 1e-6
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
    images, labels, source = load_cifar10(args.data_dir, args.limit)
    val = None
    if args.knn_holdout:
        images, train_labels, val_images, val_labels = hold_out(images, labels, args.knn_holdout)
        val, source = (train_labels, val_images, val_labels), f"{source}; {args.knn_holdout:,} held out (seed 0) for validation kNN"
    args.train_images = len(images)
    print(f"data: {source}; {machine(args.device)}; torch {torch.__version__}", flush=True)
    runs = [run_variant(args, "ours", loss, args.compile, images, device, val) for loss in args.losses]
    if not args.no_baseline:
        runs.append(run_variant(args, "torchvision", args.losses[0], args.compile, images, device))
    ours = runs[0]
    report: dict[str, object] = {
        **report_header("gpu_pretrain", __file__, argv, args.device),
        "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
        "torch": torch.__version__,
        "device": args.device,
        "data": source,
        "settings": {k: v for k, v in vars(args).items() if k != "data_dir"}
        | {"bf16": device.type == "cuda" and not args.fp32, "channels_last": device.type == "cuda"},
        "runs": runs,
    }
    if not args.no_baseline:
        report["ratio_torchvision_over_ours"] = runs[-1]["median_s_per_epoch"] / ours["median_s_per_epoch"]
        print(f"ours is {report['ratio_torchvision_over_ours']:.2f}x the torchvision pipeline's speed")
    if args.no_record:
        return
    name = f"gpu_pretrain-{args.device}" + ("-compile" if args.compile else "")
    results = "; ".join(
        f"{r['pipeline']} {r['loss']}: {r['median_s_per_epoch']:.2f} s/epoch, {r['images_per_s']:,.0f} images/s"
        + (
            f", validation kNN {r['val_knn_acc']:.2%} after {1 + args.epochs} epochs in {r['wall_clock_s']:.0f} s"
            if "val_knn_acc" in r
            else ""
        )
        for r in runs
    )
    if "ratio_torchvision_over_ours" in report:
        results += f"; torchvision / ours = {report['ratio_torchvision_over_ours']:.2f}x"
    if args.compile:
        results += "; compile warm-up " + ", ".join(f"{r['warmup_epoch_s']:.0f} s" for r in runs)
    settings = (
        f"`{report['command']}`; {source}; batch {args.batch}, M={args.views}, ResNet-18 + mlp, {args.optimizer}, "
        f"{'fp32' if args.fp32 or device.type != 'cuda' else 'bf16'}, 1 warm-up + {args.epochs} timed epochs, median"
    )
    print(f"wrote {record(name, report, settings, results)}")


if __name__ == "__main__":
    main()
