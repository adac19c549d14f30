"""The random-init baseline: an untrained encoder of a study's architecture, evaluated like its trials.

For a study seed s, :func:`random_init_baseline` builds the components of the trial config with
seed s (so the encoder is exactly the one a trial of seed s starts from: same architecture,
same split, same initial weights), evaluates it with the study's evaluation (same mode, recipe,
probe seed), and records it as a run under the study run, tagged as run_schema describes, with
the trials' validation kNN accuracy of that encoder (``final_val_knn_acc``).
Learning is then visible as the distance between a trial's row and this one.
"""

from __future__ import annotations

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from trainables.core.components import build_components, training_device, validation_knn
from trainables.integration.mlflow_search import search_runs
from trainables.integration.tracking import create_run
from trainables.run.evaluation import EvalConfig, Pretrained, eval_params, record
from trainables.spec import run_schema as rs
from trainables.spec.pretrain_config import PretrainConfig


def random_init_baseline(cfg: PretrainConfig, evaluation: EvalConfig, *, tracking_uri: str, study_run_id: str) -> str:
    """Evaluate the randomly initialised encoder of ``cfg`` (its seed is the study seed) as a
    baseline run under the study run ``study_run_id``; the baseline run's id.

    Run it once per study seed with the study's evaluation. A FINISHED baseline run of the same
    seed and evaluation mode under the study is reused, not repeated, so a resumed study adds no
    second row. Runs in this process, on the device a trial of ``cfg`` trains and evaluates on.
    """
    client = MlflowClient(tracking_uri)
    study_run = client.get_run(study_run_id)
    done = finished_baseline(client, study_run, cfg.seed, evaluation.mode)
    if done is not None:
        return done.info.run_id
    device = training_device(cfg)
    c = build_components(cfg)
    c.model.to(device)
    encoder = Pretrained(c, cfg, epoch=0, pretrain_run_id="")
    tags = {rs.KIND: rs.KIND_BASELINE, rs.BASELINE: rs.BASELINE_RANDOM_INIT, rs.STUDY: study_run.data.tags[rs.STUDY]}
    experiment = client.get_experiment(study_run.info.experiment_id).name
    name = f"random-init-{evaluation.mode}-s{cfg.seed}"
    params = eval_params(encoder, evaluation)
    run_id = create_run(tracking_uri, experiment, run_name=name, params=params, tags=tags, parent_run_id=study_run_id)
    # The trials' own validation kNN monitor, of the encoder they start from: what a learned encoder's is compared with.
    client.log_metric(run_id, rs.M_FINAL_VAL_KNN, validation_knn(c, cfg, device))
    record(encoder, evaluation, device, tracking_uri=tracking_uri, run_id=run_id)
    return run_id


def finished_baseline(client: MlflowClient, study_run: Run, seed: int, mode: str) -> Run | None:
    tags = {rs.STUDY: study_run.data.tags[rs.STUDY], rs.KIND: rs.KIND_BASELINE, rs.BASELINE: rs.BASELINE_RANDOM_INIT}
    tags[rs.PARENT] = study_run.info.run_id
    for run in search_runs(client, tags, experiments=[study_run.info.experiment_id]):
        if run.info.status == "FINISHED" and run.data.params.get(rs.P_SEED) == str(seed) and run.data.params.get(rs.P_EVAL_MODE) == mode:
            return run
    return None
