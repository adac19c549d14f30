"""Running a planned study on Ray Tune: baselines, tuning, the trials, adaptive seeds, scheduler, restore.

A study runs in up to four steps, all recorded under its one MLflow study run:

1. the random-init baseline: the trials' encoder, untrained, evaluated once per seed;
2. with ``Preset.tuning``, each grid cell's own Optuna study of the same number of trials over
   lr (and τ), selected on validation (these runs carry the study name + ``TUNING_SUFFIX``,
   so the study's tables never read them);
3. the study's trials: the grid (with each cell's selection, when tuned) x seeds, or an
   Optuna search over the preset's space;
4. with ``Preset.adaptive``, a round per look of its schedule: the cells of the comparisons still
   unresolved get the next seeds (new trials of the same study, in Tune runs of their own under
   ``rounds/``; ``study/adaptive.py`` decides which).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from search_spaces.preset import Tuning
from study import adaptive, state_seal
from study.adaptive import cell_label, cell_loss
from study.console import StudyConsole, quiet_ray
from study.optuna_search import CellSpace, build_search
from study.plan import Plan, max_concurrent, trial_resources
from study.plan_digest import PLAN_DIGEST_TAG, plan_digest, plan_record
from study.report import print_summary
from study.stopping import Stop, end_running_as_killed, mark_running, stop_on_signals
from study.study_file import write_plan_file
from study.study_run import (
    TrialStatusCallback,
    create_study_run,
    find_study_run,
    reconcile,
    record_look,
)
from trainables.integration.mlflow_search import search_runs
from trainables.integration.tracking import end_run, trial_run_name
from trainables.launch.trial import run_trial
from trainables.spec import run_schema as rs
from trainables.spec.eval_config import eval_from_dict
from trainables.spec.files import write_atomically
from trainables.spec.losses import HYPERPARAMETERS
from trainables.spec.pretrain_config import PretrainConfig, from_dict
from trainables.spec.study_context import StudyContext
from trainables.spec.validation import ConfigError

TPE_MAX_CONCURRENT = 4  # more trials in flight than this and TPE degrades towards random search
TUNING_SUFFIX = "/tuning"  # tuning runs' study tag: the study's name + this, never the study's own
# Ray Train's controller polls its workers at this interval (default 2 s): every report and the
# end of every run wait for a tick, so a short interval saves seconds per trial.
RAY_ENV = {"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}}


def run_grid_point(config: dict[str, Any], context: StudyContext) -> None:
    """Tune's entry for a grid trial: the whole point (cell and seed) is one grid value, so that
    a loss's own axis values (``Preset.per_loss_axes``) need no product grid."""
    run_trial(config.get("point", config), context)


def trial_folder(trial: Any, context: StudyContext) -> str:
    """A trial's storage folder: its MLflow run name and Tune's trial id (unique, findable)."""
    params = trial.config.get("point", trial.config)
    try:
        return f"{trial_run_name(from_dict(context.trial_config(params)))}_{trial.trial_id}"
    except ConfigError:  # an Optuna suggestion Tune has not resolved yet
        return trial.trial_id


def trial_placement(plan: Plan, cluster: dict[str, float]) -> tune.PlacementGroupFactory:
    """The Tune trial's own bundle; on a cluster with a TRAIN_DRIVER resource, drivers go there."""
    driver = {k: max(trial_resources(c)[0].get(k, 0.0) for c in plan.configs) for k in ("CPU",)}
    if "TRAIN_DRIVER" in cluster and any(trial_resources(c)[1] for c in plan.configs):
        driver = {"CPU": 0.0, "TRAIN_DRIVER": 0.01}
    return tune.PlacementGroupFactory([driver])


def tune_config(args: argparse.Namespace, context: StudyContext, plan: Plan, concurrency: int) -> tune.TuneConfig:
    """Search or grid, ASHA or none. Trial actors are reused: a fresh one per trial spends
    ~10 CPU-seconds importing torch, MLflow and Tune before the trial's first step."""
    preset, epochs, name = plan.preset, int(plan.preset.fixed.get("epochs", 1)), context.study
    folders = functools.partial(trial_folder, context=context)
    scheduler = None
    if preset.scheduler == "asha":
        scheduler = ASHAScheduler(
            time_attr="epoch",
            metric=rs.M_VAL_KNN,
            mode="max",
            max_t=epochs,
            grace_period=args.grace_period,
            reduction_factor=args.reduction_factor,
        )
    if preset.search is None:
        # metric and mode live on the scheduler when there is one (Tune refuses them twice).
        objective = {} if scheduler else {"metric": rs.M_VAL_KNN, "mode": "max"}
        return tune.TuneConfig(
            **objective,
            scheduler=scheduler,
            num_samples=1,
            max_concurrent_trials=concurrency,
            reuse_actors=True,
            trial_dirname_creator=folders,
        )
    search = build_search(
        preset.search, study=name, journal=args.storage_path.resolve() / name / "optuna.journal", metric=rs.M_VAL_KNN, epochs=epochs
    )
    return tune.TuneConfig(
        search_alg=search,
        scheduler=scheduler,
        num_samples=preset.num_samples,
        max_concurrent_trials=min(concurrency, TPE_MAX_CONCURRENT),
        reuse_actors=True,
        trial_dirname_creator=folders,
    )


def grid_points(
    plan: Plan, selections: dict[str, dict[str, float]], seeds: tuple[int, ...] | None = None, cells: set[str] | None = None
) -> list[dict[str, Any]]:
    """Every (cell, seed) of the grid (the study's first seeds, or ``seeds`` of ``cells``), each cell
    with its tuned values when it was tuned."""
    chosen = [c for c in plan.preset.cells() if cells is None or cell_label(c) in cells]
    return [cell | selections.get(cell_label(cell), {}) | {"seed": seed} for cell in chosen for seed in seeds or plan.preset.first_seeds]


def param_space(plan: Plan, selections: dict[str, dict[str, float]]) -> dict[str, Any]:
    if plan.preset.search is not None:
        return {}
    return {"point": tune.grid_search(grid_points(plan, selections))}


# --- the fair tuning protocol ---------------------------------------------------------------
def check_tuning(plan: Plan, tuning: Tuning) -> None:
    """Every cell's extreme suggestions validate, and no per-loss setting overrides a tuned value."""
    for cell in plan.preset.cells():
        loss = cell_loss(plan.preset, cell)
        space = CellSpace.of(tuning, loss)
        clash = sorted(set(plan.preset.per_loss.get(loss, {})) & {"lr", *space.hyperparameters})
        if clash:
            raise ConfigError(
                f"tuning: per_loss[{loss!r}] fixes {', '.join(clash)}, which the tuning protocol tunes; remove one of the two"
            )
        for corner_index in (0, 1):
            hyperparameters = {h: HYPERPARAMETERS[h].search[corner_index] for h in space.hyperparameters}
            corner = cell | {"seed": tuning.seed, "lr": tuning.lr[corner_index]} | hyperparameters
            try:
                from_dict(plan.preset.fixed | corner | plan.preset.per_loss.get(loss, {}))
            except ConfigError as err:
                raise ConfigError(f"tuning cell {cell_label(cell)}: {err}") from None


def tune_cell(
    args: argparse.Namespace, context: StudyContext, plan: Plan, cell: dict[str, Any], concurrency: int, console: StudyConsole
) -> dict[str, float]:
    """One cell's Optuna study of exactly ``tuning.samples`` trials; the best validation config."""
    tuning, label = plan.preset.tuning, cell_label(cell)
    assert tuning is not None
    folder = args.storage_path.resolve() / context.study.removesuffix(TUNING_SUFFIX) / "tuning"
    journal = folder / f"{label}.journal"
    journal.unlink(missing_ok=True)  # an unfinished earlier attempt: start this cell's budget afresh
    space = CellSpace.of(tuning, cell_loss(plan.preset, cell))
    epochs = int(plan.preset.fixed.get("epochs", 1))
    search = build_search(space, study=label, journal=journal, metric=tuning.metric, epochs=epochs, seed=tuning.seed, kind=tuning.sampler)
    cell_context = dataclasses.replace(context, fixed=context.fixed | cell | {"seed": tuning.seed})
    trainable = tune.with_resources(tune.with_parameters(run_trial, context=cell_context), trial_placement(plan, ray.cluster_resources()))
    config = tune.TuneConfig(
        search_alg=search,
        num_samples=tuning.samples,
        max_concurrent_trials=min(concurrency, tuning.samples),
        reuse_actors=True,
        trial_dirname_creator=functools.partial(trial_folder, context=cell_context),
    )
    callbacks = [TrialStatusCallback(context.tracking_uri, context.experiment, context.study, epochs)]
    run_config = tune.RunConfig(
        name=label,
        storage_path=str(folder),
        callbacks=callbacks,
        progress_reporter=console.reporter(f"tuning {label}", cell | {"seed": tuning.seed}),
        verbose=1,
    )
    results = tune.Tuner(trainable, tune_config=config, run_config=run_config).fit()
    scored = [r for r in results if r.error is None and tuning.metric in (r.metrics or {})]
    if not scored:
        raise RuntimeError(f"tuning cell {label}: none of its {tuning.samples} trials reported {tuning.metric}; see {folder / label}")
    best = max(scored, key=lambda r: r.metrics[tuning.metric])
    return {k: best.config[k] for k in ("lr", *space.hyperparameters)}


def tune_cells(
    args: argparse.Namespace, context: StudyContext, plan: Plan, concurrency: int, console: StudyConsole
) -> dict[str, dict[str, float]]:
    """Each cell's selection, tuning the cells not yet selected (a resumed study keeps its own)."""
    path = args.storage_path.resolve() / context.study / "tuning.json"
    selections = json.loads(path.read_text()) if path.is_file() else {}
    tuning_context = dataclasses.replace(context, study=context.study + TUNING_SUFFIX)
    client = MlflowClient(context.tracking_uri)
    for cell in plan.preset.cells():
        label = cell_label(cell)
        if label in selections:
            continue
        selections[label] = tune_cell(args, tuning_context, plan, cell, concurrency, console)
        write_atomically(path, json.dumps(selections, indent=2))
        for key, value in selections[label].items():
            client.log_param(context.study_run_id, f"tuned/{label}/{key}", value)
    return selections


# --- the random-init baseline -------------------------------------------------------------
BASELINE_KEY = ("dataset", "data_dir", "limit_train", "val_fraction", "split_seed", "backbone", "head", "proj_dim", "gpu", "seed")


def baseline_configs(configs: list[PretrainConfig]) -> list[PretrainConfig]:
    """One config per distinct (data, split, architecture, seed) among ``configs``: the encoder a
    trial of that seed starts from is the same whatever its loss or batch size."""
    distinct: dict[tuple, PretrainConfig] = {}
    for cfg in configs:
        distinct.setdefault(tuple(getattr(cfg, k) for k in BASELINE_KEY), cfg)
    return list(distinct.values())


def random_init_run(cfg_fields: dict[str, Any], context: StudyContext) -> str:
    """Evaluate the untrained encoder of ``cfg_fields`` (a Ray task) as the study's trials are
    evaluated, into a baseline run under the study run; returns its run id."""
    from trainables.run.baseline import random_init_baseline
    from trainables.run.evaluation import EvalConfig

    evaluation = EvalConfig(**context.evaluation)
    return random_init_baseline(from_dict(cfg_fields), evaluation, tracking_uri=context.tracking_uri, study_run_id=context.study_run_id)


def recorded_baselines(context: StudyContext) -> set[tuple[str, str, str, str]]:
    """(dataset, backbone, seed, eval mode) of the study's finished baseline runs (a resumed study keeps them)."""
    client = MlflowClient(context.tracking_uri)
    runs = search_runs(client, {rs.STUDY: context.study, rs.KIND: rs.KIND_BASELINE})
    keys = (rs.P_DATASET, rs.P_BACKBONE, rs.P_SEED, rs.P_EVAL_MODE)
    return {tuple(r.data.params.get(k, "") for k in keys) for r in runs if r.info.status == "FINISHED"}  # type: ignore[misc]


def record_baselines(context: StudyContext, configs: list[PretrainConfig], console: StudyConsole) -> None:
    """The tables' "random init" row: each seed's untrained encoder, evaluated like the trials.

    Ray tasks holding what a trial's evaluation holds (a CPU, or a GPU for GPU trials), run
    before the trials so that they do not compete with them; seeds already recorded are kept.
    """
    done, mode = recorded_baselines(context), context.evaluation.get("mode", "linear")
    todo = [c for c in baseline_configs(configs) if (c.dataset, c.backbone, str(c.seed), mode) not in done]
    task = ray.remote(random_init_run)
    refs = [task.options(num_cpus=min(1.0, c.cpus_per_worker), num_gpus=1 if c.gpu else 0).remote(c.to_dict(), context) for c in todo]
    if refs:
        console.print(
            f"\nrandom-init baseline: {len(refs)} evaluation(s) of the untrained encoder (seeds {sorted({c.seed for c in todo})})"
        )
    ray.get(refs)


# --- adaptive seeds ------------------------------------------------------------------------
ROUNDS = "rounds"  # the study folder's subfolder of the rounds' Tune runs, started afresh, never restored
INTERRUPTED_SUFFIX = "/interrupted"  # study tag of a round's run that a stop cut short: out of the tables, still in the tree


def point_key(context: StudyContext, point: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """A point's (field, value) as its trial run's params record them."""
    cfg = from_dict(context.trial_config(point))
    return tuple((key, str(getattr(cfg, key))) for key in sorted(point))


def points_to_run(context: StudyContext, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The round's points that have no trial run that ended (completed, early-stopped or failed: a
    completed round is not rerun). A run an interrupted round left RUNNING or KILLED is set aside,
    with its evaluation runs, under the study tag + ``INTERRUPTED_SUFFIX``, and its point runs afresh:
    every (cell, seed) of the study has one trial run."""
    client = MlflowClient(context.tracking_uri)
    wanted = {point_key(context, p) for p in points}
    fields = sorted(points[0]) if points else []
    ended = set()
    for run in search_runs(client, {rs.STUDY: context.study, rs.KIND: rs.KIND_PRETRAIN}):
        key = tuple((f, run.data.params.get(f, "")) for f in fields)
        if key not in wanted:
            continue
        if run.info.status in ("FINISHED", "FAILED"):
            ended.add(key)
            continue
        for child in [run, *search_runs(client, {rs.STUDY: context.study, rs.PARENT: run.info.run_id})]:
            client.set_tag(child.info.run_id, rs.STUDY, context.study + INTERRUPTED_SUFFIX)
    return [p for p in points if point_key(context, p) not in ended]


@dataclasses.dataclass(frozen=True)
class Started:
    """What each phase of a started study works with: the command's arguments, the study, its plan,
    how many trials run at once, the console and the signal stop."""

    args: argparse.Namespace
    context: StudyContext
    plan: Plan
    concurrency: int
    console: StudyConsole
    stop: Stop


def run_round(study: Started, points: list[dict[str, Any]]) -> None:
    """One look's added seeds: their random-init baselines, then a Tune run of the points not yet run,
    in the same study (its trial runs go under the study run)."""
    args, context, plan, console, stop = study.args, study.context, study.plan, study.console, study.stop
    record_baselines(context, [from_dict(context.trial_config(p)) for p in points], console)
    todo = points_to_run(context, points)
    if not todo or stop.signum is not None:
        return
    folder = args.storage_path.resolve() / context.study / ROUNDS
    seeds = max(p["seed"] for p in points)
    name = next(n for n in (f"seeds-to-{seeds}", *(f"seeds-to-{seeds}-{i}" for i in range(2, 1000))) if not (folder / n).exists())
    trainable = tune.with_resources(tune.with_parameters(run_grid_point, context=context), trial_placement(plan, ray.cluster_resources()))
    epochs = int(plan.preset.fixed.get("epochs", 1))
    run_config = tune.RunConfig(
        name=name,
        storage_path=str(folder),
        callbacks=[TrialStatusCallback(context.tracking_uri, args.experiment, context.study, epochs)],
        failure_config=tune.FailureConfig(max_failures=args.max_failures),
        progress_reporter=console.reporter(f"added seeds ({name})"),
        verbose=1,
    )
    tuner = tune.Tuner(
        trainable, param_space={"point": tune.grid_search(todo)}, tune_config=tune_config(args, context, plan, study.concurrency), run_config=run_config
    )
    results = tuner.fit()
    if stop.signum is None:
        reconcile(results, context.tracking_uri, args.experiment, context.study, epochs)


def run_rounds(study: Started, selections: dict[str, dict[str, float]]) -> None:
    """Adaptive seeds: at each look the family's sequential verdicts (replayed from the study's runs,
    so a resumed study takes the same decisions), recorded on the study run; the cells of the
    comparisons still open get the seeds up to the next look, until none is open or the budget is spent."""
    context, preset = study.context, study.plan.preset
    assert preset.adaptive is not None
    looks, total = preset.adaptive.looks(), len(adaptive.family(preset))
    cells: tuple[str, ...] = ()
    for index, seeds in enumerate(looks, 1):
        if index > 1:
            run_round(study, grid_points(study.plan, selections, preset.seeds[:seeds], set(cells)))
            if study.stop.signum is not None:
                return
        runs = adaptive.load_runs(context.study, context.tracking_uri, context.evaluation.get("mode", "linear"))
        look = adaptive.look_at(preset, seeds, *runs)
        following = looks[index] if index < len(looks) else None
        cells = look.cells if following else ()
        record_look(context.tracking_uri, context.study_run_id, index, seeds, list(look.resolved), list(look.open), list(cells))
        study.console.print(adaptive.look_line(look, total, following))
        if not cells or study.stop.signum is not None:
            return


# --- the study ------------------------------------------------------------------------------
def study_context(args: argparse.Namespace, name: str, preset_name: str, plan: Plan, tracking_uri: str) -> StudyContext:
    """The study run (found again on --resume) and what every trial is handed.

    A relative ``data_dir`` means the folder the command ran in: Tune runs each trial in its own
    folder, so the trials are handed the absolute path."""
    storage = args.storage_path.resolve()
    study_run_id = find_study_run(tracking_uri, args.experiment, name) or create_study_run(
        tracking_uri, args.experiment, name, preset_name, plan.preset.description, plan.overrides, eval_from_dict(plan.preset.evaluation).mode
    )
    record = plan_record(plan)
    client = MlflowClient(tracking_uri)
    if PLAN_DIGEST_TAG not in client.get_run(study_run_id).data.tags:  # set once: a resume is checked against it
        client.set_tag(study_run_id, PLAN_DIGEST_TAG, plan_digest(record))
    write_plan_file(storage / name, preset_name, plan.overrides, study_run_id, record)
    fixed = plan.preset.fixed | {"data_dir": str(Path(plan.preset.fixed.get("data_dir", PretrainConfig.data_dir)).expanduser().resolve())}
    return StudyContext(
        name,
        study_run_id,
        tracking_uri,
        args.experiment,
        str(storage / name / "train"),
        fixed,
        plan.preset.per_loss,
        plan.preset.evaluation,
        args.max_failures,
    )


def study_tuner(
    args: argparse.Namespace,
    context: StudyContext,
    plan: Plan,
    concurrency: int,
    selections: dict[str, dict[str, float]],
    console: StudyConsole,
) -> tune.Tuner:
    storage = args.storage_path.resolve()
    entry = run_trial if plan.is_search else run_grid_point
    trainable = tune.with_resources(tune.with_parameters(entry, context=context), trial_placement(plan, ray.cluster_resources()))
    folder = storage / context.study
    # Tune saves its experiment state on its first step, with the first trials: a sealed state
    # without one is from before any trial, so the study starts afresh.
    if args.resume and tune.Tuner.can_restore(str(folder)) and any(folder.glob("experiment_state-*.json")):
        return tune.Tuner.restore(
            str(folder), trainable, resume_unfinished=True, resume_errored=False, restart_errored=False
        )
    epochs = int(plan.preset.fixed.get("epochs", 1))
    callbacks = [
        TrialStatusCallback(context.tracking_uri, args.experiment, context.study, epochs),
        state_seal.SealCallback(context.tracking_uri, context.study_run_id, folder),
    ]
    run_config = tune.RunConfig(
        name=context.study,
        storage_path=str(storage),
        callbacks=callbacks,
        failure_config=tune.FailureConfig(max_failures=args.max_failures),
        progress_reporter=console.reporter("trials"),
        verbose=1,
    )
    return tune.Tuner(
        trainable,
        param_space=param_space(plan, selections),
        tune_config=tune_config(args, context, plan, concurrency),
        run_config=run_config,
    )


def stopped(args: argparse.Namespace, context: StudyContext, stop: Stop) -> int:
    """After SIGINT or SIGTERM: every run of the study still RUNNING ends KILLED with the signal as reason."""
    runs = [run.info.run_id for run in search_runs(MlflowClient(context.tracking_uri), {rs.STUDY: context.study})]
    ended = end_running_as_killed(context.tracking_uri, [*runs, context.study_run_id], stop.reason)
    print(
        f"\nstudy {context.study} {stop.reason}: {ended} MLflow runs ended KILLED; continue it with\n"
        f"  python study/run_sweep.py --resume {context.study} --storage-path {args.storage_path}"
    )
    return stop.exit_code


def check_before_ray(args: argparse.Namespace, name: str, plan: Plan, tracking_uri: str) -> None:
    """What is refused before Ray starts: a tuning protocol whose cells do not validate, and (on
    --resume) Tune state files that are not those the study sealed, before Tune unpickles anything."""
    if plan.preset.tuning is not None:
        check_tuning(plan, plan.preset.tuning)
    if args.resume and not args.trust_state:
        note = state_seal.check(tracking_uri, find_study_run(tracking_uri, args.experiment, name), args.storage_path.resolve() / name)
        if note:
            print(note)


def start(
    args: argparse.Namespace, name: str, preset_name: str, plan: Plan, tracking_uri: str, console: StudyConsole
) -> tuple[StudyContext, int]:
    """Ray started, the study run found or created (running again on --resume), the plan printed:
    (what every trial is handed, how many trials run at once)."""
    ray.init(address=args.address, logging_level="WARNING", runtime_env=RAY_ENV, log_to_driver=False)
    concurrency = args.max_concurrent or max_concurrent(plan.configs, ray.cluster_resources())
    context = study_context(args, name, preset_name, plan, tracking_uri)
    if args.resume:
        mark_running(tracking_uri, context.study_run_id)
    console.start(ray.cluster_resources(), concurrency)
    return context, concurrency


@contextlib.contextmanager
def interruptible(context: StudyContext, folder: Path) -> Iterator[Stop]:
    """The study's phases under SIGINT and SIGTERM: both reach Tune as its interrupt (SIGUSR1), so it
    saves its state and stops its trials; an error that no signal caused ends the study run FAILED.
    Tune's state is sealed even when the study stopped before Tune began, so that --resume accepts it."""
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    with stop_on_signals(forward=signal.SIGUSR1) as stop:
        try:
            yield stop
        except BaseException as err:
            if stop.signum is None:
                end_run(context.tracking_uri, context.study_run_id, failed_reason=f"{type(err).__name__}: {err}")
                raise
    if state_seal.recorded_digest(context.tracking_uri, context.study_run_id) is None:
        state_seal.seal(context.tracking_uri, context.study_run_id, folder, state_seal.read_state(folder))


def run_trials(study: Started, selections: dict[str, dict[str, float]]) -> None:
    """The study's own trials, restored from Tune's state on --resume. Runs a killed driver left
    RUNNING end with their status; after a signal they are the stop's to end (KILLED)."""
    args, context, plan = study.args, study.context, study.plan
    results = study_tuner(args, context, plan, study.concurrency, selections, study.console).fit()
    if study.stop.signum is None:
        reconcile(results, context.tracking_uri, args.experiment, context.study, int(plan.preset.fixed.get("epochs", 1)))


def finish(context: StudyContext, folder: Path) -> int:
    """The study's tables and links printed, its report written, its MLflow run ended."""
    mode = eval_from_dict(context.evaluation).mode  # the report reads the evaluations the study ran
    print_summary(context.study, context.study_run_id, context.tracking_uri, folder, eval_mode=mode)
    end_run(context.tracking_uri, context.study_run_id)
    return 0


def run_study(args: argparse.Namespace, name: str, preset_name: str, plan: Plan, tracking_uri: str) -> int:
    """The study's phases in order: baselines, tuning (with ``Preset.tuning``), trials, the added
    seeds' rounds (with ``Preset.adaptive``), report."""
    check_before_ray(args, name, plan, tracking_uri)
    # val_knn_acc is reported on evaluation epochs only; ASHA and the searcher skip the others.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    folder = args.storage_path.resolve() / name
    console = StudyConsole(name, plan, folder)
    with quiet_ray(folder / "ray.log"):
        context, concurrency = start(args, name, preset_name, plan, tracking_uri, console)
        with interruptible(context, folder) as stop:
            record_baselines(context, plan.configs, console)
            selections = tune_cells(args, context, plan, concurrency, console) if plan.preset.tuning else {}
            started = Started(args, context, plan, concurrency, console, stop)
            run_trials(started, selections)
            if plan.preset.adaptive is not None and stop.signum is None:
                run_rounds(started, selections)
        if stop.signum is not None:
            return stopped(args, context, stop)
    return finish(context, folder)
