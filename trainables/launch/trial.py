"""One trial of a study: a pretraining and its evaluation, as a Ray Tune function trainable.

A trial with one CPU worker runs the loop right here in the Tune trial (a Ray Train worker
group costs ~10 s of start-up per trial on a small machine); several workers or GPUs run it
under Ray Train's TorchTrainer, whose reports reach Tune through TuneReportCallback. Either
way every worker runs :func:`trainables.run.train_and_evaluate.train_and_evaluate`.
"""

from __future__ import annotations

from typing import Any

import ray.tune
from mlflow.tracking import MlflowClient
from ray.tune.integration.ray_train import TuneReportCallback

from trainables.integration.mlflow_search import experiment_id, find_run
from trainables.integration.session import TuneSession
from trainables.integration.tracking import create_run, pretrain_params, trial_run_name
from trainables.launch.ray_train import build_trainer
from trainables.run.evaluation import EvalConfig
from trainables.run.train_and_evaluate import train_and_evaluate
from trainables.spec import run_schema as rs
from trainables.spec.pretrain_config import PretrainConfig, from_dict
from trainables.spec.study_context import StudyContext, uses_train_workers


def trial_run(context: StudyContext, trial_id: str, cfg: PretrainConfig) -> str:
    """The trial's MLflow run: the one a previous attempt of this trial made, else a new one.

    Looking the run up by trial id is what keeps a restarted or resumed trial to one run.
    """
    client = MlflowClient(context.tracking_uri)
    experiment = experiment_id(client, context.experiment)
    found = find_run(client, {rs.STUDY: context.study, rs.TRIAL_ID: trial_id}, experiments=[experiment]) if experiment else None
    if found:
        if found.info.status != "RUNNING":  # a trial resumed after its driver was stopped: running again
            client.update_run(found.info.run_id, status="RUNNING")
        return found.info.run_id
    tags = {rs.KIND: rs.KIND_PRETRAIN, rs.STUDY: context.study, rs.TRIAL_ID: trial_id, rs.TRAIN_RUN: train_run_name(cfg, trial_id)}
    if uses_train_workers(cfg):  # a one-worker trial's checkpoints are Tune's, in its trial folder (set when it ends)
        tags[rs.CHECKPOINTS] = f"{context.storage_path.rstrip('/')}/{train_run_name(cfg, trial_id)}"
    name, params = trial_run_name(cfg), pretrain_params(cfg)
    return create_run(context.tracking_uri, context.experiment, run_name=name, params=params, tags=tags, parent_run_id=context.study_run_id)


def train_run_name(cfg: PretrainConfig, trial_id: str) -> str:
    """The Ray Train run (its storage folder) of a trial: named like its MLflow run, with the trial
    id that keeps it unique and stable across restarts (Ray Train resumes by this name)."""
    return f"{trial_run_name(cfg)}_{trial_id}"


def run_trial(params: dict[str, Any], context: StudyContext) -> None:
    """Tune's entry: ``params`` are this trial's grid point or Optuna suggestion."""
    trial_id = ray.tune.get_context().get_trial_id()
    cfg = from_dict(context.trial_config(params))
    run_id = trial_run(context, trial_id, cfg)
    if not uses_train_workers(cfg):
        evaluation = EvalConfig(**context.evaluation)
        train_and_evaluate(cfg, TuneSession(), run_id=run_id, tracking_uri=context.tracking_uri, evaluation=evaluation)
        return
    trainer = build_trainer(
        cfg, name=train_run_name(cfg, trial_id), storage_path=context.storage_path, run_id=run_id, tracking_uri=context.tracking_uri,
        max_failures=context.max_failures, evaluation=context.evaluation, callbacks=[TuneReportCallback()],
    )
    trainer.fit()
