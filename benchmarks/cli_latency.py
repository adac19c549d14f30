"""How long the command lines take to answer --help, a dry run and a validation error, against `python -c pass`.

    python benchmarks/cli_latency.py [--repeats 7]

Each command runs in a fresh interpreter (as a user types it), ``--repeats`` times after one warm-up,
from a temporary folder; the median wall-clock is reported beside Python's own start-up and beside
`import torch`, the import these answers avoid. Goal: every answer within 2 s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script, like every benchmark

from benchmarks.common import REPO, median, record, report_header  # noqa: E402

GOAL_S = 2.0
COMMANDS: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "import torch": ["-c", "import torch"],
    "run_sweep.py --help": ["study/run_sweep.py", "--help"],
    "train.py --help": ["study/train.py", "--help"],
    "linear_eval.py --help": ["study/linear_eval.py", "--help"],
    "python -m analysis --help": ["-m", "analysis", "--help"],
    "run_sweep.py --preset quickstart --dry-run": ["study/run_sweep.py", "--preset", "quickstart", "--dry-run"],
    "train.py --dataset digits --dry-run": ["study/train.py", "--dataset", "digits", "--dry-run"],
    "run_sweep.py --preset quickstrat (error)": ["study/run_sweep.py", "--preset", "quickstrat"],
    "run_sweep.py --set batchsize=64 (error)": ["study/run_sweep.py", "--preset", "quickstart", "--set", "batchsize=64"],
    "train.py --lr inf (error)": ["study/train.py", "--lr", "inf"],
    "linear_eval.py --mode svm (error)": ["study/linear_eval.py", "--model_path", "x", "--mode", "svm"],
}
BASELINES = ("python -c pass", "import torch")


def seconds(args: list[str], cwd: str) -> float:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *[str(REPO / a) if a.startswith("study/") else a for a in args]], cwd=cwd, env=env, capture_output=True
    )
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 2):
        raise SystemExit(f"{args} exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    report = report_header("cli_latency", __file__, argv, packages=("torch", "ray", "mlflow"))
    load = os.getloadavg()
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as cwd:
        for name, command in COMMANDS.items():
            seconds(command, cwd)  # warm-up: the file cache, as for a user's second command
            times[name] = [seconds(command, cwd) for _ in range(args.repeats)]
    medians = {name: median(values) for name, values in times.items()}
    answers = [name for name in COMMANDS if name not in BASELINES]
    worst = max(medians[name] for name in answers)
    report |= {
        "repeats": args.repeats,
        "load_average_before": load,
        "seconds": times,
        "median_s": medians,
        "goal_s": GOAL_S,
        "met": worst <= GOAL_S,
    }
    result = "; ".join(f"{name} {medians[name]:.2f} s" for name in COMMANDS)
    result += f"; slowest answer {worst:.2f} s, goal {GOAL_S:g} s: {'met' if worst <= GOAL_S else 'missed'}"
    settings = (
        f"`{report['command']}`; fresh interpreter per run, 1 warm-up + {args.repeats} timed, median; load average before {load[0]:.1f}"
    )
    record("cli_latency", report, settings, result)
    print(result)


if __name__ == "__main__":
    main()
