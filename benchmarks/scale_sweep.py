"""How the sweep driver's cost grows with the study: 10, 100 and 500 trivial trials, grid and TPE.

Each study is ``study/run_sweep.py`` itself, in a fresh subprocess with a private Ray instance,
a temporary SQLite MLflow store and storage folder, one trial at a time (--max-concurrent 1):

    grid  quickstart: infonce, batch 32 on 32 digits images (one step, one epoch), N learning
          rates and one seed, so one random-init baseline however large the study
    tpe   tpe-lr (Optuna TPE + ASHA) on digits, small backbone, CPU, 256 images (one to four
          steps, one epoch), num_samples N

Each trial still does everything a trial does (its MLflow run, the step, validation kNN, a
checkpoint, the kNN evaluation run), so the trials' own time is small but not zero. From the
study's MLflow runs:

    in-trial     each trial run from its creation (in the trial) to its end (set by the driver's
                 callback once Tune reports the trial complete)
    between      from one trial's end to the next trial's creation: Tune choosing, starting and
                 bookkeeping the next trial, the searcher's suggestion, experiment checkpoints
    driver CPU   CPU seconds of the sweep driver process alone (sampled from /proc) from the first
                 trial's start to the last one's end, per trial

Flat means per-trial ``between`` and driver CPU do not grow from 10 to 500 trials; the result
gives them for the first and last tenth of each study too, where growth within a study shows.

    python benchmarks/scale_sweep.py                          # grid and tpe, 10 100 500
    python benchmarks/scale_sweep.py --kinds grid --sizes 10 100
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import ProcessCpu, median, record, report_header  # noqa: E402
from trainables.spec.losses import BASELINE  # noqa: E402

KINDS = {
    "grid": ["--preset", "quickstart", "--set", f"loss={BASELINE}", "--set", "batch_size=32", "--set", "limit_train=32"],
    "tpe": ["--preset", "tpe-lr", "--set", "dataset=digits", "--set", "backbone=small", "--set", "gpu=false", "--set", "limit_train=256"],
}
COMMON = ["--set", "epochs=1", "--set", "eval.mode=knn", "--set", "eval.knn_k=20", "--max-concurrent", "1"]


def study_argv(kind: str, size: int, work: Path) -> list[str]:
    lrs = ",".join(f"{0.001 + 1e-6 * i:.6f}" for i in range(size))
    count = ["--set", "seeds=1", "--set", f"lr=[{lrs}]"] if kind == "grid" else ["--set", f"num_samples={size}"]
    return [
        *KINDS[kind],
        *count,
        *COMMON,
        "--name",
        f"{kind}-{size}",
        "--storage-path",
        str(work / "storage"),
        "--tracking-uri",
        f"sqlite:///{work / 'mlflow.db'}",
    ]


def trial_times(uri: str, study: str) -> tuple[list[float], list[float], float, float]:
    """(seconds inside each trial, seconds between consecutive trials, first start, last end), in start order."""
    from mlflow.tracking import MlflowClient

    from trainables.integration.mlflow_search import search_runs
    from trainables.spec import run_schema as rs

    runs = search_runs(MlflowClient(uri), {rs.STUDY: study, rs.KIND: rs.KIND_PRETRAIN})
    runs.sort(key=lambda r: r.info.start_time)
    inside = [(r.info.end_time - r.info.start_time) / 1000 for r in runs]
    between = [(b.info.start_time - a.info.end_time) / 1000 for a, b in zip(runs, runs[1:])]
    return inside, between, runs[0].info.start_time / 1000, max(r.info.end_time for r in runs) / 1000


def tenth(values: list[float], last: bool) -> float:
    k = max(1, len(values) // 10)
    return median(values[-k:] if last else values[:k])


def run_study(kind: str, size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="nce-scale-sweep-") as tmp:
        work = Path(tmp)
        env = os.environ | {"PYTHONPATH": str(REPO), "RAY_TMPDIR": str(work / "ray")}
        env.pop("RAY_ADDRESS", None)
        started = time.time()
        with (work / "log").open("w") as log:
            process = subprocess.Popen(
                [sys.executable, str(REPO / "study" / "run_sweep.py"), *study_argv(kind, size, work)],
                cwd=work,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            cpu = ProcessCpu(process.pid)
            code = process.wait()
            cpu.stop()
        ended = time.time()
        if code != 0:
            raise RuntimeError(f"{kind}-{size} failed ({code}):\n{(work / 'log').read_text()[-4000:]}")
        inside, between, first_start, last_end = trial_times(f"sqlite:///{work / 'mlflow.db'}", f"{kind}-{size}")
        # From the first trial's start to the last one's end: the driver's start-up (imports,
        # ray.init) is a fixed cost, left out so that the per-trial figure can be compared.
        by_process = cpu.between(first_start, last_end)
        driver = sum(v for k, v in by_process.items() if "run_sweep.py" in k)
        assert len(inside) == size, (kind, size, len(inside))
        return {
            "kind": kind,
            "trials": size,
            "wall_s": round(ended - started, 1),
            "in_trial_s": round(median(inside), 3),
            "between_s": round(median(between), 3) if between else None,
            "between_first_tenth_s": round(tenth(between, False), 3) if between else None,
            "between_last_tenth_s": round(tenth(between, True), 3) if between else None,
            "trials_span_s": round(last_end - first_start, 1),
            "driver_cpu_s": round(driver, 1),
            "driver_cpu_per_trial_s": round(driver / size, 3),
            "cpu_by_process_s": dict(list(by_process.items())[:8]),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[10, 100, 500])
    args = parser.parse_args(argv)
    report = report_header("scale_sweep", __file__, argv, packages=("torch", "ray", "optuna", "mlflow"))
    report["load_average_before"] = os.getloadavg()
    report["studies"] = []
    for kind in args.kinds:
        for size in args.sizes:
            result = run_study(kind, size)
            report["studies"].append(result)
            print({k: v for k, v in result.items() if k != "cpu_by_process_s"}, flush=True)
    report["load_average_after"] = os.getloadavg()
    cells = []
    for kind in args.kinds:
        rows = [r for r in report["studies"] if r["kind"] == kind]
        first, last = rows[0], rows[-1]
        ratio = last["between_s"] / first["between_s"] if first["between_s"] else float("nan")
        cells.append(
            f"{kind}: between trials "
            + ", ".join(f"{r['trials']}: {r['between_s']:.2f} s" for r in rows)
            + f" ({last['trials']}/{first['trials']} ratio {ratio:.2f}); driver CPU/trial "
            + ", ".join(f"{r['driver_cpu_per_trial_s']:.2f}" for r in rows)
            + " s"
        )
    load = report["load_average_before"][0]
    record(
        "scale_sweep",
        report,
        f"trivial trials, one at a time; sizes {' '.join(map(str, args.sizes))}; load avg {load:.1f} before",
        "; ".join(cells),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
