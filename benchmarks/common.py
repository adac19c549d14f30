"""What every benchmark script shares: where results go, the RESULTS.md line, machine and versions.

Imports only the standard library and torch, so the standalone GPU benchmark can use it on a
machine that has nothing but torch and torchvision.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
RESULTS_TABLE = REPO / "benchmarks" / "RESULTS.md"
TABLE_HEADER = "| date (UTC) | benchmark | machine | software | settings | result |\n| --- | --- | --- | --- | --- | --- |\n"


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")


def machine(device: str = "cpu") -> str:
    """The GPU (on CUDA) or the processor model, and the CPU core count."""
    cores = os.cpu_count()
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()}, {cores} CPU cores"
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return f"{models[0] if models else platform.processor() or 'unknown CPU'}, {cores} cores"


def software(packages: Iterable[str] = ("torch", "torchvision")) -> str:
    """Python and the installed versions of ``packages`` (those not installed are left out)."""
    found = [f"python {platform.python_version()}"]
    for name in packages:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def timing_parser(description: str, repeats: int) -> argparse.ArgumentParser:
    """A timing benchmark's parser with the options they all take: --device, --repeats, --no-record."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=repeats, help="timed repeats per method (>= 5)")
    parser.add_argument("--no-record", action="store_true", help="print only; write no JSON or RESULTS.md line")
    return parser


def parse_timing_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """The options, refusing fewer than 5 repeats: the median of fewer is not stable."""
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error(f"--repeats={args.repeats}: at least 5 are needed for a stable median")
    return args


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def report_header(
    benchmark: str, script: str, argv: Sequence[str] | None, device: str = "cpu", packages: Iterable[str] = ("torch", "torchvision")
) -> dict[str, Any]:
    """The fields every result starts with; ``argv`` None means this process's own arguments."""
    args = sys.argv[1:] if argv is None else argv
    return {
        "benchmark": benchmark,
        "date": utc_now(),
        "command": f"python benchmarks/{Path(script).name} " + " ".join(args),
        "machine": machine(device),
        "software": software(packages),
    }


def record(name: str, report: dict[str, Any], settings: str, result: str) -> Path:
    """Writes ``benchmarks/results/<name>.json`` and appends one line to RESULTS.md.

    The line is appended (never rewritten), so several scripts can share the table.
    """
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    if not RESULTS_TABLE.exists():
        RESULTS_TABLE.write_text("# Benchmark results\n\nOne line per run, appended by the benchmark scripts.\n\n" + TABLE_HEADER)
    cells = [report["date"], report["benchmark"], report["machine"], report["software"], settings, result]
    with RESULTS_TABLE.open("a") as table:
        table.write("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |\n")
    return path


# --- CPU time per process, for "where did the cores go" -------------------------------------------
def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) of a process, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks


def _name(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"
    return raw[:70] or "?"


class ProcessCpu:
    """Samples the CPU seconds of a process and all its descendants (Ray's processes included,
    which the driver starts) every ``interval`` seconds, in a background thread."""

    def __init__(self, root: int, interval: float = 0.5) -> None:
        import threading

        self.root, self.interval = root, interval
        self.samples: list[tuple[float, dict[int, float]]] = []
        self.names: dict[int, str] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _tree(self) -> dict[int, float]:
        stats = {int(p.name): s for p in Path("/proc").iterdir() if p.name.isdigit() and (s := _stat(int(p.name)))}
        children: dict[int, list[int]] = {}
        for pid, (parent, _) in stats.items():
            children.setdefault(parent, []).append(pid)
        tree, todo = {}, [self.root]
        while todo:
            pid = todo.pop()
            if pid in stats:
                tree[pid] = stats[pid][1]
                todo += children.get(pid, [])
        return tree

    def _run(self) -> None:
        import time

        while not self.stopped.is_set():
            tree = self._tree()
            for pid in tree:  # Ray renames its workers when they take a task
                name = _name(pid)
                if name != "?" or pid not in self.names:
                    self.names[pid] = name
            self.samples.append((time.time(), tree))
            self.stopped.wait(self.interval)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()

    def between(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds each process (by command line) used from ``start`` to ``end`` (time.time()),
        processes that ended inside the window included (up to their last sample)."""
        before = next((s for t, s in reversed(self.samples) if t <= start), {})
        last: dict[int, float] = {}
        for t, sample in self.samples:
            if start < t <= end:
                last.update(sample)
        used: dict[str, float] = {}
        for pid, cpu in last.items():
            name = self.names.get(pid, "?")
            used[name] = used.get(name, 0.0) + cpu - before.get(pid, 0.0)
        return dict(sorted(((k, round(v, 2)) for k, v in used.items() if v >= 0.05), key=lambda kv: -kv[1]))
