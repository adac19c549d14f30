"""A study as one MLflow tree: the study run, and the status of every trial run under it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from ray.tune import Callback
from ray.tune.experiment import Trial

from trainables import run_schema as rs
from trainables.mlflow_search import find_run, search_runs
from trainables.tracking import create_run, end_run, ensure_experiment, flatten, library_versions

log = logging.getLogger(__name__)


def find_study_run(tracking_uri: str, experiment: str, study: str) -> str | None:
    client = MlflowClient(tracking_uri)
    found = find_run(client, {rs.STUDY: study, rs.KIND: rs.KIND_STUDY}, experiments=[ensure_experiment(client, experiment)])
    return found.info.run_id if found else None


def create_study_run(tracking_uri: str, experiment: str, study: str, preset: str, description: str, overrides: dict[str, Any]) -> str:
    params = {"preset": preset, "description": description} | flatten(overrides, "override.") | library_versions()
    tags = {rs.KIND: rs.KIND_STUDY, rs.STUDY: study, rs.PRESET: preset}
    return create_run(tracking_uri, experiment, run_name=study, params=params, tags=tags)


def find_trial_runs(tracking_uri: str, experiment: str, study: str) -> dict[str, Any]:
    """Trial id -> MLflow run of every trial of the study (all pages)."""
    client = MlflowClient(tracking_uri)
    found = search_runs(client, {rs.STUDY: study, rs.KIND: rs.KIND_PRETRAIN}, experiments=[ensure_experiment(client, experiment)])
    return {r.data.tags[rs.TRIAL_ID]: r for r in found}


def error_line(trial: Trial) -> str:
    """The last line of a failed trial's error, which names the exception and its message.

    Tune writes the error to the trial's local error file before it calls the callbacks
    (the copy in storage comes later).
    """
    path = Path(trial.error_file) if trial.error_file else None
    if path is None or not path.is_file():
        return f"trial {trial.trial_id} failed; Tune recorded no error file"
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else f"trial {trial.trial_id} failed with an empty error file"


class TrialStatusCallback(Callback):
    """Ends each trial's MLflow run with its status, on the sweep driver.

    Tune kills early-stopped trials rather than letting them return, so their runs would
    stay RUNNING for ever if the trials had to end them themselves.
    """

    def __init__(self, tracking_uri: str, experiment: str, study: str, epochs: int) -> None:
        self.tracking_uri, self.experiment, self.study, self.epochs = tracking_uri, experiment, study, epochs

    def _end(self, trial: Trial, status: str, reason: str | None = None) -> None:
        run = find_trial_runs(self.tracking_uri, self.experiment, self.study).get(trial.trial_id)
        if run is None:  # the trial died before it could create its run
            log.warning("trial %s has no MLflow run to mark %s", trial.trial_id, status)
            return
        end_run(self.tracking_uri, run.info.run_id, failed_reason=reason, tags={rs.STATUS: status})

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        epoch = int((trial.last_result or {}).get("epoch", 0))
        planned = int(trial.config.get("epochs", self.epochs))
        self._end(trial, rs.STATUS_COMPLETED if epoch >= planned else rs.STATUS_EARLY_STOPPED)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._end(trial, rs.STATUS_FAILED, reason=error_line(trial))


def reconcile(results: Any, tracking_uri: str, experiment: str, study: str, epochs: int) -> None:
    """End trial runs left RUNNING (a driver killed before its callback ran), from Tune's results."""
    runs = find_trial_runs(tracking_uri, experiment, study)
    for result in results:
        trial_id = (result.metrics or {}).get("trial_id")
        run = runs.get(trial_id)
        if run is None or run.info.status != "RUNNING":
            continue
        if result.error is not None:
            lines = [line for line in str(result.error).strip().splitlines() if line.strip()]
            end_run(tracking_uri, run.info.run_id, failed_reason=lines[-1] if lines else "failed", tags={rs.STATUS: rs.STATUS_FAILED})
            continue
        done = int(result.metrics.get("epoch", 0)) >= int(result.config.get("epochs", epochs))
        end_run(tracking_uri, run.info.run_id, tags={rs.STATUS: rs.STATUS_COMPLETED if done else rs.STATUS_EARLY_STOPPED})
