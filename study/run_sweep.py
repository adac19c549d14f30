"""Run a study: Ray Tune over loss x batch size x views x lr, one MLflow tree per study.

    python study/run_sweep.py --preset quickstart
    python study/run_sweep.py --preset flatnce-batch-size --dry-run
    python study/run_sweep.py --preset cifar10-cpu --set epochs=3 --set seeds=1
    python study/run_sweep.py --resume NAME          # continue a study killed midway
    python study/run_sweep.py --preset cifar10-cpu --adaptive-seeds 6:2:12     # seeds where comparisons are unresolved
    python study/run_sweep.py --preset cifar10-cpu --dry-run --seeds-for 0.5 --from-study NAME
    python study/run_sweep.py --replicate-of NAME    # NAME again on the next seeds, as NAME-replicate

Each trial pretrains (in the trial itself for one CPU worker, under Ray Train's TorchTrainer
for several workers or GPUs) and then evaluates its backbone. Grid presets reproduce a
paper's table; search presets let Optuna's TPE propose trials. Everything is validated
before Ray starts; --dry-run prints the trials and what they cost without starting it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

from study.cli import (
    adaptive_seeds_arg,
    effect_arg,
    int_flag,
    path_arg,
    reachable_tracking_uri,
    text_arg,
    usage_error,
)
from study.dataset_check import DATA_FIELDS, check_dataset
from study.owned_names import Claim
from study.plan import Plan, machine_resources, make_plan, max_concurrent, parse_overrides, preset_named
from study.preflight import check_splits, checked_store, run_folders, writable_folder
from study.study_file import PLAN_FILE, read_plan_file
from trainables.spec.files import under
from trainables.spec.validation import NAME_CHARS, ConfigError, problem
from trainables.spec.yaml_config import from_file, read_yaml_file


def build_parser() -> argparse.ArgumentParser:
    from search_spaces import PRESETS

    parser = argparse.ArgumentParser(
        prog="study/run_sweep.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--preset", help=f"a named study from search_spaces/: {', '.join(PRESETS)}")
    what.add_argument(
        "--resume",
        metavar="NAME",
        help="continue the study NAME, a folder directly under --storage-path: finished trials are kept, interrupted ones continue",
    )
    what.add_argument(
        "--replicate-of",
        metavar="NAME",
        help="run the study NAME (a folder under --storage-path) again, its preset and overrides, on the next seeds "
        "disjoint from its own, as many; named NAME-replicate unless --name is given",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, a grid axis (a list: batch_size=[64, 256]), seeds, num_samples, scheduler or eval.<field>; values are YAML",
    )
    parser.add_argument("--config", type=path_arg("config"), help="YAML mapping of overrides (as --set), applied before --set")
    parser.add_argument(
        "--data-dir", "--data_dir", type=text_arg("data_dir"), help="folder holding the dataset: the same as --set data_dir=DIR"
    )
    parser.add_argument(
        "--name", help=f"study name (default: PRESET-YYYYmmdd-HHMMSS), made of {NAME_CHARS}; the MLflow tree and storage folder use it"
    )
    parser.add_argument(
        "--storage-path",
        type=path_arg("storage_path"),
        default="nce_runs",
        help="Tune and Train storage (a shared path on a cluster; default: nce_runs)",
    )
    parser.add_argument(
        "--tracking-uri",
        type=text_arg("tracking_uri"),
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)",
    )
    parser.add_argument("--experiment", default="nce-study", help=f"MLflow experiment, made of {NAME_CHARS} (default: nce-study)")
    int_flag(parser, "--max-concurrent", 1, 10_000, "trials at once (default: as many as the cluster fits)")
    int_flag(parser, "--grace-period", 1, 100_000, "ASHA: epochs before a trial can be stopped", default=1)
    int_flag(parser, "--reduction-factor", 2, 1000, "ASHA: keep 1/N of trials at each rung", default=2)
    int_flag(parser, "--max-failures", 0, 100, "restarts of a failed trial from its last checkpoint", default=0)
    parser.add_argument(
        "--address",
        type=text_arg("address"),
        help="Ray cluster address (default: RAY_ADDRESS, else a running local cluster, else a new one)",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="start afresh under a study name in use: its folder is archived as NAME.replaced-<time>, and its MLflow runs renamed to match",
    )
    parser.add_argument(
        "--trust-state",
        action="store_true",
        help="resume without checking Tune's state files against the study's seal (for a folder whose sealed copy was lost); "
        "only for a folder nobody else can write: restoring unpickles them",
    )
    parser.add_argument(
        "--adaptive-seeds",
        type=adaptive_seeds_arg,
        metavar="INITIAL:STEP:MAX",
        help="run INITIAL seeds, then STEP more at a time only for the cells of comparisons still unresolved, "
        "up to MAX (sequential tests hold the tables' 5 %% family-wise error); the same as --set adaptive={initial: ..., step: ..., max_seeds: ...}",
    )
    parser.add_argument(
        "--seeds-for",
        type=effect_arg,
        metavar="EFFECT",
        help="with --dry-run: per comparison of the study, the seeds a true difference of EFFECT percentage points needs "
        "at 80 %% power and the tables' level, from --from-study's per-seed spread",
    )
    parser.add_argument("--from-study", metavar="NAME", help="with --seeds-for: a recorded study of the same preset, by its name in MLflow")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the trials, their resources and cost, check that the datasets are there; start nothing",
    )
    return parser


def overrides_from(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """(overrides, where each came from): the --config file, then --data-dir, then --set."""
    from_file = read_yaml_file(args.config) if args.config else {}
    sources = {key: f"in config={str(args.config)!r}:" for key in from_file}
    flags = ({"data_dir": args.data_dir} if args.data_dir else {}) | ({"adaptive": args.adaptive_seeds} if args.adaptive_seeds else {})
    given = flags | parse_overrides(args.overrides)
    flag_names = {"data_dir": "--data-dir", "adaptive": "--adaptive-seeds"}
    sources |= {key: flag_names[key] if key in flags and key not in parse_overrides(args.overrides) else "--set" for key in given}
    return from_file | given, sources


def replicate_seeds(preset_name: str, overrides: dict[str, Any], source: str) -> list[int]:
    """As many seeds as the study ran (an adaptive study: its whole budget), the next integers above its own."""
    seeds = make_plan(preset_name, overrides, dict.fromkeys(overrides, source)).preset.seeds
    return list(range(max(seeds) + 1, max(seeds) + 1 + len(seeds)))


def replicate_plan(args: argparse.Namespace) -> tuple[str, str, Plan]:
    """--replicate-of NAME: NAME's preset and overrides (then this command's), on seeds disjoint from NAME's."""
    plan_file = under(args.storage_path, args.replicate_of, "replicate_of") / PLAN_FILE
    if not plan_file.is_file():
        raise ConfigError(problem("replicate_of", args.replicate_of, f"it must name a study under --storage-path; {plan_file} does not exist"))
    saved = read_plan_file(plan_file)
    overrides, sources = overrides_from(args)
    if "seeds" in overrides:
        raise ConfigError(problem("seeds", overrides["seeds"], "--replicate-of picks the seeds (disjoint from the study's); remove --set seeds"))
    seeds = replicate_seeds(saved["preset"], saved["overrides"], f"in {plan_file}:")
    name = args.name if args.name is not None else f"{args.replicate_of}-replicate"
    under(args.storage_path, name, "name")
    merged = saved["overrides"] | overrides | {"seeds": seeds}
    where = dict.fromkeys(saved["overrides"], f"in {plan_file}:") | sources | {"seeds": "--replicate-of"}
    return name, saved["preset"], make_plan(saved["preset"], merged, where)


def studies_under(storage: Path) -> str:
    """The studies a --resume may name there (folders holding a study file), for its error."""
    names = sorted(p.parent.name for p in Path(storage).glob(f"*/{PLAN_FILE}"))
    return f"studies there: {', '.join(names)}" if names else f"{storage} holds no study"


def study_plan(args: argparse.Namespace) -> tuple[str, str, Plan]:
    """(study name, preset name, plan), from the flags or, on --resume, from the study's own file."""
    if args.resume:
        folder = under(args.storage_path, args.resume, "resume")
        plan_file = folder / PLAN_FILE
        if not plan_file.is_file():
            raise ConfigError(problem("resume", args.resume, f"it must name a study under --storage-path; {plan_file} does not exist; {studies_under(args.storage_path)}"))
        saved = read_plan_file(plan_file)
        given, sources = overrides_from(args)  # on a resume, a change the plan check names and refuses
        try:
            return (
                args.resume,
                saved["preset"],
                make_plan(saved["preset"], saved["overrides"] | given, dict.fromkeys(saved["overrides"], f"in {plan_file}:") | sources),
            )
        except ConfigError as err:
            raise err.within(str(plan_file)) from None
    if args.replicate_of:
        return replicate_plan(args)
    name = args.name if args.name is not None else f"{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    under(args.storage_path, name, "name")
    preset_named(args.preset)  # an unknown preset is named before anything is read
    overrides, sources = overrides_from(args)
    try:
        return name, args.preset, make_plan(args.preset, overrides, sources)
    except ConfigError as err:
        if args.config:
            from_config = {k for k, v in sources.items() if v.startswith("in config=")}
            raise ConfigError(from_file(err.problems, args.config, from_config), header=err.header) from None
        raise


def check_flags(args: argparse.Namespace) -> None:
    """The flags that are not part of the plan: the experiment's name and the Ray address."""
    from trainables.spec.validation import NAME_PATTERN

    if not NAME_PATTERN.fullmatch(args.experiment):
        raise ConfigError(problem("experiment", args.experiment, f"a name is made of {NAME_CHARS}"))
    if args.seeds_for is not None and not args.dry_run:
        raise ConfigError(problem("seeds_for", args.seeds_for, "it plans seeds without running anything; add --dry-run"))
    if args.from_study is not None and args.seeds_for is None:
        raise ConfigError(problem("from_study", args.from_study, "it is where --seeds-for reads the per-seed spread; add --seeds-for EFFECT"))
    if args.from_study is not None and not NAME_PATTERN.fullmatch(args.from_study):
        raise ConfigError(problem("from_study", args.from_study, f"a study name is made of {NAME_CHARS}"))
    if args.resume and args.replace:
        raise ConfigError(problem("replace", True, "--resume continues the study NAME; --replace starts a new one under a name in use"))
    if args.resume and args.adaptive_seeds:
        raise ConfigError(problem("adaptive_seeds", adaptive_text(args.adaptive_seeds), "--resume continues the study as it was planned; start a new study for other seeds"))


def check_data(plan: Plan, *, dry_run: bool) -> None:
    """Every dataset the trials use is there, before any trial starts (study/dataset_check.py), and
    for a study that starts, every trial's batch fits its splits (study/preflight.py)."""
    sizes: dict[tuple[Any, ...], dict[str, int] | None] = {}
    for cfg in plan.configs:
        key = tuple(getattr(cfg, f) for f in DATA_FIELDS)
        if key not in sizes:
            sizes[key] = check_dataset(cfg, dry_run=dry_run)
        if sizes[key] is not None:
            check_splits(cfg, sizes[key])


def check_folders(args: argparse.Namespace, plan: Plan) -> None:
    """The folders a study writes: its storage and each trial's checkpoints and decoded cache."""
    writable_folder(args.storage_path, "storage_path")
    for cfg in {(c.dataset, c.data_dir, c.cache_dir): c for c in plan.configs}.values():
        run_folders(dataclasses.replace(cfg, save_dir=str(args.storage_path)))


def check_resources(args: argparse.Namespace, plan: Plan) -> None:
    """Where Ray will start on this machine, every trial must fit it (a cluster is checked once joined)."""
    if not (args.address or os.environ.get("RAY_ADDRESS")):
        max_concurrent(plan.configs, machine_resources(), "this machine")


def adaptive_text(adaptive: dict[str, int]) -> str:
    return ":".join(str(adaptive[k]) for k in ("initial", "step", "max_seeds"))


def print_plan(name: str, plan: Plan) -> None:
    from study.adaptive import schedule_lines
    from study.report import describe_plan

    print(describe_plan(name, plan))
    for line in schedule_lines(plan):
        print(line)
    for note in plan.notes:
        print(f"note: {note}")


def print_seed_plan(args: argparse.Namespace, preset_name: str, plan: Plan) -> None:
    """--seeds-for: each comparison's seeds from --from-study's spread, or what to run first without one."""
    from study import adaptive

    print()
    if args.from_study is None:
        print("\n".join(adaptive.pilot_lines(preset_name, args.seeds_for)))
        return
    from analysis.load import StudyNotFoundError

    tracking_uri = reachable_tracking_uri(args.tracking_uri)
    try:
        trials, baselines = adaptive.load_runs(args.from_study, tracking_uri, plan.preset.evaluation.get("mode", "linear"))
    except StudyNotFoundError as err:
        raise ConfigError(problem("from_study", args.from_study, f"it must name a recorded study: {err}")) from None
    seeds = tuple(sorted({int(s) for s in trials["seed"].dropna()}))
    recorded = adaptive.differences(adaptive.family(plan.preset), trials, baselines, seeds)
    needs = adaptive.seeds_for(plan.preset, args.seeds_for, recorded)
    print("\n".join(adaptive.seeds_for_lines(plan.preset, args.seeds_for, args.from_study, needs)))


def own_study(args: argparse.Namespace, name: str, tracking_uri: str) -> Claim:
    """The study's claim on its name (study/owned_names.py), held while it runs; a name in use is refused
    before anything is written, unless --replace archives the study that had it."""
    from study.owned_names import own_name
    from trainables.spec import run_schema as rs

    field = "resume" if args.resume else "name"
    return own_name(
        args.storage_path, name, field=field, what="study", name_flag="--name", resume=bool(args.resume),
        replace=args.replace, tracking_uri=tracking_uri, experiment=args.experiment, tag=rs.STUDY, kind=rs.KIND_STUDY,
    )


def check_resumed_plan(args: argparse.Namespace, name: str, plan: Plan, tracking_uri: str) -> None:
    """A resumed study runs the plan it started with (study/plan_digest.py): one that changed since
    (study.json edited, a --set given now, the preset's code changed) is refused, naming each change."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from study.plan_digest import PLAN_DIGEST_TAG, changes_text, plan_changes, plan_digest, plan_record

    plan_file = under(args.storage_path, name, "resume") / PLAN_FILE
    saved = read_plan_file(plan_file)
    if "plan_digest" not in saved:
        print(f"note: {plan_file} records no plan digest (written before studies kept one); the resumed plan is not checked against it")
        return
    now = plan_record(plan)
    if plan_digest(now) != saved["plan_digest"]:
        changes = plan_changes(saved.get("plan") or {}, now) or ["the plan (its record in study.json is missing)"]
        raise ConfigError(problem("resume", name, f"the study's plan changed since it started ({changes_text(changes)}); "
                                  f"undo the change, or run the new plan as a new study (--preset ... --name NEW)"))
    try:
        recorded = MlflowClient(tracking_uri).get_run(saved["mlflow_run_id"]).data.tags.get(PLAN_DIGEST_TAG)
    except MlflowException as err:
        raise ConfigError(problem("resume", name, f"its study run {saved['mlflow_run_id']} of {plan_file} is not in the store ({type(err).__name__})")) from None
    if recorded is not None and recorded != saved["plan_digest"]:
        raise ConfigError(problem("resume", name, f"{plan_file} was edited: its plan digest is not the one its study run "
                                  f"{saved['mlflow_run_id']} recorded when the study started"))


def validated(args: argparse.Namespace) -> tuple[str, str, Plan]:
    """Everything that can be checked without Ray or MLflow: flags, plan, and, on a dry run, the datasets'
    files; unless this is a dry run (which may plan for a cluster elsewhere), that the trials fit this
    machine and the study's folders are writable (the datasets are loaded once the store answers)."""
    check_flags(args)
    name, preset_name, plan = study_plan(args)
    if args.dry_run:
        check_data(plan, dry_run=True)  # first: the plan counts an image folder's files
        print_plan(name, plan)
        try:
            check_resources(args, plan)
        except ConfigError as err:
            print(f"note: not on this machine: {err}; a cluster's --address is checked when the study starts")
    else:
        check_resources(args, plan)
        check_folders(args, plan)
    return name, preset_name, plan


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        name, preset_name, plan = validated(args)
        if args.dry_run:
            if args.seeds_for is not None:
                print_seed_plan(args, preset_name, plan)
            return 0
        tracking_uri = checked_store(args.tracking_uri, args.experiment)  # before any data is decoded
        check_data(plan, dry_run=False)
        claim = own_study(args, name, tracking_uri)
        if args.resume:
            try:
                check_resumed_plan(args, name, plan, tracking_uri)
            except ConfigError:
                claim.release()
                raise
        from study.sweep import run_study  # imports Ray: only a study that starts needs it

        try:
            return run_study(args, name, preset_name, plan, tracking_uri)
        finally:
            claim.release()
    except ConfigError as err:
        return usage_error(err)


if __name__ == "__main__":
    sys.exit(main())
