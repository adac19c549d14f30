"""Trainer overhead: images/s of pretraining epochs through the full stack against a plain loop.

full stack  ``study/train.py`` in a subprocess: Ray Train's TorchTrainer with one worker, the
            run recorded in MLflow (a temporary SQLite store), checkpoints to a temporary
            folder, the kNN monitor off (n_eval_epochs > epochs; it still runs after the last
            epoch, which is not timed). Per-epoch time is the gap between the MLflow
            timestamps of consecutive epochs, so it holds everything between epochs too
            (Ray's report, MLflow logging); the images/s the loop itself reports is recorded
            beside it.
plain loop  written below, run in a child process: the components the trainable builds
            (build_components: data, augmentation with the config's jitter and blur, the model
            seeded as a trial's), the same build_loss, optimiser, schedule, batch order, batch
            size, device and torch threads, with no Ray, MLflow, checkpoints or guards, at the
            niceness Ray gives its workers (15).

Modes (--mode):
  concurrent  (default) both at once, each pinned to its own core with one thread: the plain
              loop on core 0, the whole full stack (driver, Ray's daemons, the worker with
              cpus_per_worker=1) on core 1. The plain loop runs epochs until the full stack
              ends; its epochs after the first are compared (in_window marks those that lie
              wholly inside the full stack's timed window).
  sequential  one after the other, each with every core (--cpus threads, cpus_per_worker).
Each round gives the full stack's epochs 2 .. epochs-1 (epoch 1 is the warm-up, the last runs
kNN) and the plain loop's epochs after its first (concurrent) or its epochs 2 .. epochs-1
(sequential); medians over all rounds.

Two ratios, full stack / plain:
  images/s       from wall-clock, as the issue asks; on a machine shared with other jobs it
                 moves with their load (which core they land on, for the concurrent mode);
  core-seconds   images per CPU-second: the plain loop's own CPU time per epoch
                 (time.process_time) against the CPU time per epoch of every process of the
                 full stack (the worker, the driver and Ray's daemons), sampled from /proc over
                 the timed window. With one thread per side no thread spins while waiting,
                 so this does not move with other jobs' load; on a machine of its own, where
                 the CPU is the bottleneck, it is the images/s ratio. The per-process CPU
                 seconds in the JSON show where the full stack's time went.

    python benchmarks/trainer_overhead.py                      # concurrent, CIFAR-10 subset, small backbone
    python benchmarks/trainer_overhead.py --mode sequential --rounds 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmarks.common import ProcessCpu, median, record, report_header  # noqa: E402
from trainables.core.augment import SimCLRAugment  # noqa: E402
from trainables.core.components import build_components  # noqa: E402
from trainables.core.data import epoch_generator  # noqa: E402
from trainables.core.losses import CATALOG, build_loss  # noqa: E402
from trainables.core.models import prepare_for_device  # noqa: E402
from trainables.core.optim import build_optimizer, build_schedule  # noqa: E402
from trainables.integration.mlflow_search import search_runs  # noqa: E402
from trainables.spec import run_schema as rs  # noqa: E402
from trainables.spec.losses import BASELINE  # noqa: E402
from trainables.spec.lr_scaling import scaled_lr  # noqa: E402
from trainables.spec.pretrain_config import PretrainConfig, from_dict  # noqa: E402

NEVER = 10_000  # n_eval_epochs / n_save_epochs beyond any epoch: kNN and checkpoints only at the end
RAY_WORKER_NICENESS = 15


def study_config(args: argparse.Namespace, cpus: int) -> PretrainConfig:
    """The cifar10-cpu preset's settings (small backbone, LARS, cosine) on one worker; the loss's own temperature."""
    return from_dict(
        {
            "dataset": "cifar10",
            "data_dir": str(args.data_dir),
            "limit_train": args.limit_train,
            "backbone": args.backbone,
            "head": "mlp",
            "loss": args.loss,
            "views": 1,
            "optimizer": "lars",
            "lr": 0.075,
            "lr_scaling": "sqrt",
            "schedule": "cosine",
            "warmup_epochs": 1,
            "weight_decay": 1e-6,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "n_eval_epochs": NEVER,
            "n_save_epochs": NEVER,
            "workers": 1,
            "cpus_per_worker": float(cpus),
            "seed": 0,
        }
    )


# --- the plain loop --------------------------------------------------------------------------------
def plain_loop(cfg: PretrainConfig, stop_file: Path | None) -> list[dict[str, float]]:
    """Per epoch: start, end (time.time()), images/s and CPU seconds of a plain PyTorch loop
    over the trainer's parts; cfg.epochs epochs, or until ``stop_file`` exists."""
    c = build_components(cfg)  # the trainable's own builder: its seeding and the config's jitter and blur
    images = c.data.pretrain
    augment = SimCLRAugment(c.aug_cfg)
    model = prepare_for_device(c.model, torch.device("cpu"), distributed=False)
    steps = len(images) // cfg.batch_size
    optimizer = build_optimizer(
        cfg.optimizer, model, scaled_lr(cfg.lr, cfg.batch_size, cfg.lr_scaling), weight_decay=cfg.weight_decay, momentum=cfg.momentum
    )
    schedule = build_schedule(optimizer, cfg.schedule, warmup_steps=cfg.warmup_epochs * steps, total_steps=cfg.epochs * steps)
    loss_fn = build_loss(cfg.loss, **cfg.loss_hyperparameters())
    epochs = []
    for epoch in itertools.count(1):
        if (stop_file is None and epoch > cfg.epochs) or (stop_file is not None and stop_file.exists()):
            return epochs
        model.train()
        generator = epoch_generator(cfg.seed, epoch, "views")
        start, begin, cpu = time.time(), time.perf_counter(), time.process_time()
        for batch in images.worker_batches(cfg.batch_size, epoch - 1, cfg.seed, rank=0, world_size=1):
            views = augment.views(batch, cfg.views_per_image, generator)
            loss = loss_fn(model(views))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        seconds = time.perf_counter() - begin
        epochs.append(
            {"start": start, "end": time.time(), "images_per_s": steps * cfg.batch_size / seconds, "cpu_s": time.process_time() - cpu}
        )
    return epochs


def child_plain(spec: dict[str, Any]) -> None:
    torch.set_num_threads(spec["threads"])
    stop = Path(spec["stop_file"]) if spec["stop_file"] else None
    print("EPOCHS " + json.dumps(plain_loop(from_dict(spec["config"]), stop)), flush=True)


def start_plain(cfg: PretrainConfig, threads: int, cores: set[int] | None, stop_file: Path | None) -> subprocess.Popen:
    """The plain loop in a child process at Ray's worker niceness (and on ``cores``)."""
    spec = {"config": cfg.to_dict(), "threads": threads, "stop_file": str(stop_file) if stop_file else None}

    def prepare() -> None:
        os.nice(RAY_WORKER_NICENESS)
        if cores:
            os.sched_setaffinity(0, cores)

    command = [sys.executable, str(Path(__file__).resolve()), "--child-plain", json.dumps(spec)]
    return subprocess.Popen(
        command, env=os.environ | {"PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=prepare
    )


def plain_epochs(process: subprocess.Popen) -> list[dict[str, float]]:
    out, err = process.communicate()
    lines = [line for line in out.splitlines() if line.startswith("EPOCHS ")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"the plain loop failed ({process.returncode}):\n{out[-2000:]}{err[-3000:]}")
    return json.loads(lines[-1].removeprefix("EPOCHS "))


# --- the full stack --------------------------------------------------------------------------------
def cli_flags(cfg: PretrainConfig) -> list[str]:
    flags = []
    for key, value in cfg.to_dict().items():
        if value is not None and key not in ("tags", "tracking_uri", "run_name", "save_dir"):
            flags += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return flags


def full_stack(cfg: PretrainConfig, work: Path, name: str, cores: set[int] | None) -> dict[str, Any]:
    """Runs study/train.py (pinned to ``cores``); per-epoch timings from its MLflow run."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{work / 'mlflow.db'}"
    command = [
        sys.executable,
        str(REPO / "study" / "train.py"),
        *cli_flags(cfg),
        "--tracking_uri",
        uri,
        "--run_name",
        name,
        "--save_dir",
        str(work / "runs"),
    ]
    env = os.environ | {"RAY_ADDRESS": "local", "PYTHONPATH": str(REPO)}  # a private Ray instance
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    begin = time.time()
    process = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=pin)
    cpu = ProcessCpu(process.pid)
    output, _ = process.communicate()
    cpu.stop()
    if process.returncode != 0:
        raise RuntimeError(f"study/train.py failed ({process.returncode}):\n{output[-3000:]}")
    client = MlflowClient(uri)
    run = search_runs(client, {rs.TRAIN_RUN: name})[0]
    stamps = {m.step: m.timestamp / 1e3 for m in client.get_metric_history(run.info.run_id, rs.M_TRAIN_LOSS)}
    reported = {m.step: m.value for m in client.get_metric_history(run.info.run_id, rs.M_IMAGES_PER_S)}
    seconds = {m.step: m.value for m in client.get_metric_history(run.info.run_id, rs.M_EPOCH_TIME)}
    timed = range(2, cfg.epochs)
    used = cpu.between(stamps[1], stamps[cfg.epochs - 1])
    return {
        "window": (stamps[1], stamps[cfg.epochs - 1]),
        "wall_images_per_s": [reported[e] * seconds[e] / (stamps[e] - stamps[e - 1]) for e in timed],
        "loop_images_per_s": [reported[e] for e in timed],
        "process_wall_s": time.time() - begin,
        "cpu_seconds_in_timed_epochs": used,
        "cpu_s_per_epoch": sum(used.values()) / len(timed),
        "worker_cpu_s_per_epoch": sum(v for k, v in used.items() if "RayTrainWorker" in k) / len(timed),
    }


# --- rounds ----------------------------------------------------------------------------------------
def concurrent_round(cfg: PretrainConfig, work: Path, name: str) -> tuple[list[dict[str, float]], dict[str, Any]]:
    stop = work / f"{name}.stop"
    plain = start_plain(cfg, 1, {0}, stop)
    try:
        stack = full_stack(cfg, work, name, {1})
    finally:
        stop.touch()
    start, end = stack["window"]
    epochs = [e | {"in_window": e["start"] >= start and e["end"] <= end} for e in plain_epochs(plain)[1:]]
    return epochs, stack


def sequential_round(cfg: PretrainConfig, work: Path, name: str, threads: int) -> tuple[list[dict[str, float]], dict[str, Any]]:
    epochs = plain_epochs(start_plain(cfg, threads, None, None))[1:-1]
    return epochs, full_stack(cfg, work, name, None)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("concurrent", "sequential"), default="concurrent")
    parser.add_argument(
        "--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "cifar10", help="folder holding cifar-10-batches-py"
    )
    parser.add_argument("--limit-train", type=int, default=5000, help="training images (default 5000, as the cifar10-cpu preset)")
    parser.add_argument("--backbone", default="small")
    parser.add_argument("--loss", default=BASELINE, choices=list(CATALOG))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--epochs", type=int, default=7, help="epochs per full-stack run: 1 warm-up, epochs - 2 timed, 1 left out (default 7)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--cpus", type=int, default=os.cpu_count() or 1, help="sequential mode: cpus_per_worker and plain-loop threads (default: all cores)"
    )
    parser.add_argument("--no-record", action="store_true", help="print only; write no JSON or RESULTS.md line")
    args = parser.parse_args(argv)
    if args.epochs - 2 < 5:
        parser.error("--epochs must be at least 7: 1 warm-up, >= 5 timed, and the last (with kNN) left out")
    if args.mode == "concurrent" and (os.cpu_count() or 1) < 2:
        parser.error("--mode concurrent needs 2 cores")
    return args


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def main(argv: list[str] | None = None) -> None:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--child-plain":
        child_plain(json.loads(sys.argv[2]))
        return
    args = parse_args(argv)
    cpus = 1 if args.mode == "concurrent" else args.cpus
    cfg = study_config(args, cpus)
    plain: list[dict[str, float]] = []
    stacks: list[dict[str, Any]] = []
    loads = []
    with tempfile.TemporaryDirectory(prefix="nce-overhead-") as tmp:
        for round_ in range(args.rounds):
            load = load_average()
            if args.mode == "concurrent":
                epochs, stack = concurrent_round(cfg, Path(tmp), f"overhead-{round_}")
            else:
                epochs, stack = sequential_round(cfg, Path(tmp), f"overhead-{round_}", cpus)
            loads.append((load, load_average()))
            plain += epochs
            stacks.append(stack)
            print(
                f"round {round_ + 1}: plain {[round(e['images_per_s']) for e in epochs]} images/s, {[round(e['cpu_s'], 2) for e in epochs]} CPU s; "
                f"full stack {[round(r) for r in stack['wall_images_per_s']]} images/s, {stack['cpu_s_per_epoch']:.2f} CPU s/epoch "
                f"(worker {stack['worker_cpu_s_per_epoch']:.2f}); load average {loads[-1]}",
                flush=True,
            )
    plain_rate = median([e["images_per_s"] for e in plain])
    plain_cpu = median([e["cpu_s"] for e in plain])
    stack_cpu = median([s["cpu_s_per_epoch"] for s in stacks])
    worker_cpu = median([s["worker_cpu_s_per_epoch"] for s in stacks])
    stack_rate = median([r for s in stacks for r in s["wall_images_per_s"]])
    loop_rate = median([r for s in stacks for r in s["loop_images_per_s"]])
    report = {
        **report_header("trainer_overhead", __file__, argv, "cpu", ("torch", "torchvision", "ray", "mlflow")),
        "mode": args.mode,
        "threads_per_side": cpus,
        "config": cfg.to_dict(),
        "load_averages": loads,
        "plain_epochs": plain,
        "full_stack": stacks,
        "median_plain_images_per_s": plain_rate,
        "median_full_stack_images_per_s": stack_rate,
        "median_full_stack_loop_reported_images_per_s": loop_rate,
        "median_plain_cpu_s_per_epoch": plain_cpu,
        "median_full_stack_cpu_s_per_epoch": stack_cpu,
        "median_full_stack_worker_cpu_s_per_epoch": worker_cpu,
        "ratio": stack_rate / plain_rate,
        "ratio_loop_reported": loop_rate / plain_rate,
        "ratio_core_seconds": plain_cpu / stack_cpu,
        "ratio_core_seconds_worker_only": plain_cpu / worker_cpu,
    }
    result = (
        f"images/s: plain {plain_rate:.0f} ({len(plain)} epochs), full stack {stack_rate:.0f} between epochs "
        f"({loop_rate:.0f} loop-reported, {sum(len(s['wall_images_per_s']) for s in stacks)} epochs): "
        f"ratio {report['ratio']:.3f} ({report['ratio_loop_reported']:.3f} loop-reported); "
        f"CPU s/epoch: plain {plain_cpu:.2f}, full stack {stack_cpu:.2f} (worker {worker_cpu:.2f}): "
        f"core-seconds ratio {report['ratio_core_seconds']:.3f} ({report['ratio_core_seconds_worker_only']:.3f} worker only)"
    )
    print(result)
    if args.no_record:
        return
    sides = (
        "each side pinned to its own core, 1 thread, run at the same time"
        if args.mode == "concurrent"
        else f"one after the other, {cpus} threads / CPUs each"
    )
    settings = (
        f"`{report['command']}`; cifar10 {args.limit_train} images, {args.backbone} + mlp, {args.loss}, batch {args.batch_size}, LARS; "
        f"{sides}; {args.rounds} rounds, median; load average {min(min(l) for l in loads):.1f}-{max(max(l) for l in loads):.1f}"
    )
    print(f"wrote {record(f'trainer_overhead-cpu-{args.mode}', report, settings, result)}")


if __name__ == "__main__":
    main()
