"""Fault injection for the reliability tests, off unless NCE_FAULT is set.

    NCE_FAULT="kill:epoch=2:step=1:once=/tmp/marker"   SIGKILL world rank 0 at that step, once
    NCE_FAULT="nan:epoch=2:step=0:seed=1"              make that step's loss NaN (runs with seed 1)
    NCE_FAULT="memcap:mb=60:batch=512"                 before the first step, cap the address space
                                                       60 MB above its size then (batch 512 runs)
    NCE_FAULT="stall:epoch=2:step=0:seconds=600:once=/tmp/marker"
                                                       before that step, sleep 600 s, once: holds a trial
                                                       mid-run so a test can kill its node or its job

Several faults are separated by ";". ``once`` names a marker file: the fault fires only if it
does not exist yet (and creates it), so a restarted worker runs clean. ``seed`` and ``batch``
limit a fault to runs with that seed or global batch size.

The training loop calls :func:`for_epoch` once per epoch, its one seam: the environment is read
there. An epoch with no fault meant for it trains on the plain batches and loss; only an epoch
that has one gets them wrapped (:meth:`RunFaults.inject`), so the training step itself holds no
fault code.
"""

from __future__ import annotations

import os
import resource
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

VARIABLE = "NCE_FAULT"
KINDS = ("kill", "nan", "memcap", "stall")


@dataclass(frozen=True)
class Fault:
    kind: str
    epoch: int = 1
    step: int = 0
    seed: int | None = None
    batch: int | None = None
    once: str | None = None
    mb: int = 0
    seconds: int = 0

    def claim(self) -> bool:
        """Whether the fault fires now: always, or for a ``once`` fault the first time only."""
        if self.once is None:
            return True
        marker = Path(self.once)
        if marker.exists():
            return False
        marker.touch()
        return True


def parse(spec: str) -> Fault:
    kind, *fields = spec.split(":")
    if kind not in KINDS:
        raise ValueError(f"{VARIABLE}: fault kind {kind!r} is not allowed; allowed: {', '.join(KINDS)}")
    values = dict(field.split("=", 1) for field in fields)
    ints = {k: int(v) for k, v in values.items() if k != "once"}
    return Fault(kind, once=values.get("once"), **ints)


@dataclass(frozen=True)
class RunFaults:
    """The faults meant for one run (its seed, global batch and rank)."""

    faults: tuple[Fault, ...]
    rank: int

    def inject(self, epoch: int, batches: Iterable[torch.Tensor], loss: nn.Module) -> tuple[Iterable[torch.Tensor], nn.Module]:
        """The epoch's batches and loss, wrapped only where a fault is meant for this epoch."""
        here = [f for f in self.faults if f.epoch == epoch]
        if not here:
            return batches, loss
        before = {f.step: f for f in here if f.kind in ("memcap", "stall")}
        strikes = [f for f in here if f.kind in ("kill", "nan")]
        return (_before_steps(batches, before) if before else batches), (FaultyLoss(loss, strikes, self.rank) if strikes else loss)


def for_epoch(
    epoch: int, batches: Iterable[torch.Tensor], loss: nn.Module, *, seed: int, batch: int, rank: int
) -> tuple[Iterable[torch.Tensor], nn.Module]:
    """The epoch's batches and loss, wrapped where NCE_FAULT names a fault for this epoch of a run with
    this seed and global batch (on this rank); unchanged otherwise."""
    return from_environment(seed=seed, batch=batch, rank=rank).inject(epoch, batches, loss)


def from_environment(*, seed: int, batch: int, rank: int) -> RunFaults:
    """The faults NCE_FAULT names for a run with this seed and global batch."""
    specs = [parse(s) for s in os.environ.get(VARIABLE, "").split(";") if s]
    mine = tuple(f for f in specs if (f.seed is None or f.seed == seed) and (f.batch is None or f.batch == batch))
    return RunFaults(mine, rank)


def _before_steps(batches: Iterable[torch.Tensor], faults: dict[int, Fault]) -> Iterator[torch.Tensor]:
    """The batches; before a memory cap's step, later allocations beyond it fail as a real out-of-memory
    would; before a stall's step, the run sleeps (the last checkpoint is written, the trial is held)."""
    for step, images in enumerate(batches):
        fault = faults.get(step)
        if fault is not None and fault.claim():
            if fault.kind == "memcap":
                now = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
                resource.setrlimit(resource.RLIMIT_AS, (now + fault.mb * 2**20, resource.RLIM_INFINITY))
            else:
                time.sleep(fault.seconds)
        yield images


class FaultyLoss(nn.Module):
    """The loss, with a kill (world rank 0) or a NaN at the steps the faults name; calls count the steps."""

    def __init__(self, loss: nn.Module, faults: list[Fault], rank: int) -> None:
        super().__init__()
        self.loss, self.faults, self.rank, self.step = loss, faults, rank, 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        value = self.loss(z)
        step, self.step = self.step, self.step + 1
        for fault in (f for f in self.faults if f.step == step):
            if fault.kind == "kill" and self.rank == 0 and fault.claim():
                os.kill(os.getpid(), signal.SIGKILL)
            if fault.kind == "nan" and fault.claim():
                value = value * float("nan")
        return value

    def diagnostics(self) -> dict[str, Any]:
        return self.loss.diagnostics()  # type: ignore[operator]
