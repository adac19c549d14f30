"""A pretraining followed by the evaluation of its encoder: what every worker of a trial runs."""

from __future__ import annotations

from trainables.integration.session import Session
from trainables.run.epoch_end import EpochEnd
from trainables.run.evaluation import EvalConfig, Pretrained, evaluate_and_record
from trainables.run.pretrain import pretrain
from trainables.spec import run_schema as rs
from trainables.spec.pretrain_config import PretrainConfig


def train_and_evaluate(
    cfg: PretrainConfig, session: Session, *, run_id: str | None, tracking_uri: str | None, evaluation: EvalConfig | None
) -> None:
    """Pretrain, then evaluate the encoder in memory (a child MLflow run of ``run_id``).

    The last epoch's report waits for the evaluation, so that the report Tune sees last carries
    its headline numbers (``rs.M_HEADLINE``, ``rs.M_HEADLINE_VAL``, under the evaluation's own keys);
    rank 0 also copies them onto the trial's MLflow run.
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
    end.release({key: result[key] for key in (rs.M_HEADLINE, rs.M_HEADLINE_VAL)})
