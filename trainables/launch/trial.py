"""One trial of a study: a pretraining and its evaluation, as a Ray Tune function trainable.

A trial with one CPU worker runs the loop right here in the Tune trial (a Ray Train worker
group costs ~10 s of start-up per trial on a small machine); several workers or GPUs run it
under Ray Train's TorchTrainer, whose reports reach Tune through TuneReportCallback. Either
way every worker runs :func:`train_and_evaluate`.
"""

from __future__ import annotations

from typing import Any

import ray.tune
from mlflow.tracking import MlflowClient

from trainables import run_schema as rs
from trainables.config import PretrainConfig, from_dict
from trainables.epoch_end import EpochEnd
from trainables.evaluation import EvalConfig, Pretrained, evaluate_and_record
from trainables.mlflow_search import experiment_id, find_run
from trainables.pretrain import pretrain
from trainables.session import Session, TuneSession
from trainables.study_context import StudyContext, uses_train_workers
from trainables.tracking import create_run, pretrain_params, trial_run_name


def train_and_evaluate(
    cfg: PretrainConfig, session: Session, *, run_id: str | None, tracking_uri: str | None, evaluation: EvalConfig | None
) -> None:
    """Pretrain, then evaluate the encoder in memory (a child MLflow run of ``run_id``).

    The last epoch's report waits for the evaluation, so that the report Tune sees last carries
    its results as ``eval_*`` metrics; rank 0 also copies them onto the trial's MLflow run.
    """
    end = EpochEnd(cfg, session, run_id=run_id, tracking_uri=tracking_uri, hold_last=evaluation is not None)
    trained = pretrain(cfg, session, end)
    if evaluation is None or not end.holding:  # no evaluation asked, or the last epoch was trained before
        return
    pretrained = Pretrained(trained.components, cfg, trained.epoch, run_id or "")
    try:
        checkpoint = f"epoch {trained.epoch}"
        log = session.rank == 0
        result = evaluate_and_record(pretrained, evaluation, trained.device, tracking_uri=tracking_uri, checkpoint=checkpoint, log=log)
    except BaseException:
        end.discard()
        raise
    end.release({f"{rs.EVAL_PREFIX}{k}": v for k, v in result.items() if isinstance(v, float)})


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
    from ray.tune.integration.ray_train import TuneReportCallback

    from trainables.ray_train import build_trainer

    trainer = build_trainer(
        cfg, name=train_run_name(cfg, trial_id), storage_path=context.storage_path, run_id=run_id, tracking_uri=context.tracking_uri,
        max_failures=context.max_failures, evaluation=context.evaluation, callbacks=[TuneReportCallback()],
    )
    trainer.fit()
