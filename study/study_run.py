"""A study as one MLflow tree: the study run, and the status of every trial run under it."""

from __future__ import annotations

import difflib
import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Run, RunTag
from mlflow.tracking import MlflowClient
from ray.tune import Callback
from ray.tune.experiment import Trial

from study.plan import apply_overrides, preset_named
from trainables.integration.mlflow_search import find_run, search_runs
from trainables.integration.tracking import (
    create_run,
    end_run,
    ensure_experiment,
    flatten,
    library_versions,
    results_url,
    run_url,
)
from trainables.spec import run_schema as rs
from trainables.spec.claims import CLAIMS_ARTIFACT, claims_json
from trainables.spec.validation import ConfigError

log = logging.getLogger(__name__)

# An adaptive study's looks on its study run (only the driver writes them; the report reads the trials).
ADAPTIVE_LOOK_PREFIX = "nce.adaptive.look"  # tag per look: JSON of its seeds, resolved and open comparisons, next cells
M_ADAPTIVE_SEEDS = "adaptive_seeds"  # metrics at step = the look's index (1 for the first)
M_ADAPTIVE_RESOLVED = "adaptive_resolved"
M_ADAPTIVE_OPEN = "adaptive_open"


def find_study_run(tracking_uri: str, experiment: str, study: str) -> str | None:
    client = MlflowClient(tracking_uri)
    found = find_run(client, {rs.STUDY: study, rs.KIND: rs.KIND_STUDY}, experiments=[ensure_experiment(client, experiment)])
    return found.info.run_id if found else None


def create_study_run(
    tracking_uri: str, experiment: str, study: str, preset: str, description: str, overrides: dict[str, Any], eval_mode: str
) -> str:
    """The study run, described (``mlflow.note.content``) by its preset, the axes run and the command.
    ``eval_mode`` is recorded so the tables read the study's own evaluations, whatever re-evaluations add."""
    params = {"preset": preset, "description": description, rs.P_EVAL_MODE: eval_mode} | flatten(overrides, "override.") | library_versions()
    tags = {rs.KIND: rs.KIND_STUDY, rs.STUDY: study, rs.PRESET: preset, rs.NOTE: study_note(study, preset, description, overrides)}
    run_id = create_run(tracking_uri, experiment, run_name=study, params=params, tags=tags)
    # The report judges the claims the study was started with (analysis/ cannot read the presets).
    MlflowClient(tracking_uri).log_text(run_id, claims_json(preset_named(preset).claims), CLAIMS_ARTIFACT)
    return run_id


def study_note(study: str, preset_name: str, description: str, overrides: dict[str, Any]) -> str:
    """Markdown for the study run's page: what ran (the preset's axes after the overrides) and how."""
    preset, _ = apply_overrides(preset_named(preset_name), overrides)
    lines = [f"**Study `{study}`**: preset `{preset_name}`: {description}", ""]
    if preset.search is not None:
        lines.append(f"- Optuna TPE over the preset's space: {preset.num_samples} trials (scheduler: {preset.scheduler})")
    for axis, values in preset.grid.items() if preset.search is None else ():
        lines.append(f"- {axis}: {', '.join(map(str, values))}")
    lines.append(f"- seeds: {', '.join(map(str, preset.seeds))}")
    if preset.adaptive is not None:
        lines.append(f"- adaptive seeds {preset.adaptive.text()}: looks at {', '.join(map(str, preset.adaptive.looks()))} seeds; each look is a `{ADAPTIVE_LOOK_PREFIX}N` tag")
    if overrides:
        lines.append(f"- overrides: {', '.join(f'{k}={v}' for k, v in overrides.items())}")
    lines.append(f"- evaluation: {', '.join(f'{k}={v}' for k, v in preset.evaluation.items())}")
    lines += ["", f"Command: `{shlex.join(['python', *sys.argv])}`"]
    return "\n".join(lines)


def look_tag(index: int) -> str:
    return f"{ADAPTIVE_LOOK_PREFIX}{index}"


def record_look(tracking_uri: str, study_run_id: str, index: int, seeds: int, resolved: list[str], still_open: list[str], cells: list[str]) -> bool:
    """An adaptive study's look on its study run, once: the metrics ``adaptive.seeds``, ``adaptive.resolved``
    and ``adaptive.open`` at step ``index`` (1 for the first look), and a tag naming the comparisons
    resolved so far, those open and the cells that get the next seeds. False where it was recorded."""
    client = MlflowClient(tracking_uri)
    if look_tag(index) in client.get_run(study_run_id).data.tags:
        return False
    now = int(time.time() * 1000)
    metrics = [
        Metric(M_ADAPTIVE_SEEDS, seeds, now, index),
        Metric(M_ADAPTIVE_RESOLVED, len(resolved), now, index),
        Metric(M_ADAPTIVE_OPEN, len(still_open), now, index),
    ]
    record = {"seeds": seeds, "resolved": resolved, "open": still_open, "next_cells": cells}
    client.log_batch(study_run_id, metrics=metrics, tags=[RunTag(look_tag(index), json.dumps(record))])
    return True


def recorded_looks(tracking_uri: str, study_run_id: str) -> dict[int, dict[str, Any]]:
    """Look index -> what ``record_look`` recorded of it."""
    tags = MlflowClient(tracking_uri).get_run(study_run_id).data.tags
    return {int(k.removeprefix(ADAPTIVE_LOOK_PREFIX)): json.loads(v) for k, v in tags.items() if k.startswith(ADAPTIVE_LOOK_PREFIX)}


def find_trial_runs(tracking_uri: str, experiment: str, study: str) -> dict[str, Any]:
    """Trial id -> MLflow run of every trial of the study (all pages)."""
    client = MlflowClient(tracking_uri)
    found = search_runs(client, {rs.STUDY: study, rs.KIND: rs.KIND_PRETRAIN}, experiments=[ensure_experiment(client, experiment)])
    return {r.data.tags[rs.TRIAL_ID]: r for r in found}


def record_best_trial(tracking_uri: str, study_run_id: str) -> Run | None:
    """The completed trial with the best evaluation validation accuracy (never selected on test),
    its numbers copied onto the study run as ``best_trial_*`` metrics and linked from its note."""
    client = MlflowClient(tracking_uri)
    study_run = client.get_run(study_run_id)
    experiment = study_run.info.experiment_id
    completed = {rs.STUDY: study_run.data.tags[rs.STUDY], rs.KIND: rs.KIND_PRETRAIN, rs.STATUS: rs.STATUS_COMPLETED}
    trials = search_runs(client, completed, experiments=[experiment])
    current = {t.info.run_id: rs.current_metrics(t.data.metrics) for t in trials}  # a resumed old study holds old keys
    scored = [t for t in trials if rs.M_HEADLINE_VAL in current[t.info.run_id] and rs.M_HEADLINE in current[t.info.run_id]]
    if not scored:
        return None
    best = max(scored, key=lambda t: (current[t.info.run_id][rs.M_HEADLINE_VAL], current[t.info.run_id].get(rs.M_FINAL_VAL_KNN, float("-inf"))))
    numbers = current[best.info.run_id]
    now = int(time.time() * 1000)
    copied = (rs.M_HEADLINE, rs.M_HEADLINE_VAL, rs.M_FINAL_VAL_KNN, rs.M_BEST_VAL_KNN)
    metrics = [Metric(rs.BEST_TRIAL_PREFIX + key, numbers[key], now, 0) for key in copied if key in numbers]
    link = run_url("", experiment, best.info.run_id).lstrip("/")
    note = study_run.data.tags.get(rs.NOTE, "") + (
        f"\n\nBest trial (by the evaluation's validation accuracy): [{best.info.run_name}]({link}), "
        f"test accuracy {numbers[rs.M_HEADLINE]:.2%} at the validation-selected epoch, "
        f"validation accuracy {numbers[rs.M_HEADLINE_VAL]:.2%} ({len(scored)} completed trials compared). "
        f"[All trials, best first]({results_url('', experiment).lstrip('/')})."
    )
    tags = [RunTag(rs.BEST_TRIAL, best.info.run_name), RunTag(rs.BEST_TRIAL_RUN_ID, best.info.run_id), RunTag(rs.NOTE, note)]
    client.log_batch(study_run_id, metrics=metrics, tags=tags)
    return best


def trial_checkpoint(tracking_uri: str, study: str, trial: str) -> Path:
    """The newest checkpoint folder of the trial of ``study`` whose MLflow run is named ``trial``
    (or whose Tune trial id it is), read from the folder its run records (``nce.checkpoints``)."""
    runs = search_runs(MlflowClient(tracking_uri), {rs.STUDY: study, rs.KIND: rs.KIND_PRETRAIN})
    if not runs:
        raise ConfigError(f"study={study!r} has no trial runs in {tracking_uri}")
    found = [r for r in runs if trial in (r.info.run_name, r.data.tags.get(rs.TRIAL_ID))]
    if not found:
        names = sorted(r.info.run_name for r in runs)
        close = difflib.get_close_matches(trial, names, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(f"trial={trial!r} is not a trial of study {study!r}; {hint}its trials: {', '.join(names)}")
    run = found[0]
    folder = Path(run.data.tags.get(rs.CHECKPOINTS, ""))
    checkpoints = sorted(p for p in folder.glob("*") if p.is_dir() and p.name.startswith(("epoch_", "checkpoint_"))) if folder.name else []
    if not checkpoints:
        raise ConfigError(f"trial={trial!r} of study {study!r}: no checkpoint folder under {str(folder) or '(no nce.checkpoints tag)'}")
    return checkpoints[-1]


def write_checkpoint_map(tracking_uri: str, study_run_id: str, path: Path) -> Path:
    """``path``: one line per trial, its MLflow run name and its checkpoint folder, tab-separated."""
    client = MlflowClient(tracking_uri)
    study_run = client.get_run(study_run_id)
    tags = {rs.STUDY: study_run.data.tags[rs.STUDY], rs.KIND: rs.KIND_PRETRAIN}
    trials = search_runs(client, tags, experiments=[study_run.info.experiment_id])
    lines = sorted(f"{t.info.run_name}\t{t.data.tags.get(rs.CHECKPOINTS, '')}" for t in trials)
    staging = path.with_name(f".{path.name}.partial")
    staging.write_text("run_name\tcheckpoints\n" + "\n".join(lines) + "\n")
    staging.replace(path)
    return path


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
        # One lookup by trial id: a search of every trial run per trial would grow with the study.
        client = MlflowClient(self.tracking_uri)
        tags = {rs.STUDY: self.study, rs.KIND: rs.KIND_PRETRAIN, rs.TRIAL_ID: trial.trial_id}
        run = find_run(client, tags, experiments=[ensure_experiment(client, self.experiment)])
        if run is None:  # the trial died before it could create its run
            log.warning("trial %s has no MLflow run to mark %s", trial.trial_id, status)
            return
        # A one-worker trial's checkpoints are Tune's, in the trial's storage folder (named like its run).
        where = {} if rs.CHECKPOINTS in run.data.tags else {rs.CHECKPOINTS: trial.path}
        end_run(self.tracking_uri, run.info.run_id, failed_reason=reason, tags={rs.STATUS: status} | where)

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
