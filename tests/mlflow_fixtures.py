"""Synthetic NCE studies written into a real MLflow store, shaped as ``trainables.spec.run_schema`` says.

``make_synthetic_study`` writes any tree described as plain dicts; ``synthetic_trial`` builds
one realistic trial dict (per-epoch curves, final metrics, evaluation runs) from a handful of
numbers, so that a test can state the accuracies it expects and check them after loading.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from trainables.integration.mlflow_search import experiment_id
from trainables.spec import run_schema as rs

# 2024-01-01T00:00:00Z: a fixed clock keeps "latest evaluation" deterministic.
_START_MS = 1_704_067_200_000
_TICK_MS = 1_000
_EVAL_EPOCHS = 5


def make_synthetic_study(
    tracking_uri: str,
    name: str,
    runs: list[dict[str, Any]],
    *,
    preset: str = "synthetic",
    code_version: str = "0123456789ab",
    experiment_name: str | None = None,
    artifact_location: str | None = None,
    baselines: list[dict[str, Any]] | None = None,
    eval_mode: str | None = None,
) -> str:
    """Write one study tree (study run, trial runs, their evaluation runs) into MLflow.

    Args:
        tracking_uri: Where to write, e.g. ``sqlite:///<tmp>/mlflow.db``.
        name: The study's ``nce.study`` name.
        runs: One dict per trial, with keys
            ``params`` (pretraining params; values are logged as strings),
            ``status`` (an ``rs.STATUS_*``; default completed), ``failure_reason`` (optional),
            ``trial_id`` (optional), ``metrics`` (final metrics), ``history`` (metric to a list
            of per-epoch values, epoch 1 first, or to a dict of step to value), and ``evals``
            (a list of dicts with ``params``, ``metrics`` and optional ``history``, written in
            order, so the last is the latest).
        preset: The study run's ``nce.preset`` tag.
        code_version: The ``nce.code_version`` tag of the study and trial runs.
        experiment_name: MLflow experiment to write into (created if absent); default ``name``.
        artifact_location: Artifact root of a new experiment; by default, for a sqlite store, an
            ``mlartifacts`` folder beside the database, so tests do not write into the cwd.
        baselines: Random-init baseline runs (dicts from ``synthetic_baseline``), written as
            children of the study run.
        eval_mode: The mode the study run records as its own (``rs.P_EVAL_MODE``); by default
            none, as in a study run written before the record.

    Returns:
        The study run's id.
    """
    client = MlflowClient(tracking_uri)
    experiment_id = _experiment(client, experiment_name or name, artifact_location or _beside_db(tracking_uri))
    clock = itertools.count(_START_MS, _TICK_MS)
    study_tags = {rs.STUDY: name, rs.KIND: rs.KIND_STUDY, rs.PRESET: preset, rs.CODE_VERSION: code_version}
    study_id = client.create_run(experiment_id, start_time=next(clock), tags=study_tags, run_name=name).info.run_id
    if eval_mode is not None:
        client.log_param(study_id, rs.P_EVAL_MODE, eval_mode)
    for index, spec in enumerate(runs):
        tags = {rs.STUDY: name, rs.PARENT: study_id, rs.CODE_VERSION: code_version}
        _write_trial(client, experiment_id, tags, spec, spec.get("trial_id", f"trial_{index:05d}"), clock)
    for spec in baselines or []:
        baseline_tags = {rs.STUDY: name, rs.PARENT: study_id, rs.KIND: rs.KIND_BASELINE, rs.BASELINE: rs.BASELINE_RANDOM_INIT}
        client.set_terminated(_write_run(client, experiment_id, baseline_tags, spec, clock), end_time=next(clock))
    client.set_terminated(study_id, end_time=next(clock))
    return study_id


def synthetic_trial(
    loss: str,
    batch_size: int,
    seed: int,
    *,
    test_acc: float,
    val_acc: float | None = None,
    views: int = 1,
    lr: float = 0.3,
    epochs: int = 10,
    status: str = rs.STATUS_COMPLETED,
    failure_reason: str | None = None,
    epochs_done: int | None = None,
    eval_modes: tuple[str, ...] = ("linear",),
    knn_offset: float = -0.05,
    dataset: str = "cifar10",
    backbone: str = "resnet18",
    device_type: str = "cpu",
    extra_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A realistic trial dict for ``make_synthetic_study``.

    The evaluations are built so that their ``test_acc_at_best_val`` is exactly ``test_acc``
    (kNN: ``test_acc + knn_offset``) and their ``best_val_acc`` is ``val_acc`` (default
    ``test_acc + 0.01``); ``max_test_acc_over_epochs`` is 0.4 points above, as a test-set-selected
    number would be. Failed trials get no evaluations and no final metrics.

    Args:
        loss: Loss registry name.
        batch_size: Global batch size.
        seed: Trial seed.
        test_acc: The linear evaluation's test accuracy at the validation-selected epoch.
        val_acc: The linear evaluation's best validation accuracy.
        views: Positive views M; the encoder passes V are M + 2 for AttentionNCE, M + 1 otherwise.
        lr: Base learning rate.
        epochs: Configured pretraining epochs.
        status: The trial's ``nce.status``.
        failure_reason: The ``nce.failure_reason`` of a failed trial.
        epochs_done: Epochs actually run (default: all, or half for a failed trial).
        eval_modes: Evaluations to attach, in order (repeat a mode for several evaluations).
        knn_offset: kNN accuracy minus linear accuracy.
        dataset: Dataset name.
        backbone: Backbone name.
        device_type: ``cpu`` or ``cuda``.
        extra_params: More pretraining params (say, a loss's ``tau_plus``), logged as given.

    Returns:
        The trial dict.
    """
    failed = status == rs.STATUS_FAILED
    done = epochs_done if epochs_done is not None else (epochs // 2 if failed else epochs)
    val = test_acc + 0.01 if val_acc is None else val_acc
    views_per_image = views + 2 if loss == "attentionnce" else views + 1
    params = {
        rs.P_LOSS: loss,
        rs.P_VIEWS: views,
        rs.P_VIEWS_PER_IMAGE: views_per_image,
        rs.P_BATCH_SIZE: batch_size,
        rs.P_LR: lr,
        rs.P_LR_EFFECTIVE: lr * batch_size / 256,
        rs.P_LR_SCALING: "linear",
        rs.P_OPTIMIZER: "sgd",
        rs.P_TEMPERATURE: 0.5,
        rs.P_SEED: seed,
        rs.P_EPOCHS: epochs,
        rs.P_DATASET: dataset,
        rs.P_BACKBONE: backbone,
        rs.P_WORLD_SIZE: 1,
        rs.P_DEVICE_TYPE: device_type,
        "num_workers": 2,  # a param outside run_schema, as real configs have
        **(extra_params or {}),
    }
    hours = 0.01 * done * views_per_image * (1 + math.log2(batch_size) / 10)
    spec: dict[str, Any] = {
        "params": params,
        "status": status,
        "history": _pretrain_history(done, epochs, batch_size, lr, val),
        "metrics": {}
        if failed
        else {
            rs.M_FINAL_VAL_KNN: val - 0.04,
            rs.M_BEST_VAL_KNN: val - 0.03,
            rs.M_WALL_CLOCK: hours * 3600,
            rs.M_DEVICE_HOURS: hours,
            rs.M_EPOCHS_DONE: done,
        },
        "evals": [] if failed else [_eval_spec(mode, test_acc, val, knn_offset) for mode in eval_modes],
    }
    if failure_reason:
        spec["failure_reason"] = failure_reason
    return spec


def synthetic_baseline(
    seed: int, *, test_acc: float, eval_mode: str = "linear", dataset: str = "cifar10", backbone: str = "resnet18"
) -> dict[str, Any]:
    """A random-init baseline run for ``make_synthetic_study``: an evaluation of an untrained encoder."""
    evaluation = _eval_spec(eval_mode, test_acc, test_acc + 0.01, 0.0)
    params = {**evaluation["params"], rs.P_SEED: seed, rs.P_DATASET: dataset, rs.P_BACKBONE: backbone}
    return {**evaluation, "params": params}


def _experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    return experiment_id(client, name) or client.create_experiment(name, artifact_location=artifact_location)


def _beside_db(tracking_uri: str) -> str | None:
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    return (Path(tracking_uri[len(prefix):]).parent / "mlartifacts").as_uri()


def _write_trial(
    client: MlflowClient,
    experiment_id: str,
    tags: dict[str, str],
    spec: dict[str, Any],
    trial_id: str,
    clock: Iterator[int],
) -> None:
    status = spec.get("status", rs.STATUS_COMPLETED)
    trial_tags = {**tags, rs.KIND: rs.KIND_PRETRAIN, rs.TRIAL_ID: trial_id, rs.STATUS: status}
    if spec.get("failure_reason"):
        trial_tags[rs.FAILURE_REASON] = spec["failure_reason"]
    run_id = _write_run(client, experiment_id, trial_tags, spec, clock)
    client.set_terminated(run_id, "FAILED" if status == rs.STATUS_FAILED else "FINISHED", end_time=next(clock))
    for evaluation in spec.get("evals", []):
        eval_tags = {rs.STUDY: tags[rs.STUDY], rs.KIND: rs.KIND_EVAL, rs.PARENT: run_id}
        params = {rs.P_PRETRAIN_RUN_ID: run_id, **evaluation.get("params", {})}
        eval_id = _write_run(client, experiment_id, eval_tags, {**evaluation, "params": params}, clock)
        client.set_terminated(eval_id, end_time=next(clock))


def _write_run(
    client: MlflowClient, experiment_id: str, tags: dict[str, str], spec: dict[str, Any], clock: Iterator[int]
) -> str:
    start = next(clock)
    run_id = client.create_run(experiment_id, start_time=start, tags=tags).info.run_id
    metrics = [Metric(key, float(value), start, 0) for key, value in spec.get("metrics", {}).items()]
    metrics += [
        Metric(key, float(value), start + step, step)
        for key, values in spec.get("history", {}).items()
        for step, value in _steps(values)
    ]
    params = [Param(key, str(value)) for key, value in spec.get("params", {}).items()]
    client.log_batch(run_id, metrics=metrics, params=params)
    return run_id


def _steps(values: list[float] | dict[int, float]) -> list[tuple[int, float]]:
    if isinstance(values, dict):
        return sorted(values.items())
    return list(enumerate(values, start=1))


def _pretrain_history(done: int, epochs: int, batch_size: int, lr: float, val: float) -> dict[str, Any]:
    """Curves shaped like real ones: pi+ climbs higher at small batch (fewer negatives)."""
    progress = [epoch / epochs for epoch in range(1, done + 1)]
    ceiling = (1 - math.log2(batch_size) / 24) * (0.9 + 0.1 * val)
    pos_prob = [ceiling * (1 - math.exp(-4 * p)) for p in progress]
    return {
        rs.M_TRAIN_LOSS: [math.log(2 * batch_size) * (1 - 0.6 * p) for p in progress],
        rs.M_POS_PROB: pos_prob,
        rs.M_GRAD_SCALE: [1 - value for value in pos_prob],
        rs.M_LR: [lr * 0.5 * (1 + math.cos(math.pi * p)) for p in progress],
        rs.M_IMAGES_PER_S: [900.0 + batch_size] * done,
        rs.M_EPOCH_TIME: [50_000 / (900.0 + batch_size)] * done,
        rs.M_VAL_KNN: {
            epoch: (val - 0.03) * (1 - 0.7 * math.exp(-3 * epoch / epochs))
            for epoch in range(2, done + 1, 2)
        },
    }


def _eval_spec(mode: str, test_acc: float, val: float, knn_offset: float) -> dict[str, Any]:
    recipe = {"linear": "attentionnce", "finetune": "flatclr"}.get(mode)
    params = {rs.P_EVAL_MODE: mode, **({rs.P_RECIPE: recipe} if recipe else {})}
    if mode == "knn":
        return {
            "params": params,
            "metrics": {rs.M_TEST_AT_BEST_VAL: test_acc + knn_offset, rs.M_BEST_VAL_ACC: val + knn_offset},
        }
    best_epoch = _EVAL_EPOCHS - 1
    val_curve = [val - 0.02 * (best_epoch - epoch) for epoch in range(1, _EVAL_EPOCHS + 1)]
    val_curve[-1] = val - 0.002
    test_curve = [test_acc - 0.02 * (best_epoch - epoch) for epoch in range(1, _EVAL_EPOCHS + 1)]
    test_curve[-1] = test_acc + 0.004
    return {
        "params": params,
        "metrics": {
            rs.M_TEST_AT_BEST_VAL: test_acc,
            rs.M_BEST_VAL_ACC: val,
            rs.M_BEST_EPOCH: best_epoch,
            rs.M_MAX_TEST_OVER_EPOCHS: max(test_curve),
        },
        "history": {
            rs.M_EVAL_VAL_ACC: val_curve,
            rs.M_EVAL_TEST_ACC: test_curve,
            rs.M_EVAL_TRAIN_LOSS: [1.5 - 0.1 * epoch for epoch in range(1, _EVAL_EPOCHS + 1)],
        },
    }
