"""Run a study: Ray Tune over loss x batch size x views x lr, one MLflow tree per study.

    python study/run_sweep.py --preset quickstart
    python study/run_sweep.py --preset flatnce-batch-size --dry-run
    python study/run_sweep.py --preset cifar10-cpu --set epochs=3 --set seeds=1
    python study/run_sweep.py --resume NAME          # continue a study killed midway

Each trial pretrains (in the trial itself for one CPU worker, under Ray Train's TorchTrainer
for several workers or GPUs) and then evaluates its backbone. Grid presets reproduce a
paper's table; search presets let Optuna's TPE propose trials. Everything is validated
before Ray starts; --dry-run prints the trials and what they cost without starting it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from study.plan import Plan, make_plan, max_concurrent, parse_overrides, trial_resources, uses_train_workers
from study.report import describe_plan, print_summary
from trainables import run_schema as rs
from trainables.config import ConfigError, load_yaml
from trainables.data import DatasetNotFoundError, load_for
from trainables.tracking import TrackingUnavailableError, check_reachable, end_run, resolve_tracking_uri

PLAN_FILE = "study.json"  # the preset and overrides of a study, beside Tune's state, for --resume


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="study/run_sweep.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--preset", help="a named study from search_spaces/ (quickstart, cifar10-cpu, flatnce-batch-size, attentionnce-views, lineage-baselines, tpe-lr)")
    what.add_argument("--resume", metavar="NAME", help="continue the study NAME from --storage-path: finished trials are kept, interrupted ones continue")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config field, grid axis (list), seeds, num_samples, scheduler or eval.<field>")
    parser.add_argument("--config", type=Path, help="YAML mapping of overrides (as --set), applied before --set")
    parser.add_argument("--name", help="study name (default: PRESET-YYYYmmdd-HHMMSS); the MLflow tree and storage folder use it")
    parser.add_argument("--storage-path", type=Path, default=Path("nce_runs"), help="Tune and Train storage (shared storage or s3:// on a cluster; default: nce_runs)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    parser.add_argument("--experiment", default="nce-study", help="MLflow experiment (default: nce-study)")
    parser.add_argument("--max-concurrent", type=int, help="trials at once (default: as many as the cluster fits)")
    parser.add_argument("--grace-period", type=int, default=1, help="ASHA: epochs before a trial can be stopped (default: 1)")
    parser.add_argument("--reduction-factor", type=int, default=2, help="ASHA: keep 1/N of trials at each rung (default: 2)")
    parser.add_argument("--max-failures", type=int, default=0, help="restarts of a failed trial from its last checkpoint (default: 0)")
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a running local cluster, else a new one)")
    parser.add_argument("--dry-run", action="store_true", help="print the trials, their resources and cost; start nothing")
    return parser


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    from_file = load_yaml(args.config.read_text(encoding="utf-8")) if args.config else {}
    if not isinstance(from_file, dict):
        raise ConfigError(f"config={str(args.config)!r} must hold a mapping of key: value")
    return from_file | parse_overrides(args.overrides)


def study_plan(args: argparse.Namespace) -> tuple[str, str, Plan]:
    """(study name, preset name, plan), from the flags or, on --resume, from the study's own file."""
    if args.resume:
        plan_file = args.storage_path / args.resume / PLAN_FILE
        if not plan_file.is_file():
            raise ConfigError(f"resume={args.resume!r}: no study at {plan_file.parent} (see --storage-path)")
        saved = json.loads(plan_file.read_text())
        return args.resume, saved["preset"], make_plan(saved["preset"], saved["overrides"])
    name = args.name or f"{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    return name, args.preset, make_plan(args.preset, overrides_from(args))


def check_data(plan: Plan) -> None:
    """Every dataset the trials use loads (and an image folder's decoded cache is built), before any trial starts."""
    fields = ("dataset", "data_dir", "download", "image_size", "load_size", "in_memory_gb", "cache_dir")
    for cfg in {tuple(getattr(c, f) for f in fields): c for c in plan.configs}.values():
        load_for(cfg)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        name, preset_name, plan = study_plan(args)
        if args.dry_run:
            print(describe_plan(name, plan))
            return 0
        tracking_uri = resolve_tracking_uri(args.tracking_uri)
        check_reachable(tracking_uri)
        check_data(plan)
    except (ConfigError, DatasetNotFoundError, TrackingUnavailableError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from study.sweep import run_study

    try:
        return run_study(args, name, preset_name, plan, tracking_uri)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
