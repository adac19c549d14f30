"""Read one study's MLflow tree into a DataFrame with one row per trial.

The tree is the one ``trainables.spec.run_schema`` describes: a study run, its trial (pretraining)
runs, and each trial's evaluation runs. All of a study's runs carry the ``nce.study`` tag and
their ``nce.kind``: each load searches the store for the kinds it reads (and an evaluation's
mode), never the whole tree, because building a run's entities is what a large study's load costs.
Nothing reads the store's files directly.
"""

from __future__ import annotations

import re
import sys

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from trainables.integration.mlflow_search import search_runs
from trainables.spec import run_schema as rs
from trainables.spec.eval_config import EVAL_MODES
from trainables.spec.validation import RENAMED_FIELDS

# Columns of the loaded frame besides the config params (named as in run_schema).
RUN_ID = "run_id"
TRIAL_ID = "trial_id"
STUDY = "study"
STUDY_RUN_ID = "study_run_id"
PRESET = "preset"
CODE_VERSION = "code_version"
STATUS = "status"
FAILURE_REASON = "failure_reason"
START_TIME = "start_time"
END_TIME = "end_time"
EXPERIMENT_ID = "experiment_id"
STUDY_START = "study_start_time"
STUDY_END = "study_end_time"
EVAL_MODE = "eval_mode"
EVAL_RUN_ID = "eval_run_id"
RECIPE = "recipe"
N_EVALS = "n_evals"
ENCODER_PASSES = "encoder_passes"  # V x epochs: forward/backward passes per training image
FINAL_TRAIN_LOSS = "final_train_loss"
FINAL_POS_PROB = "final_pos_prob"
EXTRA_PARAM_PREFIX = "param."
EVAL_PARAM_PREFIX = "eval."  # the evaluation run's own params (its batch size, lr, epochs, ...)

# The config params read back, typed, in the order of the frame's columns.
CONFIG_TYPES: dict[str, str] = {
    rs.P_LOSS: "str",
    rs.P_BATCH_SIZE: "Int64",
    rs.P_VIEWS: "Int64",
    rs.P_VIEWS_PER_IMAGE: "Int64",
    rs.P_LR: "float64",
    rs.P_LR_EFFECTIVE: "float64",
    rs.P_LR_SCALING: "str",
    rs.P_OPTIMIZER: "str",
    rs.P_TEMPERATURE: "float64",
    rs.P_SEED: "Int64",
    rs.P_EPOCHS: "Int64",
    rs.P_DATASET: "str",
    rs.P_BACKBONE: "str",
    rs.P_WORLD_SIZE: "Int64",
    rs.P_DEVICE_TYPE: "str",
}
TRIAL_METRICS = (rs.M_FINAL_VAL_KNN, rs.M_BEST_VAL_KNN, rs.M_WALL_CLOCK, rs.M_DEVICE_HOURS, rs.M_EPOCHS_DONE)
LAST_EPOCH_METRICS = {rs.M_TRAIN_LOSS: FINAL_TRAIN_LOSS, rs.M_POS_PROB: FINAL_POS_PROB}
EVAL_METRICS = (rs.M_TEST_AT_BEST_VAL, rs.M_BEST_VAL_ACC, rs.M_BEST_EPOCH, rs.M_MAX_TEST_OVER_EPOCHS)

_RUN_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


class StudyNotFoundError(LookupError):
    """No study of that name or run id exists in the tracking store searched."""


def load_study(
    name_or_parent_run_id: str,
    tracking_uri: str | None = None,
    *,
    eval_mode: str = "linear",
) -> pd.DataFrame:
    """Load every trial of a study, with its config, metrics and one evaluation.

    Each row is one trial (pretraining run) of the study, whatever its status: failed and
    early-stopped trials are kept so that tables can count them. The evaluation columns
    (``test_acc_at_best_val``, ``best_val_acc``, ``best_epoch``, ``max_test_acc_over_epochs``,
    ``recipe``, ``eval_run_id``) come from the trial's evaluation runs of ``eval_mode`` only:
    where a trial has several, the one started last is used and ``n_evals`` says how many there
    were; where it has none, they are missing (never filled from another mode).

    Config params are typed (ints, floats, strings) under their run_schema names; params outside
    run_schema are kept as strings under ``param.<name>``. Accuracies stay fractions in [0, 1].

    Args:
        name_or_parent_run_id: The study's ``nce.study`` name, or the run id of its study run.
        tracking_uri: MLflow tracking URI; None uses MLflow's current one.
        eval_mode: Which evaluation fills the evaluation columns: linear, finetune or knn.

    Returns:
        One row per trial, in start order: ids (``run_id``, ``trial_id``), ``status`` and
        ``failure_reason``, the config, the trial's own final metrics (``final_val_knn_acc``,
        ``best_val_knn_acc``, ``wall_clock_s``, ``device_hours``, ``epochs_done``, and the last
        epoch's ``final_train_loss`` and ``final_pos_prob``), ``encoder_passes`` (V x epochs),
        ``code_version``, and the evaluation columns (the evaluation's params as ``eval.<name>``).
        The study-wide columns ``study``, ``study_run_id``, ``experiment_id``, ``preset``,
        ``study_start_time``, ``study_end_time`` and ``eval_mode`` repeat on every row.

    Raises:
        StudyNotFoundError: Nothing in the store matches, or the study has no trial runs.
        ValueError: ``eval_mode`` is not one of ``EVAL_MODES``, the study has evaluation runs of
            other modes only, or the name is ambiguous.
    """
    if eval_mode not in EVAL_MODES:
        raise ValueError(f"eval_mode must be one of {EVAL_MODES}, not {eval_mode!r}")
    uri = tracking_uri or mlflow.get_tracking_uri()
    client = MlflowClient(uri)
    study_run = _find_study_run(client, name_or_parent_run_id, uri)
    trials = _children(client, study_run, rs.KIND_PRETRAIN)
    if not trials:
        raise StudyNotFoundError(
            f"study {_study_label(study_run)} in {uri} has no trial runs ({rs.KIND}={rs.KIND_PRETRAIN})"
        )
    trial_ids = {run.info.run_id for run in trials}
    evals = [run for run in _study_runs(client, study_run, rs.KIND_EVAL, eval_mode) if run.data.tags.get(rs.PARENT) in trial_ids]
    if not evals:
        _check_eval_mode(client, study_run, eval_mode)
    frame = _typed(pd.DataFrame([_trial_row(run, study_run) for run in trials]))
    frame[ENCODER_PASSES] = frame[rs.P_VIEWS_PER_IMAGE] * frame[rs.P_EPOCHS]
    frame[EVAL_MODE] = eval_mode
    frame = frame.merge(_latest_evals(evals), on=RUN_ID, how="left").pipe(_fill_eval_counts)
    return frame.sort_values(START_TIME, ignore_index=True)


def load_baselines(
    name_or_parent_run_id: str,
    tracking_uri: str | None = None,
    *,
    eval_mode: str = "linear",
) -> pd.DataFrame:
    """The study's random-init baseline runs of one evaluation mode, one row per run.

    Args:
        name_or_parent_run_id: The study's ``nce.study`` name, or the run id of its study run.
        tracking_uri: MLflow tracking URI; None uses MLflow's current one.
        eval_mode: Which evaluation's baseline runs: linear, finetune or knn.

    Returns:
        Columns ``run_id``, ``seed``, ``dataset``, ``backbone``, ``recipe``, ``start_time`` and the
        evaluation metrics; empty (with those columns) where the study recorded none.

    Raises:
        StudyNotFoundError: Nothing in the store matches.
    """
    if eval_mode not in EVAL_MODES:
        raise ValueError(f"eval_mode must be one of {EVAL_MODES}, not {eval_mode!r}")
    uri = tracking_uri or mlflow.get_tracking_uri()
    client = MlflowClient(uri)
    study_run = _find_study_run(client, name_or_parent_run_id, uri)
    baselines = _children(client, study_run, rs.KIND_BASELINE, eval_mode)
    rows = [_baseline_row(run) for run in baselines if run.data.tags.get(rs.BASELINE) == rs.BASELINE_RANDOM_INIT]
    frame = pd.DataFrame(rows, columns=BASELINE_COLUMNS) if rows else empty_baselines()
    frame[rs.P_SEED] = pd.to_numeric(frame[rs.P_SEED], errors="coerce").astype("Int64")
    return frame.astype({key: "float64" for key in EVAL_METRICS}).sort_values(START_TIME, ignore_index=True)


BASELINE_COLUMNS = (RUN_ID, rs.P_SEED, rs.P_DATASET, rs.P_BACKBONE, RECIPE, START_TIME, *EVAL_METRICS)


def empty_baselines() -> pd.DataFrame:
    """A baseline frame without rows, for studies that recorded none."""
    return pd.DataFrame({column: pd.Series(dtype="float64") for column in BASELINE_COLUMNS})


def _baseline_row(run: Run) -> dict[str, object]:
    params = run.data.params
    return {
        RUN_ID: run.info.run_id,
        rs.P_SEED: params.get(rs.P_SEED),
        rs.P_DATASET: params.get(rs.P_DATASET),
        rs.P_BACKBONE: params.get(rs.P_BACKBONE),
        RECIPE: params.get(rs.P_RECIPE),
        START_TIME: run.info.start_time,
        **{key: run.data.metrics.get(key) for key in EVAL_METRICS},
    }


def load_history(run_ids: list[str], metrics: tuple[str, ...], tracking_uri: str | None = None) -> pd.DataFrame:
    """Per-epoch values of some metrics for a few runs, for training-curve plots.

    Args:
        run_ids: Runs to read (one request per run and metric, so keep the list short).
        metrics: Metric keys, e.g. ``(rs.M_VAL_KNN, rs.M_POS_PROB)``.
        tracking_uri: MLflow tracking URI; None uses MLflow's current one.

    Returns:
        Long frame with columns run_id, metric, step, value, sorted by run, metric and step.
    """
    client = MlflowClient(tracking_uri or mlflow.get_tracking_uri())
    rows = [
        {RUN_ID: run_id, "metric": key, "step": point.step, "value": point.value}
        for run_id in run_ids
        for key in metrics
        for point in client.get_metric_history(run_id, key)
    ]
    frame = pd.DataFrame(rows, columns=[RUN_ID, "metric", "step", "value"])
    return frame.sort_values([RUN_ID, "metric", "step"], ignore_index=True)


def study_eval_mode(name_or_parent_run_id: str, tracking_uri: str | None = None) -> str:
    """The evaluation mode a study's tables read when none is asked for: the one the study ran.

    A study run records it (``eval_mode``); a re-evaluation of some trials in another mode
    (``linear_eval.py --mode knn``) adds runs but does not change the study's mode. A study run
    without the record (written before it, or by hand) reads the mode whose evaluations cover
    the most trials, saying so on stderr when there are several; a tie is refused naming the
    modes, since any choice would be a guess. A study with no evaluation runs reads ``linear``
    (its cells then hold the trials' own kNN only, whatever the mode).

    Raises:
        StudyNotFoundError: Nothing in the store matches.
        ValueError: The study has no recorded mode and its modes cover equally many trials.
    """
    uri = tracking_uri or mlflow.get_tracking_uri()
    client = MlflowClient(uri)
    study_run = _find_study_run(client, name_or_parent_run_id, uri)
    recorded = study_run.data.params.get(rs.P_EVAL_MODE)
    if recorded:
        return recorded
    trials = _trials_by_mode(client, study_run)
    if not trials:
        return "linear"
    ranked = sorted(trials, key=lambda mode: (-len(trials[mode]), mode))
    if len(ranked) > 1 and len(trials[ranked[0]]) == len(trials[ranked[1]]):
        raise ValueError(
            f"study {_study_label(study_run)} has evaluation runs of several modes ({', '.join(sorted(trials))}) "
            f"covering equally many trials and records none of its own: pass --eval with one of them"
        )
    if len(ranked) > 1:
        counts = ", ".join(f"{mode} on {len(trials[mode])}" for mode in ranked)
        print(f"note: reading the {ranked[0]} evaluations, the mode of most trials ({counts}); pass --eval to choose", file=sys.stderr)
    return ranked[0]


def _study_runs(client: MlflowClient, study_run: Run, kind: str, eval_mode: str | None = None) -> list[Run]:
    """The runs of the study of one ``nce.kind`` (and, given, one evaluation mode), in any experiment
    (a trial may be re-evaluated into another)."""
    tags = {rs.STUDY: study_run.data.tags[rs.STUDY], rs.KIND: kind}
    params = {rs.P_EVAL_MODE: eval_mode} if eval_mode else None
    return search_runs(client, tags, params=params)


def _trials_by_mode(client: MlflowClient, study_run: Run) -> dict[str, set[str]]:
    """The study's evaluation modes, each with the run ids of the trials evaluated in it."""
    trials: dict[str, set[str]] = {}
    for run in _study_runs(client, study_run, rs.KIND_EVAL):
        trials.setdefault(run.data.params.get(rs.P_EVAL_MODE, "?"), set()).add(run.data.tags.get(rs.PARENT, ""))
    return trials


def _check_eval_mode(client: MlflowClient, study_run: Run, eval_mode: str) -> None:
    """A study evaluated in other modes only is named with them, rather than read as a table of gaps."""
    modes = sorted(_trials_by_mode(client, study_run))
    if modes:
        raise ValueError(
            f"eval mode {eval_mode!r}: study {_study_label(study_run)} has no {eval_mode} evaluation runs; "
            f"its evaluation modes: {', '.join(modes)} (pass --eval {modes[0]})"
        )


def _children(client: MlflowClient, study_run: Run, kind: str, eval_mode: str | None = None) -> list[Run]:
    """Those of :func:`_study_runs` whose parent is the study run itself."""
    runs = _study_runs(client, study_run, kind, eval_mode)
    return [run for run in runs if run.data.tags.get(rs.PARENT) == study_run.info.run_id]


def _find_study_run(client: MlflowClient, name_or_id: str, uri: str) -> Run:
    by_name = search_runs(client, {rs.STUDY: name_or_id, rs.KIND: rs.KIND_STUDY})
    if len(by_name) > 1:
        ids = ", ".join(run.info.run_id for run in by_name)
        raise ValueError(f"{len(by_name)} study runs in {uri} are named {name_or_id!r} ({ids}); pass one run id")
    if by_name:
        return by_name[0]
    run = _get_run_or_none(client, name_or_id)
    if run is None or run.data.tags.get(rs.KIND) != rs.KIND_STUDY or rs.STUDY not in run.data.tags:
        raise StudyNotFoundError(
            f"no study named {name_or_id!r}, and no study run with that id, in {uri}; {_studies_text(client)}"
        )
    return run


def _studies_text(client: MlflowClient) -> str:
    """The studies that do exist there, for the not-found message."""
    names = sorted({run.data.tags[rs.STUDY] for run in search_runs(client, {rs.KIND: rs.KIND_STUDY})})
    return f"studies there: {', '.join(names)}" if names else "that store holds no studies"


def _get_run_or_none(client: MlflowClient, run_id: str) -> Run | None:
    if not _RUN_ID_PATTERN.match(run_id):
        return None
    try:
        return client.get_run(run_id)
    except MlflowException:
        return None


def _study_label(study_run: Run) -> str:
    return f"{study_run.data.tags[rs.STUDY]!r} (run {study_run.info.run_id})"


def _trial_row(run: Run, study_run: Run) -> dict[str, object]:
    params, metrics, tags = old_params_renamed(run.data.params), run.data.metrics, run.data.tags
    row: dict[str, object] = {
        RUN_ID: run.info.run_id,
        TRIAL_ID: tags.get(rs.TRIAL_ID),
        STUDY: study_run.data.tags[rs.STUDY],
        STUDY_RUN_ID: study_run.info.run_id,
        EXPERIMENT_ID: study_run.info.experiment_id,
        STUDY_START: _timestamp(study_run.info.start_time),
        STUDY_END: _timestamp(study_run.info.end_time),
        PRESET: study_run.data.tags.get(rs.PRESET),
        CODE_VERSION: tags.get(rs.CODE_VERSION, study_run.data.tags.get(rs.CODE_VERSION)),
        STATUS: _status(run),
        FAILURE_REASON: tags.get(rs.FAILURE_REASON),
        START_TIME: _timestamp(run.info.start_time),
        END_TIME: _timestamp(run.info.end_time),
    }
    row.update({key: params.get(key) for key in CONFIG_TYPES})
    row.update({key: metrics.get(key) for key in TRIAL_METRICS})
    row.update({column: metrics.get(key) for key, column in LAST_EPOCH_METRICS.items()})
    row.update({EXTRA_PARAM_PREFIX + key: value for key, value in sorted(params.items()) if key not in CONFIG_TYPES})
    return row


def old_params_renamed(params: dict[str, str]) -> dict[str, str]:
    """A run's params, those recorded under a field's old name (an older run's) under its name now."""
    return {RENAMED_FIELDS.get(key, key): value for key, value in params.items()}


def _timestamp(milliseconds: int | None) -> pd.Timestamp:
    return pd.NaT if milliseconds is None else pd.Timestamp(milliseconds, unit="ms", tz="UTC")


def _status(run: Run) -> str:
    """The trial's ``nce.status``; trials that never set it are reported by MLflow's state."""
    tag = run.data.tags.get(rs.STATUS)
    if tag:
        return tag
    return "running" if run.info.status in ("RUNNING", "SCHEDULED") else "unknown"


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    numeric = {column: dtype for column, dtype in CONFIG_TYPES.items() if dtype != "str"}
    numeric |= dict.fromkeys(TRIAL_METRICS + tuple(LAST_EPOCH_METRICS.values()), "float64")
    for column, dtype in numeric.items():
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(dtype)
    return frame


def _latest_evals(evals: list[Run]) -> pd.DataFrame:
    params = sorted({EVAL_PARAM_PREFIX + key for run in evals for key in run.data.params})
    columns = [RUN_ID, EVAL_RUN_ID, RECIPE, N_EVALS, *EVAL_METRICS, *params]
    rows = [
        {
            RUN_ID: run.data.tags[rs.PARENT],
            EVAL_RUN_ID: run.info.run_id,
            RECIPE: run.data.params.get(rs.P_RECIPE),
            START_TIME: run.info.start_time,
            **{key: run.data.metrics.get(key) for key in EVAL_METRICS},
            **{EVAL_PARAM_PREFIX + key: value for key, value in run.data.params.items()},
        }
        for run in evals
    ]
    frame = pd.DataFrame(rows, columns=[*columns, START_TIME]).sort_values([RUN_ID, START_TIME])
    frame[N_EVALS] = frame.groupby(RUN_ID)[EVAL_RUN_ID].transform("size")
    latest = frame.drop_duplicates(RUN_ID, keep="last")[columns]
    return latest.astype({key: "float64" for key in EVAL_METRICS})


def _fill_eval_counts(frame: pd.DataFrame) -> pd.DataFrame:
    frame[N_EVALS] = frame[N_EVALS].fillna(0).astype("int64")
    return frame
