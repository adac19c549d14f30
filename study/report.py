"""What a study prints: its plan before it starts (--dry-run) and its table when it ends."""

from __future__ import annotations

import shlex
from pathlib import Path

from study.cost import encoder_passes, estimated_seconds, gpu_hours, minutes
from study.dataset_check import BUNDLED
from study.plan import Plan, trial_resources
from trainables.spec import run_schema as rs
from trainables.spec.pretrain_config import PretrainConfig

CHECKPOINT_MAP = "checkpoints.tsv"  # in the study's folder: each trial's MLflow run name and checkpoint folder


def resources_text(driver: dict[str, float], workers: dict[str, float], num_workers: int) -> str:
    text = " + ".join(f"{v:g} {k}" for k, v in driver.items())
    if workers:
        per = ", ".join(f"{v / num_workers:g} {k}" for k, v in workers.items())
        text = f"driver {text} + {num_workers} workers x ({per})"
    return text


TRIAL_HEADER = (
    f"{'#':>4}  {'loss':<13}{'batch':>6}{'M':>3}{'V':>3}{'lr':>9}{'seed':>5}  {'resources':<44}{'encoder passes':>15}{'GPU-h':>8}{'time':>8}"
)


def trial_row(number: int, cfg: PretrainConfig) -> str:
    """A trial's line under TRIAL_HEADER: its axes, resources and estimated cost."""
    driver, workers = trial_resources(cfg)
    hours, seconds = gpu_hours(cfg), estimated_seconds(cfg)
    hours_text = f"{hours:8.2f}" if hours is not None else "     n/a"
    return (
        f"{number:>4}  {cfg.loss:<13}{cfg.batch_size:>6}{cfg.views:>3}{cfg.views_per_image:>3}{cfg.lr:>9.4g}{cfg.seed:>5}  "
        f"{resources_text(driver, workers, cfg.workers):<44}{encoder_passes(cfg):>15,}{hours_text}{minutes(seconds) if seconds else 'n/a':>8}"
    )


def describe_run(name: str, cfg: PretrainConfig) -> str:
    """One run of study/train.py as its dry run prints it: the line a study's plan gives a trial."""
    data = "bundled with scikit-learn" if cfg.dataset == BUNDLED else cfg.data_dir
    return "\n".join(
        [
            f"run {name!r}: {cfg.dataset} ({data}), backbone {cfg.backbone}, {cfg.epochs} epochs",
            f"checkpoints: {Path(cfg.save_dir) / name}; MLflow experiment {cfg.experiment!r}",
            TRIAL_HEADER,
            trial_row(1, cfg),
            *loss_settings([cfg]),
        ]
    )


def describe_plan(name: str, plan: Plan) -> str:
    """The trial list, each trial's resources and the estimated cost."""
    preset = plan.preset
    # The description is the preset's own; what --set changed is named so that it is not read as what runs.
    changed = f" (as declared; changed by {', '.join(plan.overrides)})" if plan.overrides else ""
    lines = [f"study {name!r}: preset {preset.name!r} — {preset.description}{changed}"]
    if plan.is_search:
        lines.append(
            f"{plan.num_trials} trials proposed by Optuna TPE (scheduler: {preset.scheduler}); {len(plan.configs)} sampled suggestions validated"
        )
        configs = plan.configs[:1]
    else:
        lines.append(
            f"{plan.num_trials} trials (grid over {', '.join(preset.grid) or 'nothing'} x {len(preset.first_seeds)} seed(s); scheduler: {preset.scheduler})"
        )
        configs = plan.configs
    lines.append(TRIAL_HEADER)
    total_passes, each_hours, each_seconds = 0, [], []
    for i, cfg in enumerate(configs, 1):
        passes, hours, seconds = encoder_passes(cfg), gpu_hours(cfg), estimated_seconds(cfg)
        total_passes += passes
        each_hours.append(hours)
        each_seconds.append(seconds)
        lines.append(trial_row(i, cfg))
    scale = plan.num_trials / len(configs)
    priced = all(h is not None for h in each_hours)
    total_hours = sum(h for h in each_hours if h is not None)
    hours = (
        f"about {total_hours * scale:.1f} GPU-hours of pretraining on H100-class GPUs (estimate at batch-512 throughput; small batches run slower)"
        if priced
        else "GPU-hours n/a: no measured throughput for some trials"
    )
    lines.append(f"total: {int(total_passes * scale):,} encoder passes; {hours}")
    if all(each_seconds):  # the CPU presets too, from their measured throughput (study/cost.py)
        lines.append(f"time: about {minutes(sum(each_seconds) * scale)} of trial wall-clock in all (one trial at a time; more on a loaded machine)")
    lines += loss_settings(plan.configs)
    lines.append(f"evaluation after each pretraining: {preset.evaluation}")
    return "\n".join(lines)


def loss_settings(configs: list[PretrainConfig]) -> list[str]:
    """Each loss's hyperparameters as the trials run them, and the dataset they were published for."""
    lines: dict[str, None] = {}  # in trial order, each once
    for cfg in configs:
        values = ", ".join(f"{k}={v:g}" for k, v in cfg.loss_hyperparameters().items())
        source = f" (published for {cfg.published_for}: published_hyperparameters={cfg.published_hyperparameters!r})" if cfg.published_for else ""
        if values:
            lines[f"loss {cfg.loss}: {values}{source}"] = None
    return list(lines)


UI_PORT = 5000  # the port the printed ``mlflow ui`` command names, and so the link's


def browse_lines(tracking_uri: str, experiment_id: str) -> list[str]:
    """Where to browse a study: the server it was logged to, or the ``mlflow ui`` command to start
    and its link, on the port that command names."""
    from trainables.integration.tracking import redact_url, results_url

    if tracking_uri.startswith(("http://", "https://")):
        return [f"browse: {results_url(redact_url(tracking_uri), experiment_id)}"]
    command = f"mlflow ui --backend-store-uri {tracking_uri} --app-name nce-study --port {UI_PORT}"
    return [f"browse with: {command}", f"then open: {results_url(f'http://127.0.0.1:{UI_PORT}', experiment_id)}"]


def baseline_line(tracking_uri: str, study_run_id: str) -> str | None:
    """The random-init baseline's test accuracy (mean over its seeds, per evaluation mode), or None before it ran."""
    from mlflow.tracking import MlflowClient

    from trainables.integration.mlflow_search import search_runs

    tags = {rs.KIND: rs.KIND_BASELINE, rs.PARENT: study_run_id}
    runs = [r for r in search_runs(MlflowClient(tracking_uri), tags) if rs.M_HEADLINE in r.data.metrics]
    by_mode: dict[str, list[float]] = {}
    for run in runs:
        by_mode.setdefault(run.data.params.get(rs.P_EVAL_MODE, "?"), []).append(run.data.metrics[rs.M_HEADLINE])
    if not by_mode:
        return None
    parts = [f"{mode} test accuracy {sum(v) / len(v):.2%} (mean of {len(v)} seed{'s' * (len(v) > 1)})" for mode, v in sorted(by_mode.items())]
    return "random-init baseline (the untrained encoder, evaluated like the trials): " + "; ".join(parts)


def print_summary(name: str, study_run_id: str, tracking_uri: str, folder: Path, *, eval_mode: str = "linear") -> None:
    """The study's tables (through analysis/), its best trial (also recorded on the study run), the
    random-init baseline and where to browse it."""
    from analysis import write_report
    from study.study_run import record_best_trial, write_checkpoint_map

    best = record_best_trial(tracking_uri, study_run_id)
    report = write_report(name, tracking_uri, folder / "report", log_to_mlflow=True, eval_mode=eval_mode)
    print(f"\n{report.batch_size_markdown}\n")
    if best is not None:
        test = rs.current_metrics(best.data.metrics)[rs.M_HEADLINE]
        print(f"best trial by validation accuracy: {best.info.run_name} (test accuracy {test:.2%} at the validation-selected epoch)")
    baseline = baseline_line(tracking_uri, study_run_id)
    if baseline:
        print(baseline)
    print(f"study {name}: MLflow run {study_run_id}")
    if best is not None:
        print("\n".join(browse_lines(tracking_uri, best.info.experiment_id)))
    print(f"report: {report.html}")
    print(
        f"checkpoints of each trial: {write_checkpoint_map(tracking_uri, study_run_id, folder / CHECKPOINT_MAP)}; re-evaluate one with: "
        f"python study/linear_eval.py --study {shlex.quote(name)} --trial RUN_NAME"
    )
