"""Run a function in W gloo processes on this CPU and collect what each rank returns."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, out_dir: str, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.save(fn(rank, world_size, *args), Path(out_dir) / f"rank{rank}.pt")
        # Every rank is done before any tears the group down: gloo aborts a process (SIGABRT) whose
        # peer destroys the group while a collective of its own is still finishing.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_ddp(fn: Callable[..., Any], world_size: int, out_dir: Path, *args: Any) -> list[Any]:
    """``fn(rank, world_size, *args)`` on every rank of a gloo group; the ranks' results, in order."""
    mp.spawn(_worker, args=(world_size, free_port(), str(out_dir), fn, args), nprocs=world_size, join=True)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=True) for r in range(world_size)]
