"""One trial of a study: a pretraining and its evaluation, as a Ray Tune function trainable.

A trial with one CPU worker runs the loop right here in the Tune trial (a Ray Train worker
group costs ~10 s of start-up per trial on a small machine); several workers or GPUs run it
under Ray Train's TorchTrainer, whose reports reach Tune through TuneReportCallback.
"""

from __future__ import annotations

from typing import Any

import ray.tune
from mlflow.tracking import MlflowClient

from trainables import run_schema as rs
from trainables.config import PretrainConfig, from_dict
from trainables.linear_eval import EvalConfig
from trainables.mlflow_search import experiment_id, find_run
from trainables.pretrain import pretrain
from trainables.session import TuneSession
from trainables.study_context import StudyContext
from trainables.tracking import create_run, pretrain_params


def trial_name(cfg: PretrainConfig) -> str:
    return f"{cfg.loss}-b{cfg.batch_size}-m{cfg.views}-lr{cfg.lr:.3g}-s{cfg.seed}"


def trial_run(context: StudyContext, trial_id: str, cfg: PretrainConfig) -> str:
    """The trial's MLflow run: the one a previous attempt of this trial made, else a new one.

    Looking the run up by trial id is what keeps a restarted or resumed trial to one run.
    """
    client = MlflowClient(context.tracking_uri)
    experiment = experiment_id(client, context.experiment)
    found = find_run(client, {rs.STUDY: context.study, rs.TRIAL_ID: trial_id}, experiments=[experiment]) if experiment else None
    if found:
        return found.info.run_id
    tags = {rs.KIND: rs.KIND_PRETRAIN, rs.STUDY: context.study, rs.TRIAL_ID: trial_id, rs.TRAIN_RUN: f"train-{trial_id}"}
    return create_run(context.tracking_uri, context.experiment, run_name=trial_name(cfg), params=pretrain_params(cfg), tags=tags, parent_run_id=context.study_run_id)


def run_trial(params: dict[str, Any], context: StudyContext) -> None:
    """Tune's entry: ``params`` are this trial's grid point or Optuna suggestion."""
    trial_id = ray.tune.get_context().get_trial_id()
    cfg = from_dict(context.trial_config(params))
    run_id = trial_run(context, trial_id, cfg)
    if cfg.workers == 1 and not cfg.gpu:
        pretrain(cfg, TuneSession(), run_id=run_id, tracking_uri=context.tracking_uri, evaluation=EvalConfig(**context.evaluation))
        return
    from ray.tune.integration.ray_train import TuneReportCallback

    from trainables.ray_train import build_trainer

    trainer = build_trainer(
        cfg, name=f"train-{trial_id}", storage_path=context.storage_path, run_id=run_id, tracking_uri=context.tracking_uri,
        max_failures=context.max_failures, evaluation=context.evaluation, callbacks=[TuneReportCallback()],
    )
    trainer.fit()
