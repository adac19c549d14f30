"""End to end: wall-clock of ``make demo`` (the quickstart study) on this machine, after install.

Runs ``make install`` once (untimed: a no-op where the virtual environment is already
built), then ``make demo`` --warmup + --repeats times, each timed with time.perf_counter from
start to exit. The demo's MLflow store goes to a temporary folder (MLFLOW_TRACKING_URI) and
Ray starts a private instance (RAY_ADDRESS=local); the study folders each run leaves under
nce_runs/ are removed afterwards. Reports the median of the timed runs and each run's
own "demo finished in N s" line. Each run takes minutes: the default of 1 warm-up and 5
timed runs takes about half an hour on a 2-core machine.

    python benchmarks/demo_wallclock.py
    python benchmarks/demo_wallclock.py --warmup 0 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import median, record, report_header  # noqa: E402

GOAL_S = 300.0


def run_demo(work: Path) -> tuple[float, float | None, str]:
    """(wall seconds, the demo's own reported seconds, the output's tail) of one ``make demo``."""
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}", "RAY_ADDRESS": "local"}
    runs = REPO / "nce_runs"
    before = set(runs.iterdir()) if runs.is_dir() else set()
    begin = time.perf_counter()
    done = subprocess.run(["make", "-C", str(REPO), "demo"], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - begin
    for folder in (set(runs.iterdir()) if runs.is_dir() else set()) - before:
        shutil.rmtree(folder, ignore_errors=True)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"make demo failed ({done.returncode}):\n{output[-4000:]}")
    reported = re.search(r"demo finished in (\d+) s", output)
    return seconds, float(reported.group(1)) if reported else None, output[-1500:]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (default 5)")
    parser.add_argument("--no-record", action="store_true", help="print only; write no JSON or RESULTS.md line")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    subprocess.run(["make", "-C", str(REPO), "install"], check=True, capture_output=True)
    walls: list[float] = []
    reported: list[float | None] = []
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="nce-demo-") as tmp:
        for run in range(args.warmup + args.repeats):
            loads.append(os.getloadavg()[0])
            seconds, own, tail = run_demo(Path(tmp))
            timed = run >= args.warmup
            if timed:
                walls.append(seconds)
                reported.append(own)
            print(f"run {run + 1}{'' if timed else ' (warm-up)'}: make demo {seconds:.1f} s (demo's own line: {own} s)", flush=True)
    wall = median(walls)
    report = {
        **report_header("demo", __file__, argv, "cpu", ("torch", "ray", "mlflow", "optuna")),
        "warmup": args.warmup,
        "repeats": args.repeats,
        "make_demo_s": walls,
        "demo_reported_s": reported,
        "median_make_demo_s": wall,
        "goal_s": GOAL_S,
        "load_average_before_each_run": loads,
        "last_output": tail,
    }
    print(f"make demo: median {wall:.1f} s over {len(walls)} runs (goal {GOAL_S:.0f} s)")
    if args.no_record:
        return
    settings = f"`{report['command']}`; `make demo` after `make install`, {args.warmup} warm-up + {args.repeats} timed runs, median; load average before a run {min(loads):.1f}-{max(loads):.1f}"
    result = f"make demo {wall:.0f} s median (runs {', '.join(f'{w:.0f}' for w in walls)} s); goal {GOAL_S:.0f} s: {'met' if wall <= GOAL_S else 'not met'}"
    print(f"wrote {record('demo-cpu', report, settings, result)}")


if __name__ == "__main__":
    main()
