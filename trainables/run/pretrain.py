"""Contrastive pretraining: one loop for Ray Train workers, Tune trials and plain processes.

Every worker holds ``batch_size / W`` images of each global batch; the loss gathers the other
workers' embeddings, so each step equals single-process training on the global batch. Every
view of every image is augmented afresh on the device at every step.

Read :func:`pretrain` top to bottom: components from the config, optimizer and loss, resume,
then one :func:`train_one_epoch` per epoch whose metrics go to an :class:`EpochEnd`. Evaluating
the trained encoder is the caller's business (``trainables/launch/trial.py``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LRScheduler

from trainables.core.augment import SimCLRAugment
from trainables.core.components import (
    Components,
    autocast,
    build_components,
    training_device,
    validation_knn,
)
from trainables.core.data import Images, Splits, epoch_generator
from trainables.core.distributed import world
from trainables.core.losses import CATALOG, build_loss
from trainables.core.models import prepare_for_device
from trainables.core.optim import build_optimizer, build_schedule
from trainables.integration.session import Session
from trainables.integration.tracking import redact_secrets
from trainables.run import faults
from trainables.run.checkpoint import load_latest_valid
from trainables.run.epoch_end import EpochEnd
from trainables.spec import run_schema as rs
from trainables.spec.lr_scaling import scaled_lr
from trainables.spec.pretrain_config import PretrainConfig

log = logging.getLogger(__name__)


def pretrain(cfg: PretrainConfig, session: Session, end: EpochEnd | None = None) -> Trained:
    """Train ``cfg.epochs`` epochs, continuing from the session's checkpoint; the trained encoder.

    ``end`` receives every epoch's metrics (default: reports to ``session`` only, no MLflow).
    """
    end = end or EpochEnd(cfg, session)
    rank, world_size = session.rank, session.world_size
    device = training_device(cfg)
    c = build_components(cfg, download=cfg.download and rank == 0)
    end.log_params({"data": c.data.describe()})  # what the config left to the data: resolution, statistics, classes
    c = replace(c, model=prepare_for_device(c.model, device, distributed=world_size > 1))
    forward: nn.Module = c.model
    if world_size > 1:
        forward = DistributedDataParallel(c.model, device_ids=[device] if device.type == "cuda" else None)
    if cfg.compile:
        forward = torch.compile(forward)
    steps = steps_per_epoch(cfg, c.data)
    lr = scaled_lr(cfg.lr, cfg.batch_size, cfg.lr_scaling)
    fused = device.type == "cuda"
    optimizer = build_optimizer(cfg.optimizer, c.model, lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum, fused=fused)
    schedule = build_schedule(optimizer, cfg.schedule, warmup_steps=cfg.warmup_epochs * steps, total_steps=cfg.epochs * steps)
    loss = build_loss(cfg.loss, gather_distributed=cfg.gather, **cfg.loss_hyperparameters())
    augment = SimCLRAugment(c.aug_cfg)
    done, best = restore(session, c.model, optimizer, schedule, device)
    if done >= cfg.epochs:  # an earlier attempt trained every epoch and made its last report (after any evaluation)
        end.report_again(done)
        return Trained(cfg, c, device, done, final={})
    resident = c.data.pretrain.to(device)  # in memory: moved once; from files: batches moved as decoded
    local = cfg.batch_size // world_size
    rows = slice(rank * local, (rank + 1) * local)  # this worker's rows of every global batch
    started, metrics, epoch = time.perf_counter(), {}, done
    end.start(done)
    for epoch in range(done + 1, cfg.epochs + 1):
        batches, epoch_loss = faults.for_epoch(
            epoch, local_batches(resident, cfg, epoch, rank, world_size), loss, seed=cfg.seed, batch=cfg.batch_size, rank=rank
        )
        generator = augment_generator(cfg.seed, epoch, device)
        try:
            metrics = train_one_epoch(
                forward, epoch_loss, augment, optimizer, schedule, batches, cfg=cfg, epoch=epoch, rows=rows, generator=generator
            )
        except (RuntimeError, torch.OutOfMemoryError) as err:
            if is_out_of_memory(err):
                raise out_of_memory(cfg, world_size, err) from err
            raise
        if epoch % cfg.n_eval_epochs == 0 or epoch == cfg.epochs:
            metrics[rs.M_VAL_KNN] = validation_knn(c, cfg, device)
            best = max(best, metrics[rs.M_VAL_KNN])
        end(epoch, metrics, lambda: checkpoint_state(cfg, c, optimizer, schedule, device, epoch, end, best))
    seconds = time.perf_counter() - started
    final = {
        rs.M_FINAL_VAL_KNN: metrics.get(rs.M_VAL_KNN, float("nan")),
        rs.M_BEST_VAL_KNN: best,
        rs.M_WALL_CLOCK: seconds,
        rs.M_DEVICE_HOURS: world_size * seconds / 3600,
        rs.M_EPOCHS_DONE: float(epoch),
    }
    end.close(final)
    return Trained(cfg, c, device, epoch, final)


@dataclass(frozen=True)
class Trained:
    """A pretrained encoder in memory: its config, components (model on ``device``) and final metrics."""

    cfg: PretrainConfig
    components: Components
    device: torch.device
    epoch: int
    final: dict[str, float]


def train_one_epoch(
    forward: nn.Module, loss: nn.Module, augment: SimCLRAugment, optimizer: torch.optim.Optimizer, schedule: LRScheduler,
    batches: Iterable[torch.Tensor], *, cfg: PretrainConfig, epoch: int, rows: slice, generator: torch.Generator,
) -> dict[str, float]:
    """One pass over ``batches`` (this worker's rows ``rows`` of each global batch); the epoch's metrics,
    averaged over all workers."""
    device = generator.device
    forward.train()
    guard = NonFiniteGuard(device)
    sums = torch.zeros(3, device=device)  # loss, the positive's probability, steps: accumulated on the device
    probability, grad_scale = CATALOG[cfg.loss].diagnostics
    start = time.perf_counter()
    for step, images in enumerate(batches):
        views = augment.views(images, cfg.views_per_image, generator, rows=rows, global_batch=cfg.batch_size)
        with autocast(cfg, device):
            z = forward(views)
        value = loss(z)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        schedule.step()
        guard.watch(value, epoch, step)
        sums += torch.stack([value.detach().float(), loss.diagnostics()[probability].float(), torch.ones((), device=device)])
    guard.check()
    world_size = world()[1]
    if world_size > 1:
        dist.all_reduce(sums)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    loss_mean, pos_prob, steps = (sums[:2] / sums[2]).tolist() + [sums[2].item() / world_size]
    return {
        rs.M_TRAIN_LOSS: loss_mean,
        probability: pos_prob,
        grad_scale: 1 - pos_prob,
        rs.M_LR: optimizer.param_groups[0]["lr"],
        rs.M_EPOCH_TIME: seconds,
        rs.M_IMAGES_PER_S: steps * cfg.batch_size / seconds,
    }


def local_batches(resident: Images, cfg: PretrainConfig, epoch: int, rank: int, world_size: int) -> Iterator[torch.Tensor]:
    """This worker's uint8 slice of each of the epoch's global batches, on the device."""
    return resident.worker_batches(cfg.batch_size, epoch - 1, cfg.seed, rank, world_size)


def augment_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """Seeded by (seed, epoch) alone, identically on every worker: a resumed run and a
    W-worker run draw exactly the views an uninterrupted 1-worker run draws."""
    return epoch_generator(seed, epoch, "views", device)


def steps_per_epoch(cfg: PretrainConfig, data: Splits) -> int:
    images = len(data.pretrain)
    if images < cfg.batch_size:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the {images} pretraining images")
    return images // cfg.batch_size


def checkpoint_state(
    cfg: PretrainConfig, c: Components, optimizer: torch.optim.Optimizer, schedule: LRScheduler, device: torch.device,
    epoch: int, end: EpochEnd, best_knn: float,
) -> dict[str, Any]:
    state = {
        "model": c.model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "epoch": epoch,
        "best_val_knn": best_knn,
        "rng_cpu": torch.get_rng_state(),
        "config": redact_secrets(cfg.to_dict()),  # the checkpoint is also an MLflow artifact
        "mlflow_run_id": end.run_id or "",
    }
    if device.type == "cuda":
        state["rng_cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore(
    session: Session, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: LRScheduler, device: torch.device
) -> tuple[int, float]:
    """Load the newest valid checkpoint the session offers; (epoch done, best kNN so far)."""
    found = load_latest_valid(session.checkpoints(), map_location=device)
    if found is None:
        return 0, -1.0
    state, where = found
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["rng_cpu"])
    if "rng_cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["rng_cuda"], device)
    log.info("resumed from %s (epoch %d)", where, state["epoch"])
    return int(state["epoch"]), float(state["best_val_knn"])


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
