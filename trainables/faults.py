"""Fault injection for the reliability tests, off unless NCE_FAULT is set.

    NCE_FAULT="kill:epoch=2:step=1:once=/tmp/marker"   SIGKILL world rank 0 at that step, once
    NCE_FAULT="nan:epoch=2:step=0:seed=1"              make that step's loss NaN (runs with seed 1)
    NCE_FAULT="memcap:mb=60:batch=512"                 before the first step, cap the address space
                                                       60 MB above its size then (batch 512 runs)

Several faults are separated by ";". ``once`` names a marker file: the fault fires only if it
does not exist yet (and creates it), so a restarted worker runs clean. ``seed`` and ``batch``
limit a fault to runs with that seed or global batch size.
"""

from __future__ import annotations

import os
import resource
import signal
from dataclasses import dataclass
from pathlib import Path

import torch

VARIABLE = "NCE_FAULT"


@dataclass(frozen=True)
class Fault:
    kind: str
    epoch: int = 1
    step: int = 0
    seed: int | None = None
    batch: int | None = None
    once: str | None = None
    mb: int = 0

    def strikes(self, kind: str, epoch: int, step: int, seed: int, batch: int) -> bool:
        if (self.kind, self.epoch, self.step) != (kind, epoch, step):
            return False
        if (self.seed is not None and self.seed != seed) or (self.batch is not None and self.batch != batch):
            return False
        if self.once is None:
            return True
        marker = Path(self.once)
        if marker.exists():
            return False
        marker.touch()
        return True


def parse(spec: str) -> Fault:
    kind, *fields = spec.split(":")
    values = dict(field.split("=", 1) for field in fields)
    ints = {k: int(v) for k, v in values.items() if k != "once"}
    return Fault(kind, once=values.get("once"), **ints)


def striking(kind: str, *, epoch: int, step: int, seed: int, batch: int) -> bool:
    specs = [s for s in os.environ.get(VARIABLE, "").split(";") if s]
    return any(parse(s).strikes(kind, epoch, step, seed, batch) for s in specs)


def before_step(*, epoch: int, step: int, seed: int, batch: int) -> None:
    """The memory cap: later allocations beyond it fail as a real out-of-memory would."""
    for spec in filter(None, os.environ.get(VARIABLE, "").split(";")):
        fault = parse(spec)
        if fault.strikes("memcap", epoch, step, seed, batch):
            now = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
            resource.setrlimit(resource.RLIMIT_AS, (now + fault.mb * 2**20, resource.RLIM_INFINITY))


def after_loss(loss: torch.Tensor, *, epoch: int, step: int, rank: int, seed: int, batch: int) -> torch.Tensor:
    """The step's loss, after a kill or NaN fault meant for this step has struck."""
    if rank == 0 and striking("kill", epoch=epoch, step=step, seed=seed, batch=batch):
        os.kill(os.getpid(), signal.SIGKILL)
    if striking("nan", epoch=epoch, step=step, seed=seed, batch=batch):
        return loss * float("nan")
    return loss
