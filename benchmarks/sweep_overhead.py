"""Sweep overhead: a study of 8 one-step trials against the same trials run in one process.

study     ``study/run_sweep.py --preset quickstart`` reduced to 8 trivial trials (infonce,
          batch 32 on 32 digits images = one step, one epoch, seeds 0-7, kNN evaluation), run
          through its real main() in a fresh subprocess with a private Ray instance and a
          temporary MLflow store and storage folder. Two paths:
            in-process  workers=1: the loop runs inside the Tune trial;
            ddp         workers=2, cpus_per_worker=0.5: a TorchTrainer per trial (gloo DDP).
          Timed: main() from call to return (its Python imports done before), and inside it
          ray.init (Ray's start-up).
ddp-floor Ray alone: the same Tune study settings (8 trials, one at a time, reused trial actors,
          a 0.5-CPU trial driving a TorchTrainer of 2 workers at 0.5 CPU, the same health-check
          interval) around an empty loop that reports once, with no MLflow and no project code.
          Its per-trial time is what Tune + Train cost on this machine before any of ours.
baseline  the same 8 trials' work, ``trainables.run.pretrain.pretrain`` with a LocalSession and
          no MLflow (data, model, the step, kNN, evaluation, checkpoint), one after another
          in this process.

per-trial overhead = (study wall - Ray start-up - baseline) / 8 (no baseline for ddp-floor). Trials run one at a time
(--max-concurrent 1) so the sum is meaningful. Each measurement is the median of --repeats
runs after one warm-up run. From the study's MLflow runs the wall-clock is split into: before
the first trial's run exists, each trial from its MLflow run's creation to its end, the gaps
between trials, and after the last one; the CPU seconds of every process of the study (Ray's
daemons included) are sampled as well.

    python benchmarks/sweep_overhead.py
    python benchmarks/sweep_overhead.py --paths in-process --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import ProcessCpu, median, parse_timing_args, record, report_header  # noqa: E402
from trainables.spec.losses import BASELINE  # noqa: E402

TRIALS = 8
OVERRIDES = [
    f"loss={BASELINE}",
    "batch_size=32",
    "limit_train=32",
    "epochs=1",
    f"seeds={TRIALS}",
    "eval.mode=knn",
    "eval.knn_k=20",
]
PATHS = {"in-process": ["workers=1", "cpus_per_worker=1.0"], "ddp": ["workers=2", "cpus_per_worker=0.5"], "ddp-floor": []}
FLOOR = "ddp-floor"


def sweep_argv(path: str, work: Path, name: str, max_concurrent: int) -> list[str]:
    if path == FLOOR:
        return [FLOOR, str(work / "storage"), name, str(max_concurrent)]
    sets = [f"--set={item}" for item in OVERRIDES + PATHS[path]]
    return [
        "--preset",
        "quickstart",
        *sets,
        "--name",
        name,
        "--storage-path",
        str(work / "storage"),
        "--tracking-uri",
        f"sqlite:///{work / 'mlflow.db'}",
        "--max-concurrent",
        str(max_concurrent),
        "--address",
        "local",
    ]


# --- Ray's floor: Tune + Train around an empty loop ---------------------------------------------
def empty_loop(config: dict[str, Any]) -> None:
    import ray.train

    ray.train.report({"epoch": 1})


def floor_trial(params: dict[str, Any]) -> None:
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    name = f"floor-{ray.tune.get_context().get_trial_id()}"
    scaling = ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5})
    run = ray.train.RunConfig(name=name, storage_path=params["storage"], callbacks=[TuneReportCallback()])
    TorchTrainer(empty_loop, scaling_config=scaling, run_config=run).fit()


def run_floor(argv: list[str]) -> int:
    """The ddp-floor study (argv: storage, name, max_concurrent), set up as study/sweep.py sets up
    a study: the same ray.init, trial resources and TuneConfig."""
    import ray
    from ray import tune

    from study.plan import DRIVER_CPU
    from study.sweep import RAY_ENV

    storage, name, concurrent = argv
    ray.init(address="local", logging_level="WARNING", runtime_env=RAY_ENV)
    space = {"seed": tune.grid_search(list(range(TRIALS))), "storage": storage}
    tuner = tune.Tuner(
        tune.with_resources(floor_trial, tune.PlacementGroupFactory([{"CPU": DRIVER_CPU}])),
        param_space=space,
        tune_config=tune.TuneConfig(max_concurrent_trials=int(concurrent), reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0),
    )
    errors = tuner.fit().num_errors
    return 1 if errors else 0


# --- the study, in a child process -------------------------------------------------------------
def child(argv: list[str]) -> None:
    """Runs run_sweep.main(argv) (or the ddp-floor study) with ray.init timed; prints one JSON
    line of timings."""
    import ray

    import study.run_sweep as run_sweep
    import study.sweep  # noqa: F401  (its imports: Ray Tune, MLflow, torch)

    timings: dict[str, float] = {}
    ray_init = ray.init

    def timed_init(*args: Any, **kwargs: Any) -> Any:
        begin = time.perf_counter()
        try:
            return ray_init(*args, **kwargs)
        finally:
            timings["ray_init_s"] = time.perf_counter() - begin

    ray.init = timed_init
    timings["start_unix"] = time.time()
    begin = time.perf_counter()
    code = run_floor(argv[1:]) if argv[0] == FLOOR else run_sweep.main(argv)
    timings["study_wall_s"] = time.perf_counter() - begin
    timings["end_unix"] = time.time()
    begin = time.perf_counter()
    ray.shutdown()
    timings["ray_shutdown_s"] = time.perf_counter() - begin
    print("TIMINGS " + json.dumps(timings | {"returncode": code}), flush=True)


def run_study(path: str, work: Path, name: str, max_concurrent: int) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", *sweep_argv(path, work, name, max_concurrent)]
    env = os.environ | {"PYTHONPATH": str(REPO), "RAY_ADDRESS": "local"}
    load = os.getloadavg()[0]
    process = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cpu = ProcessCpu(process.pid)
    output, _ = process.communicate()
    cpu.stop()
    lines = [line for line in output.splitlines() if line.startswith("TIMINGS ")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"the study failed ({process.returncode}):\n{output[-4000:]}")
    timings = json.loads(lines[-1].removeprefix("TIMINGS "))
    if timings["returncode"] != 0:
        raise RuntimeError(f"run_sweep.main returned {timings['returncode']}:\n{output[-4000:]}")
    timings["timeline"] = timeline(work, name, timings) if path != FLOOR else None
    timings["cpu_seconds"] = cpu.between(timings["start_unix"], timings["end_unix"])
    timings["load_average_before"] = load
    return timings


def timeline(work: Path, name: str, timings: dict[str, float]) -> dict[str, Any]:
    """The study's wall-clock split by its trials' MLflow runs (created at trial start, ended by
    the driver's callback), with each trial's own pretraining seconds (the loop's wall_clock)."""
    from mlflow.tracking import MlflowClient

    from trainables.integration.mlflow_search import search_runs
    from trainables.spec import run_schema as rs

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    runs = search_runs(client, {rs.STUDY: name, rs.KIND: rs.KIND_PRETRAIN})
    runs = sorted(runs, key=lambda r: r.info.start_time)
    spans = [((r.info.start_time or 0) / 1e3, (r.info.end_time or 0) / 1e3) for r in runs]
    inside = [end - start for start, end in spans]
    gaps = [spans[i + 1][0] - spans[i][1] for i in range(len(spans) - 1)]
    return {
        "trials": len(runs),
        "before_first_trial_s": spans[0][0] - timings["start_unix"] - timings["ray_init_s"] if spans else None,
        "trial_run_s": inside,
        "trial_pretrain_loop_s": [r.data.metrics.get(rs.M_WALL_CLOCK) for r in runs],
        "gaps_between_trials_s": gaps,
        "after_last_trial_s": timings["end_unix"] - spans[-1][1] if spans else None,
    }


# --- the same trials in one process --------------------------------------------------------------
def baseline_seconds(work: Path) -> list[float]:
    """Seconds of each of the 8 trials' work, run with pretrain() and a LocalSession, no MLflow."""
    from study.plan import make_plan, parse_overrides
    from trainables.integration.session import LocalSession
    from trainables.run.evaluation import EvalConfig
    from trainables.run.train_and_evaluate import train_and_evaluate

    plan = make_plan("quickstart", parse_overrides(OVERRIDES + PATHS["in-process"]))
    seconds = []
    for i, cfg in enumerate(plan.configs):
        begin = time.perf_counter()
        train_and_evaluate(
            cfg,
            LocalSession(work / f"local-{time.monotonic_ns()}-{i}"),
            run_id=None,
            tracking_uri=None,
            evaluation=EvalConfig(**plan.preset.evaluation),
        )
        seconds.append(time.perf_counter() - begin)
    return seconds


def process_kind(name: str) -> str:
    """ "ray::RayTrainWorker.poll_status" -> "ray::RayTrainWorker"; Ray's daemons by their binary."""
    if name.startswith("ray::"):
        return name.split(".", 1)[0]
    return name.split("(", 1)[0].strip().rsplit("/", 1)[-1][:40]


def summarise(path: str, runs: list[dict[str, Any]], base: float) -> dict[str, Any]:
    """Medians over the runs of one path, with the CPU seconds per trial of each process kind."""
    wall, start = median([r["study_wall_s"] for r in runs]), median([r["ray_init_s"] for r in runs])
    kinds: dict[str, list[float]] = {}
    for run in runs:
        per_kind: dict[str, float] = {}
        for name, seconds in run["cpu_seconds"].items():
            per_kind[process_kind(name)] = per_kind.get(process_kind(name), 0.0) + seconds / TRIALS
        for kind, seconds in per_kind.items():
            kinds.setdefault(kind, []).append(seconds)
    cpu = {kind: round(median(values), 2) for kind, values in sorted(kinds.items(), key=lambda kv: -median(kv[1]))}
    summary = {
        "median_study_wall_s": wall,
        "median_ray_init_s": start,
        "median_ray_shutdown_s": median([r["ray_shutdown_s"] for r in runs]),
        "per_trial_overhead_s": (wall - start - (0.0 if path == FLOOR else base)) / TRIALS,
        "median_cpu_s_per_trial_by_process": cpu,
        "median_cpu_s_per_trial": round(sum(cpu.values()), 2),
    }
    if path == FLOOR:
        return summary
    lines = [r["timeline"] for r in runs]
    return summary | {
        "median_trial_run_s": median([t for line in lines for t in line["trial_run_s"]]),
        "median_gap_between_trials_s": median([g for line in lines for g in line["gaps_between_trials_s"]] or [0.0]),
        "median_before_first_trial_s": median([line["before_first_trial_s"] for line in lines]),
        "median_after_last_trial_s": median([line["after_last_trial_s"] for line in lines]),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", nargs="+", choices=list(PATHS), default=list(PATHS), help="study paths to time")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each study and of the baseline (>= 5), after one warm-up")
    parser.add_argument("--max-concurrent", type=int, default=1, help="trials at once (default 1, so that the sum is meaningful)")
    parser.add_argument("--no-record", action="store_true", help="print only; write no JSON or RESULTS.md line")
    return parse_timing_args(parser, argv)


def main(argv: list[str] | None = None) -> None:
    if argv is None and sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
        return
    args = parse_args(argv)
    os.environ.setdefault("RAY_ADDRESS", "local")
    studies: dict[str, list[dict[str, Any]]] = {path: [] for path in args.paths}
    baseline: list[list[float]] = []
    with tempfile.TemporaryDirectory(prefix="nce-sweep-") as tmp:
        work = Path(tmp)
        for repeat in range(args.repeats + 1):  # run 0 is the warm-up; the methods take turns
            sums = baseline_seconds(work)
            if repeat:
                baseline.append(sums)
            for path in args.paths:
                result = run_study(path, work, f"{path}-{repeat}", args.max_concurrent)
                if repeat:
                    studies[path].append(result)
                print(
                    f"run {repeat}{' (warm-up)' if not repeat else ''}: {path} study {result['study_wall_s']:.1f} s, "
                    f"ray.init {result['ray_init_s']:.1f} s; baseline {sum(sums):.1f} s",
                    flush=True,
                )
    base = median([sum(s) for s in baseline])
    summary = {}
    for path, runs in studies.items():
        summary[path] = summarise(path, runs, base)
    report = {
        **report_header("sweep_overhead", __file__, argv, "cpu", ("torch", "ray", "mlflow", "optuna")),
        "trials": TRIALS,
        "overrides": OVERRIDES,
        "paths": {p: PATHS[p] for p in args.paths},
        "max_concurrent": args.max_concurrent,
        "baseline_trial_s": baseline,
        "median_baseline_sum_s": base,
        "studies": studies,
        "summary": summary,
    }
    print(json.dumps(summary, indent=2))
    if args.no_record:
        return
    loads = [r["load_average_before"] for runs in studies.values() for r in runs]
    settings = (
        f"`{report['command']}`; quickstart preset, {TRIALS} trials of 1 step ({BASELINE}, batch 32, 32 digits images, kNN eval), "
        f"{args.max_concurrent} at a time; {args.repeats} runs after a warm-up, median; "
        f"load average before a study {min(loads):.1f}-{max(loads):.1f}"
    )
    result = f"baseline (same trials, one process) {base:.1f} s; " + "; ".join(
        f"{path}: study {s['median_study_wall_s']:.1f} s, Ray start {s['median_ray_init_s']:.1f} s, "
        f"per-trial overhead {s['per_trial_overhead_s']:.2f} s"
        for path, s in summary.items()
    )
    print(f"wrote {record('sweep_overhead-cpu', report, settings, result)}")


if __name__ == "__main__":
    main()
