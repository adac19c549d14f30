"""Contrastive pretraining: one loop for Ray Train workers, Tune trials and plain processes.

Every worker holds ``batch_size / W`` images of each global batch; the loss gathers the other
workers' embeddings, so each step equals single-process training on the global batch. Every
view of every image is augmented afresh on the device at every step.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from trainables import faults
from trainables import run_schema as rs
from trainables.augment import AugmentConfig, SimCLRAugment, augment_config_for, eval_transform
from trainables.checkpoint import load_latest_valid, save_checkpoint
from trainables.config import PretrainConfig, from_dict
from trainables.data import FolderSplits, TensorSplits, load_dataset, worker_batch_indices
from trainables.knn import knn_accuracy
from trainables.linear_eval import EvalConfig, Pretrained, evaluate_and_record
from trainables.losses import CATALOG, build_loss
from trainables.losses.base import ContrastiveLoss
from trainables.models import ContrastiveModel, build_model, prepare_for_device
from trainables.optim import build_optimizer, build_schedule, scaled_lr
from trainables.session import RayTrainSession, Session
from trainables.tracking import RunLogger, redact_secrets

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the run stops rather than train on garbage."""


class OutOfMemoryError(MemoryError):
    """A batch that does not fit; the message names the batch and what to change."""


def out_of_memory(cfg: PretrainConfig, world_size: int, err: BaseException) -> OutOfMemoryError:
    per_worker = cfg.batch_size // world_size
    return OutOfMemoryError(
        f"out of memory at batch_size={cfg.batch_size} ({per_worker} images x {cfg.views_per_image} views per worker on "
        f"{world_size} worker(s)): use more workers (--workers) so each holds fewer images, or a smaller batch_size ({err})"
    )


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's refusal."""
    return isinstance(err, torch.OutOfMemoryError) or (isinstance(err, RuntimeError) and "can't allocate memory" in str(err))


class NonFiniteGuard:
    """Raises at the first non-finite loss without a host sync per step on GPU.

    On CUDA each step's flag is copied to pinned memory behind an event and read at the next
    step, so the run stops at most one step late; on the CPU it is read at once.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.pending: tuple[torch.Tensor, Any, int, int] | None = None

    def watch(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        self.check()
        value = loss.detach().float().reshape(1)
        if self.device.type != "cuda":
            self._raise_if_bad(value, epoch, step)
            return
        host = torch.empty(1, pin_memory=True)
        host.copy_(value, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self.pending = (host, event, epoch, step)

    def check(self) -> None:
        if self.pending is not None:
            host, event, epoch, step = self.pending
            event.synchronize()
            self.pending = None
            self._raise_if_bad(host, epoch, step)

    @staticmethod
    def _raise_if_bad(value: torch.Tensor, epoch: int, step: int) -> None:
        if not math.isfinite(value.item()):
            raise NonFiniteLossError(f"loss became {value.item()} at epoch {epoch}, step {step}; lower lr or check the data")


@dataclass
class Parts:
    """Everything one worker trains with."""

    cfg: PretrainConfig
    device: torch.device
    data: TensorSplits | FolderSplits
    model: ContrastiveModel  # unwrapped: what checkpoints and evaluation use
    forward: nn.Module  # what the step calls: DDP-wrapped and/or compiled
    loss: ContrastiveLoss
    augment: SimCLRAugment
    aug_cfg: AugmentConfig
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    steps_per_epoch: int
    rank: int
    world_size: int


def training_device(cfg: PretrainConfig) -> torch.device:
    if not cfg.gpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("gpu=True but this worker sees no CUDA device")
    return torch.device("cuda", torch.cuda.current_device())


def autocast(cfg: PretrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on GPU (precision auto or bf16), on CPU only when asked for."""
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def build_parts(cfg: PretrainConfig, rank: int, world_size: int) -> Parts:
    device = training_device(cfg)
    data = load_dataset(cfg.dataset, cfg.data_dir, download=cfg.download and rank == 0, val_fraction=cfg.val_fraction, split_seed=cfg.split_seed, limit_train=cfg.limit_train)
    spec = data.spec
    overrides = {k: v for k, v in (("jitter_strength", cfg.jitter_strength), ("blur_prob", cfg.blur_prob)) if v is not None}
    aug_cfg = augment_config_for(cfg.dataset, spec.image_size, spec.mean, spec.std, **overrides)
    torch.manual_seed(cfg.seed)  # identical initial weights on every worker
    model = prepare_for_device(build_model(cfg.backbone, cfg.head, spec.image_size, cfg.proj_dim), device, distributed=world_size > 1)
    forward: nn.Module = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) if world_size > 1 else model
    if cfg.compile:
        forward = torch.compile(forward)
    steps = num_pretrain_images(data) // cfg.batch_size
    if steps == 0:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the {num_pretrain_images(data)} pretraining images")
    lr = scaled_lr(cfg.lr, cfg.batch_size, cfg.lr_scaling)
    optimizer = build_optimizer(cfg.optimizer, model, lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum, fused=device.type == "cuda")
    schedule = build_schedule(optimizer, cfg.schedule, warmup_steps=cfg.warmup_epochs * steps, total_steps=cfg.epochs * steps)
    loss = build_loss(cfg.loss, gather_distributed=cfg.gather, **cfg.loss_hyperparameters())
    return Parts(cfg, device, data, model, forward, loss, SimCLRAugment(aug_cfg), aug_cfg, optimizer, schedule, steps, rank, world_size)


def num_pretrain_images(data: TensorSplits | FolderSplits) -> int:
    return len(data.pretrain) if isinstance(data, TensorSplits) else len(data.train)


def local_batches(p: Parts, epoch: int, resident: torch.Tensor | None) -> Iterator[torch.Tensor]:
    """This worker's uint8 slice of each of the epoch's global batches, on the device."""
    cfg = p.cfg
    if resident is None:
        loader = p.data.pretrain_loader(cfg.batch_size, epoch - 1, cfg.seed, p.rank, p.world_size, num_workers=4)  # type: ignore[union-attr]
        for images in loader:
            yield images.to(p.device, non_blocking=True)
        return
    rows = worker_batch_indices(len(resident), cfg.batch_size, epoch - 1, cfg.seed, p.rank, p.world_size).to(p.device)
    for idx in rows:
        yield resident[idx]


def augment_generator(p: Parts, epoch: int) -> torch.Generator:
    """Seeded by (seed, epoch) alone, identically on every worker: a resumed run and a
    W-worker run draw exactly the views an uninterrupted 1-worker run draws."""
    return torch.Generator(p.device).manual_seed(p.cfg.seed * 1_000_003 + epoch)


def train_one_epoch(p: Parts, epoch: int, resident: torch.Tensor | None) -> dict[str, float]:
    p.forward.train()
    local = p.cfg.batch_size // p.world_size
    rows = slice(p.rank * local, (p.rank + 1) * local)
    generator, guard = augment_generator(p, epoch), NonFiniteGuard(p.device)
    sums = torch.zeros(3, device=p.device)  # loss, the positive's probability, steps: accumulated on the device
    probability, grad_scale = CATALOG[p.cfg.loss].diagnostics
    start = time.perf_counter()
    seed, batch = p.cfg.seed, p.cfg.batch_size
    for step, images in enumerate(local_batches(p, epoch, resident)):
        faults.before_step(epoch=epoch, step=step, seed=seed, batch=batch)
        views = p.augment.views(images, p.cfg.views_per_image, generator, rows=rows, global_batch=p.cfg.batch_size)
        with autocast(p.cfg, p.device):
            z = p.forward(views)
        loss = faults.after_loss(p.loss(z), epoch=epoch, step=step, rank=p.rank, seed=seed, batch=batch)
        p.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        p.optimizer.step()
        p.schedule.step()
        guard.watch(loss, epoch, step)
        sums += torch.stack([loss.detach().float(), p.loss.diagnostics()[probability].float(), torch.ones((), device=p.device)])
    guard.check()
    if p.world_size > 1:
        dist.all_reduce(sums)
    if p.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    loss_mean, pos_prob, steps = (sums[:2] / sums[2]).tolist() + [sums[2].item() / p.world_size]
    return {
        rs.M_TRAIN_LOSS: loss_mean,
        probability: pos_prob,
        grad_scale: 1 - pos_prob,
        rs.M_LR: p.optimizer.param_groups[0]["lr"],
        rs.M_EPOCH_TIME: seconds,
        rs.M_IMAGES_PER_S: steps * p.cfg.batch_size / seconds,
    }


def encoder(p: Parts):
    """uint8 images -> backbone features, in eval mode, for kNN and linear evaluation."""

    def encode(images: torch.Tensor) -> torch.Tensor:
        with autocast(p.cfg, p.device):
            return p.model.features(eval_transform(images.to(p.device), p.aug_cfg))

    return encode


def validation_knn(p: Parts) -> float:
    """kNN accuracy on the held-out validation split, with the training split as the bank."""
    p.model.eval()
    try:
        return knn_accuracy(encoder(p), p.data.train, p.data.val, k=p.cfg.knn_k, temperature=p.cfg.knn_temperature, num_classes=p.data.spec.num_classes)
    finally:
        p.model.train()


def checkpoint_state(p: Parts, epoch: int, run_id: str | None, best_knn: float) -> dict[str, Any]:
    state = {
        "model": p.model.state_dict(),
        "optimizer": p.optimizer.state_dict(),
        "schedule": p.schedule.state_dict(),
        "epoch": epoch,
        "best_val_knn": best_knn,
        "rng_cpu": torch.get_rng_state(),
        "config": redact_secrets(p.cfg.to_dict()),  # the checkpoint is also an MLflow artifact
        "mlflow_run_id": run_id or "",
    }
    if p.device.type == "cuda":
        state["rng_cuda"] = torch.cuda.get_rng_state(p.device)
    return state


def restore(p: Parts, session: Session) -> tuple[int, float]:
    """Load the newest valid checkpoint the session offers; (epoch done, best kNN so far)."""
    found = load_latest_valid(session.checkpoints(), map_location=p.device)
    if found is None:
        return 0, -1.0
    state, where = found
    p.model.load_state_dict(state["model"])
    p.optimizer.load_state_dict(state["optimizer"])
    p.schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["rng_cpu"])
    if "rng_cuda" in state and p.device.type == "cuda":
        torch.cuda.set_rng_state(state["rng_cuda"], p.device)
    log.info("resumed from %s (epoch %d)", where, state["epoch"])
    return int(state["epoch"]), float(state["best_val_knn"])


def evaluate_final(p: Parts, evaluation: EvalConfig, epoch: int, run_id: str | None, tracking_uri: str | None) -> dict[str, float]:
    """The evaluation after pretraining, on the model in memory, as ``eval_``-prefixed metrics."""
    pretrained = Pretrained(p.model, p.cfg.to_dict(), epoch, run_id or "", p.data, p.aug_cfg)  # type: ignore[arg-type]
    try:
        result = evaluate_and_record(pretrained, evaluation, p.device, tracking_uri=tracking_uri, checkpoint=f"epoch {epoch}", log=p.rank == 0)
    finally:
        p.model.train()
    return {f"eval_{k}": v for k, v in result.items() if isinstance(v, float)}


def pretrain(cfg: PretrainConfig, session: Session, *, run_id: str | None = None, tracking_uri: str | None = None, evaluation: EvalConfig | None = None) -> dict[str, float]:
    """Train ``cfg.epochs`` epochs (continuing from the session's checkpoint); the final metrics.

    With ``evaluation``, the trained backbone is evaluated after the last epoch (a child MLflow
    run) and the last report carries the results, so that a sweep sees them.
    """
    p = build_parts(cfg, session.rank, session.world_size)
    logger = RunLogger(tracking_uri, run_id) if run_id and tracking_uri and p.rank == 0 else None
    done, best = restore(p, session)
    resident = p.data.pretrain.to(p.device) if isinstance(p.data, TensorSplits) else None
    started = time.perf_counter()
    last: dict[str, float] = {}
    bar = epoch_bar(cfg, done) if session.shows_progress and p.rank == 0 else None
    for epoch in range(done + 1, cfg.epochs + 1):
        try:
            metrics = train_one_epoch(p, epoch, resident)
        except (RuntimeError, torch.OutOfMemoryError) as err:
            if is_out_of_memory(err):
                raise out_of_memory(cfg, p.world_size, err) from err
            raise
        if epoch % cfg.n_eval_epochs == 0 or epoch == cfg.epochs:
            metrics[rs.M_VAL_KNN] = validation_knn(p)
            best = max(best, metrics[rs.M_VAL_KNN])
        if evaluation is not None and epoch == cfg.epochs:
            metrics |= evaluate_final(p, evaluation, epoch, run_id, tracking_uri)
        last = metrics | {"epoch": epoch}
        with tempfile.TemporaryDirectory(prefix="nce-ckpt-") as tmp:
            ckpt = None
            if (epoch % cfg.n_save_epochs == 0 or epoch == cfg.epochs) and p.rank == 0:
                ckpt = save_checkpoint(checkpoint_state(p, epoch, run_id, best), tmp)
            if logger is not None:
                logger.log_epoch(epoch, {k: v for k, v in metrics.items() if not k.startswith("eval_")})
                if ckpt is not None and epoch == cfg.epochs:
                    logger.log_artifacts(ckpt, "checkpoint")
            session.report(last, ckpt, epoch)
        if bar is not None:
            probability = CATALOG[cfg.loss].diagnostics[0]
            bar.set_description(f"epoch {epoch}/{cfg.epochs} loss {metrics[rs.M_TRAIN_LOSS]:.3f} {probability} {metrics[probability]:.3f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    return final_metrics(p, last, best, time.perf_counter() - started, logger)


def epoch_bar(cfg: PretrainConfig, done: int) -> Any:
    """A progress bar over epochs that Ray draws on the driver's terminal."""
    from ray.experimental.tqdm_ray import tqdm

    return tqdm(total=cfg.epochs - done, desc=f"{cfg.loss} pretraining", unit="epoch")


def final_metrics(p: Parts, last: dict[str, float], best: float, seconds: float, logger: RunLogger | None) -> dict[str, float]:
    final = {
        rs.M_FINAL_VAL_KNN: last.get(rs.M_VAL_KNN, float("nan")),
        rs.M_BEST_VAL_KNN: best,
        rs.M_WALL_CLOCK: seconds,
        rs.M_DEVICE_HOURS: p.world_size * seconds / 3600,
        rs.M_EPOCHS_DONE: float(last.get("epoch", p.cfg.epochs)),
    }
    if logger is not None:
        logger.log_final(final)
    return final


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train's per-worker entry: ``{"config", "run_id", "tracking_uri", "evaluation"}``."""
    evaluation = loop_config.get("evaluation")
    pretrain(
        from_dict(loop_config["config"]), RayTrainSession(), run_id=loop_config.get("run_id"),
        tracking_uri=loop_config.get("tracking_uri"), evaluation=EvalConfig(**evaluation) if evaluation else None,
    )
