"""Running a planned study on Ray Tune: trainable, search or grid, scheduler, restore."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from study.optuna_search import build_search
from study.plan import Plan, max_concurrent, trial_resources
from study.report import print_summary
from study.study_run import TrialStatusCallback, create_study_run, find_study_run, reconcile
from trainables import run_schema as rs
from trainables.tracking import end_run
from trainables.study_context import StudyContext
from trainables.trial import run_trial

TPE_MAX_CONCURRENT = 4  # more trials in flight than this and TPE degrades towards random search
# Ray Train's controller polls its workers at this interval (default 2 s): every report and the
# end of every run wait for a tick, so a short interval saves seconds per trial.
RAY_ENV = {"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}}


def trial_placement(plan: Plan, cluster: dict[str, float]) -> tune.PlacementGroupFactory:
    """The Tune trial's own bundle; on a cluster with a TRAIN_DRIVER resource, drivers go there."""
    driver = {k: max(trial_resources(c)[0].get(k, 0.0) for c in plan.configs) for k in ("CPU",)}
    if "TRAIN_DRIVER" in cluster and any(trial_resources(c)[1] for c in plan.configs):
        driver = {"CPU": 0.0, "TRAIN_DRIVER": 0.01}
    return tune.PlacementGroupFactory([driver])


def tune_config(args: argparse.Namespace, name: str, plan: Plan, concurrency: int) -> tune.TuneConfig:
    """Search or grid, ASHA or none. Trial actors are reused: a fresh one per trial spends
    ~10 CPU-seconds importing torch, MLflow and Tune before the trial's first step."""
    preset, epochs = plan.preset, int(plan.preset.fixed.get("epochs", 1))
    scheduler = None
    if preset.scheduler == "asha":
        scheduler = ASHAScheduler(
            time_attr="epoch", metric=rs.M_VAL_KNN, mode="max", max_t=epochs, grace_period=args.grace_period, reduction_factor=args.reduction_factor
        )
    if preset.search is None:
        # metric and mode live on the scheduler when there is one (Tune refuses them twice).
        objective = {} if scheduler else {"metric": rs.M_VAL_KNN, "mode": "max"}
        return tune.TuneConfig(**objective, scheduler=scheduler, num_samples=1, max_concurrent_trials=concurrency, reuse_actors=True)
    search = build_search(preset.search, study=name, journal=args.storage_path.resolve() / name / "optuna.journal", metric=rs.M_VAL_KNN, epochs=epochs)
    return tune.TuneConfig(
        search_alg=search, scheduler=scheduler, num_samples=preset.num_samples, max_concurrent_trials=min(concurrency, TPE_MAX_CONCURRENT), reuse_actors=True
    )


def param_space(plan: Plan) -> dict[str, Any]:
    if plan.preset.search is not None:
        return {}
    grid = {axis: tune.grid_search(list(values)) for axis, values in plan.preset.grid.items()}
    return grid | {"seed": tune.grid_search(list(plan.preset.seeds))}


def run_study(args: argparse.Namespace, name: str, preset_name: str, plan: Plan, tracking_uri: str) -> int:
    # val_knn_acc is reported on evaluation epochs only; ASHA and the searcher skip the others.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    storage = args.storage_path.resolve()
    ray.init(address=args.address, logging_level="WARNING", runtime_env=RAY_ENV)
    cluster = ray.cluster_resources()
    concurrency = args.max_concurrent or max_concurrent(plan.configs, cluster)
    study_run_id = find_study_run(tracking_uri, args.experiment, name) or create_study_run(
        tracking_uri, args.experiment, name, preset_name, plan.preset.description, plan.overrides
    )
    (storage / name).mkdir(parents=True, exist_ok=True)
    (storage / name / "study.json").write_text(json.dumps({"preset": preset_name, "overrides": plan.overrides, "mlflow_run_id": study_run_id}, indent=2))
    context = StudyContext(name, study_run_id, tracking_uri, args.experiment, str(storage / name / "train"), plan.preset.fixed, plan.preset.per_loss, plan.preset.evaluation, args.max_failures)
    trainable = tune.with_resources(tune.with_parameters(run_trial, context=context), trial_placement(plan, cluster))
    epochs = int(plan.preset.fixed.get("epochs", 1))
    callbacks = [TrialStatusCallback(tracking_uri, args.experiment, name, epochs)]
    if args.resume:
        tuner = tune.Tuner.restore(str(storage / name), trainable, resume_unfinished=True, resume_errored=False, restart_errored=False)
    else:
        run_config = tune.RunConfig(name=name, storage_path=str(storage), callbacks=callbacks, failure_config=tune.FailureConfig(max_failures=args.max_failures), verbose=1)
        tuner = tune.Tuner(trainable, param_space=param_space(plan), tune_config=tune_config(args, name, plan, concurrency), run_config=run_config)
    try:
        results = tuner.fit()
    except BaseException as err:
        end_run(tracking_uri, study_run_id, failed_reason=f"{type(err).__name__}: {err}")
        raise
    reconcile(results, tracking_uri, args.experiment, name, epochs)
    print_summary(name, study_run_id, tracking_uri, storage / name)
    end_run(tracking_uri, study_run_id)
    return 0
