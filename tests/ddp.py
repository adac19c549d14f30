"""Run a function in W gloo processes on this CPU and collect what each rank returns."""

from __future__ import annotations

import faulthandler
import os
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank: int, world_size: int, out_dir: str, fn: Callable[..., Any], args: tuple) -> None:
    faulthandler.enable(all_threads=True)  # a rank that dies in C++ shows where each of its threads was
    torch.set_num_threads(1)
    # A file rendezvous: no port to pick, and to lose to another process before the store binds it.
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=world_size)
    torch.save(fn(rank, world_size, *args), Path(out_dir) / f"rank{rank}.pt")
    dist.barrier()  # every rank's result is on disk
    # A rank has been seen to abort (SIGABRT, "terminate called without an active exception") now and
    # then in a full test session. Nothing is left to do here, so the process leaves without running
    # the group's C++ destructors, which takes teardown out of the picture.
    os._exit(0)


def run_ddp(fn: Callable[..., Any], world_size: int, out_dir: Path, *args: Any) -> list[Any]:
    """``fn(rank, world_size, *args)`` on every rank of a gloo group; the ranks' results, in order."""
    mp.spawn(_worker, args=(world_size, str(out_dir), fn, args), nprocs=world_size, join=True)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=True) for r in range(world_size)]
