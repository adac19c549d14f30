"""Forward + backward time and peak memory of every loss against a naive dense reference.

For each loss of the catalog (trainables/spec/losses.py), each batch B and each number of
positive views M, z is a random [B, V, D] float32 tensor (V from the catalog's views-per-image
rule, D = 128) and one repeat is ``loss(z).backward()``. The reference is the loss written the
straightforward way (trainables/core/losses/dense.py): every similarity and mask as its own dense
matrix, out-of-place masking, and the M positives of each anchor broadcast against all
negatives as an [N, M, N] tensor (raw exp where the official code uses it). Reference and
project loss are checked to agree (value and gradient) before timing; a loss without a dense
version is timed alone and its reference recorded as skipped, with the reason.

Timing: median of at least --repeats fwd+bwd runs after one warm-up (small sizes repeat
until --min-seconds were timed, at most 50 times), the project loss and the reference taking
turns (order swapped every repeat); CUDA events on the GPU, time.perf_counter on the CPU.

Peak memory, above what was allocated before the call (z itself excluded):
  cuda  torch.cuda.max_memory_allocated after reset_peak_memory_stats;
  cpu   the running sum of the allocation/free records of torch.profiler(profile_memory=True)
        over one call, whose maximum is the peak.
On the CPU the JSON also lists the blocks of at least a quarter matrix live at the peak and
the op that allocated each. Both are given in units of one (B·V)² float32 matrix; a loss whose
negatives are only the anchor views (AttentionNCE: 2 per image) has its unit over those, (2B)². "fwd" is the peak while the
forward builds its graph, "fwd+bwd" over the whole call. Configurations whose estimated
memory exceeds --max-gb are skipped and listed as such.

    python benchmarks/losses.py --device cpu
    python benchmarks/losses.py --device cuda --batches 256 1024 4096 --views 1 6
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch import Tensor  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from benchmarks.common import median, parse_timing_args, record, report_header, timing_parser  # noqa: E402
from trainables.core.losses import CATALOG, build_loss  # noqa: E402
from trainables.core.losses.dense import DENSE  # noqa: E402

FLOAT32 = 4
# Rough live (B·V)²-sized float32 matrices at the peak, for skipping what cannot fit.
OURS_MATRICES = 6
REFERENCE_MATRICES = 8  # plus the dense version's matrices per positive view
MAX_REPEATS = 50


# --- measurement -------------------------------------------------------------------------------
def unit_matrix(name: str, batch: int, views: int) -> int:
    """Side of the loss's similarity matrix: B·V, or B × its anchor views where only those are negatives."""
    entry = CATALOG[name]
    return batch * (entry.anchor_views if entry.negatives_from_anchors else views)


def estimated_bytes(name: str, batch: int, views: int, positives: int, reference: bool) -> int:
    matrix = unit_matrix(name, batch, views) ** 2 * FLOAT32
    if not reference:
        return OURS_MATRICES * matrix
    return (REFERENCE_MATRICES + DENSE[name].matrices_per_positive * positives) * matrix


def fwd_bwd(fn: Callable[[Tensor], Tensor], z: Tensor) -> None:
    z.grad = None
    fn(z).backward()


def timed_ms(fn: Callable[[Tensor], Tensor], z: Tensor) -> float:
    if z.is_cuda:
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        fwd_bwd(fn, z)
        stop.record()
        stop.synchronize()
        return start.elapsed_time(stop)
    begin = time.perf_counter()
    fwd_bwd(fn, z)
    return (time.perf_counter() - begin) * 1e3


def _innermost_op(ops: list[dict], tid: object, ts: float) -> str:
    enclosing = [op for op in ops if op["tid"] == tid and op["ts"] <= ts <= op["ts"] + op.get("dur", 0)]
    return max(enclosing, key=lambda op: op["ts"])["name"] if enclosing else "?"


def cpu_peak(call: Callable[[], object], unit_bytes: int) -> tuple[int, list[str]]:
    """Peak of the running sum of the CPU allocation/free records of torch.profiler, and the
    blocks of at least a quarter unit live at that peak, each with the op that allocated it."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    with tempfile.NamedTemporaryFile(suffix=".json") as trace:
        prof.export_chrome_trace(trace.name)
        events = json.loads(Path(trace.name).read_text())["traceEvents"]
    ops = [e for e in events if e.get("cat") == "cpu_op"]
    records = sorted((e for e in events if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0), key=lambda e: e["ts"])
    live: dict[int, tuple[int, str]] = {}
    total = peak = 0
    held: list[str] = []
    for e in records:
        size, addr = e["args"]["Bytes"], e["args"]["Addr"]
        total += size
        if size > 0:
            live[addr] = (size, _innermost_op(ops, e["tid"], e["ts"]) if size >= unit_bytes / 4 else "")
        else:
            live.pop(addr, None)
        if total > peak:
            peak = total
            held = [f"{op} {size / unit_bytes:.2f}" for size, op in live.values() if size >= unit_bytes / 4]
    return peak, held


def cuda_peak(call: Callable[[], object]) -> int:
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    result = call()
    torch.cuda.synchronize()
    del result
    return torch.cuda.max_memory_allocated() - base


def memory(fn: Callable[[Tensor], Tensor], z: Tensor, unit_bytes: int) -> dict[str, object]:
    """Peak bytes of the forward (graph kept) and of the whole forward + backward; on the CPU
    also the large blocks live at the forward + backward peak and the ops that made them."""
    z.grad = None
    if z.is_cuda:
        return {"fwd": cuda_peak(lambda: fn(z)), "fwd+bwd": cuda_peak(lambda: fwd_bwd(fn, z))}
    forward, _ = cpu_peak(lambda: fn(z), unit_bytes)
    both, held = cpu_peak(lambda: fwd_bwd(fn, z), unit_bytes)
    return {"fwd": forward, "fwd+bwd": both, "held_at_peak": held}


def agreement(ours: Callable[[Tensor], Tensor], reference: Callable[[Tensor], Tensor], z: Tensor) -> dict[str, float]:
    """|value difference| and the largest gradient difference relative to the gradient's max."""
    results = []
    for fn in (ours, reference):
        z.grad = None
        value = fn(z)
        value.backward()
        results.append((value.detach(), z.grad.detach().clone()))
    (v1, g1), (v2, g2) = results
    return {"value_abs_diff": (v1 - v2).abs().item(), "grad_rel_diff": ((g1 - g2).abs().max() / g2.abs().max()).item()}


def is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower() or "can't allocate" in str(err).lower()


def bench_config(name: str, batch: int, positives: int, args: argparse.Namespace, device: torch.device) -> dict[str, object]:
    loss = build_loss(name, gather_distributed=False).to(device)
    views = CATALOG[name].views_per_image(positives)
    unit = unit_matrix(name, batch, views)
    unit_bytes = unit**2 * FLOAT32
    entry: dict[str, object] = {
        "loss": name,
        "B": batch,
        "M": positives,
        "V": views,
        "D": args.dim,
        "unit": f"({unit})^2 float32",
        "unit_bytes": unit_bytes,
    }
    limit = args.max_gb * 2**30
    methods = {"ours": loss, "reference": lambda x: DENSE[name].loss(x, loss)}
    runnable = {}
    for method, fn in methods.items():
        if method == "reference" and name not in DENSE:
            entry[method] = {"skipped": "no dense version in trainables/core/losses/dense.py"}
            continue
        need = estimated_bytes(name, batch, views, positives, method == "reference")
        if need > limit:
            entry[method] = {"skipped": f"estimated {need / 2**30:.1f} GB > --max-gb {args.max_gb:g}"}
        else:
            runnable[method] = fn
    generator = torch.Generator(device).manual_seed(0)
    z = torch.randn(batch, views, args.dim, device=device, generator=generator, requires_grad=True)
    try:
        if len(runnable) == 2:
            try:
                entry["agreement"] = agreement(runnable["ours"], runnable["reference"], z)
            except RuntimeError as err:
                if not is_oom(err):
                    raise
                entry["agreement"] = {"skipped": "out of memory"}
        times: dict[str, list[float]] = {m: [] for m in runnable}
        for method, fn in runnable.items():
            try:
                peaks = memory(fn, z, unit_bytes)
                entry[method] = {"peak_bytes": {k: peaks[k] for k in ("fwd", "fwd+bwd")}, "held_at_peak": peaks.get("held_at_peak", [])}
                timed_ms(fn, z)  # warm-up
            except RuntimeError as err:
                if not is_oom(err):
                    raise
                entry[method] = {"skipped": f"out of memory: {str(err).splitlines()[0][:120]}"}
                times.pop(method)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        repeat = 0
        while times and (
            repeat < args.repeats or (repeat < MAX_REPEATS and sum(min(v) for v in times.values()) * repeat < args.min_seconds * 1e3)
        ):
            order = list(times) if repeat % 2 == 0 else list(reversed(times))
            for method in order:
                times[method].append(timed_ms(runnable[method], z))
            repeat += 1
        for method, values in times.items():
            peaks = entry[method]["peak_bytes"]  # type: ignore[index]
            entry[method] |= {  # type: ignore[operator]
                "ms": values,
                "median_ms": median(values),
                "peak_units": {k: v / unit_bytes for k, v in peaks.items()},
            }
    finally:
        del z
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if "median_ms" in entry.get("ours", {}) and "median_ms" in entry.get("reference", {}):  # type: ignore[operator]
        entry["speedup"] = entry["reference"]["median_ms"] / entry["ours"]["median_ms"]  # type: ignore[index]
    return entry


def summary_line(entry: dict[str, object]) -> str:
    ours, ref = entry["ours"], entry["reference"]
    if "median_ms" not in ours:  # type: ignore[operator]
        return f"{entry['loss']} B={entry['B']} M={entry['M']}: skipped ({ours['skipped']})"  # type: ignore[index]
    peak = ours["peak_units"]  # type: ignore[index]
    text = f"{entry['loss']} B={entry['B']} M={entry['M']}: {ours['median_ms']:.1f} ms, "  # type: ignore[index]
    text += f"peak {peak['fwd']:.1f}/{peak['fwd+bwd']:.1f} (fwd/fwd+bwd)"
    if "median_ms" in ref:  # type: ignore[operator]
        text += f"; ref {ref['median_ms']:.1f} ms, {ref['peak_units']['fwd+bwd']:.1f}; {entry['speedup']:.1f}x"  # type: ignore[index]
    else:
        text += f"; ref skipped ({ref['skipped']})"  # type: ignore[index]
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = timing_parser(__doc__, repeats=5)
    parser.add_argument("--losses", nargs="+", default=list(CATALOG), choices=list(CATALOG))
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 1024, 4096], help="B values")
    parser.add_argument("--views", type=int, nargs="+", default=[1, 6], help="M values (positive views per anchor)")
    parser.add_argument("--dim", type=int, default=128, help="D, the projection width")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="small sizes repeat (up to 50 times) until this much was timed")
    parser.add_argument("--max-gb", type=float, help="skip a method whose estimated peak exceeds this (default: 8 on CPU, 90%% of the GPU)")
    args = parse_timing_args(parser, argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    if args.max_gb is None:
        args.max_gb = 0.9 * torch.cuda.get_device_properties(0).total_memory / 2**30 if args.device == "cuda" else 8.0
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    entries = []
    for batch in args.batches:
        for positives in args.views:
            for name in args.losses:
                entry = bench_config(name, batch, positives, args, device)
                entries.append(entry)
                print(summary_line(entry), entry.get("agreement", ""), flush=True)
    report = {
        **report_header("losses", __file__, argv, args.device),
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "memory_method": "torch.cuda.max_memory_allocated" if args.device == "cuda" else "torch.profiler memory records (running sum)",
        "entries": entries,
    }
    if args.no_record:
        return
    settings = (
        f"`{report['command']}`; D={args.dim}, fwd+bwd, {args.repeats} repeats after warm-up, median; "
        "peak in (B·V)² fp32 matrices ((B·anchors)² where only anchors are negatives)"
    )
    path = record(f"losses-{args.device}", report, settings, "<br>".join(summary_line(e) for e in entries))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
