"""What a sweep prints: the study's plan and cost, one compact line per finished trial, an ETA,
and a final table — through Tune's ``ProgressReporter`` API, in place of Ray's own output.

Tune's new output engine (Ray >= 2.7) ignores a ``progress_reporter`` unless
``RAY_AIR_NEW_OUTPUT=0``; :func:`quiet_ray` sets it, sends the ``ray`` loggers and Python
warnings to the study's ``ray.log``, and the sweep starts Ray with ``log_to_driver=False`` so
that trial processes' output stays in Ray's session logs. A trial's error still reaches the
console (its status and last error line) and MLflow (the run's failure reason).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from ray.tune import ProgressReporter
from ray.tune.experiment import Trial

from study import adaptive
from study.cost import estimated_seconds, minutes
from study.plan import Plan
from trainables.integration.tracking import trial_run_name
from trainables.spec import run_schema as rs
from trainables.spec.losses import HYPERPARAMETERS
from trainables.spec.pretrain_config import from_dict
from trainables.spec.study_context import trial_config

REPORT_EVERY_S = 60.0  # a progress line at most this often while nothing finishes
AXIS_LABELS = {"batch_size": "batch", "views": "M"} | {name: spec.symbol for name, spec in HYPERPARAMETERS.items()}  # short column heads
STATUS_WORDS = {Trial.PENDING: "pending", Trial.RUNNING: "running", Trial.PAUSED: "paused", Trial.TERMINATED: "done", Trial.ERROR: "FAILED"}


@contextlib.contextmanager
def quiet_ray(log_file: Path) -> Iterator[None]:
    """Ray's and Python's warnings into ``log_file``; our reporter instead of Tune's new output."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    loggers = [logging.getLogger(name) for name in ("ray", "py.warnings", "mlflow", "optuna")]
    saved = [(lg, lg.handlers[:], lg.propagate) for lg in loggers]
    previous_output = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    logging.captureWarnings(True)
    for lg in loggers:
        lg.handlers, lg.propagate = [handler], False
    try:
        yield
    finally:
        for lg, handlers, propagate in saved:
            lg.handlers, lg.propagate = handlers, propagate
        logging.captureWarnings(False)
        handler.close()
        if previous_output is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = previous_output


class StudyConsole:
    """The study's console: its plan at the start, then one :class:`StudyReporter` per Tune run."""

    def __init__(self, name: str, plan: Plan, folder: Path, out: TextIO | None = None) -> None:
        self.name, self.plan, self.folder, self.out = name, plan, folder, out or sys.stdout
        self.started = time.monotonic()
        self.trial_seconds: list[float] = []  # wall-clock of each finished trial, for the ETA
        self.concurrency = 1

    def print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def axes(self) -> list[str]:
        return list(self.plan.preset.grid) + ["seed"] if not self.plan.is_search else ["loss", "batch_size", "lr", "seed"]

    def start(self, cluster: dict[str, float], concurrency: int) -> None:
        """The plan, the resources and the estimated wall-clock, before the first trial: a study's one
        account of its plan (the trial-by-trial list is the dry run's)."""
        preset, self.concurrency = self.plan.preset, concurrency
        tuning = preset.tuning
        tuned = len(preset.cells()) * tuning.samples if tuning else 0
        seconds = [estimated_seconds(c) for c in self.plan.configs]
        resources = ", ".join(f"{v:g} {k}" for k, v in sorted(cluster.items()) if k in ("CPU", "GPU"))
        grid = " x ".join(f"{a} {list(v)}" for a, v in preset.grid.items())
        lines = [
            f"study {self.name}: preset {preset.name}",
            f"axes: {'Optuna search' if self.plan.is_search else grid or 'none'} x seeds {list(preset.first_seeds)}",
            f"plan: {self.plan.num_trials} trials"
            + (f" after {tuned} tuning trials ({tuning.samples} per cell)" if tuning else "")
            + f", plus a random-init baseline per seed {list(preset.first_seeds)}",
            f"resources: {resources}; {concurrency} trial(s) at once; load average {os.getloadavg()[0]:.1f}",
        ]
        if all(s is not None for s in seconds):
            per_trial = sum(seconds) / len(seconds)  # type: ignore[arg-type]
            total = per_trial * (self.plan.num_trials + tuned) / concurrency
            lines.append(
                f"estimated wall-clock: {minutes(total)} ({minutes(per_trial)} a trial, from measured throughput; more on a loaded machine)"
            )
        else:
            lines.append("estimated wall-clock: n/a (no measured throughput for this backbone and device; see study/cost.py)")
        lines += adaptive.schedule_lines(self.plan)
        lines.append(f"Ray's own log: {self.folder / 'ray.log'}")
        lines += [f"note: {note}" for note in self.plan.notes]  # what the overrides replaced, as a dry run says it
        self.print("\n".join(lines))

    def reporter(self, phase: str, cell: dict[str, Any] | None = None) -> StudyReporter:
        """A reporter for one Tune run; ``cell`` holds the values its trials share (a tuned cell's)."""
        return StudyReporter(self, phase, cell or {})


class StudyReporter(ProgressReporter):
    """Tune's reporter API: a line per finished trial, a progress line with an ETA, a final table."""

    def __init__(self, console: StudyConsole, phase: str, cell: dict[str, Any]) -> None:
        self.console, self.phase, self.cell = console, phase, cell
        self.total = 0
        self.reported: set[str] = set()
        self.last_line = 0.0
        self.names: dict[str, str] = {}

    def setup(
        self,
        start_time: float | None = None,
        total_samples: int | None = None,
        metric: str | None = None,
        mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.total = total_samples or 0
        self.console.print(f"\n{self.phase}: {self.total} trial(s), each listed as it ends ({self.legend()})\n{self.header()}")

    def legend(self) -> str:
        mode = self.console.plan.preset.evaluation.get("mode", "linear")
        return f"val kNN: validation kNN accuracy of the last epoch; test acc: the {mode} evaluation's test accuracy at its validation-selected epoch"

    def should_report(self, trials: list[Trial], done: bool = False) -> bool:
        finished = {t.trial_id for t in trials if t.status in (Trial.TERMINATED, Trial.ERROR)}
        return done or bool(finished - self.reported) or time.monotonic() - self.last_line >= REPORT_EVERY_S

    def report(self, trials: list[Trial], done: bool, *sys_info: str) -> None:
        new = False
        for trial in trials:
            if trial.status in (Trial.TERMINATED, Trial.ERROR) and trial.trial_id not in self.reported:
                self.reported.add(trial.trial_id)
                seconds = (trial.last_result or {}).get("time_total_s")
                if seconds:
                    self.console.trial_seconds.append(float(seconds))
                self.console.print(self.row(trial))
                new = True
        if new or not done:
            self.console.print(self.progress(trials))
        self.last_line = time.monotonic()
        if done:
            self.console.print(self.table(trials))

    def trial_params(self, trial: Trial) -> dict[str, Any]:
        return self.cell | trial.config.get("point", trial.config)

    def name(self, trial: Trial) -> str:
        """The trial's MLflow run name (``infonce-b32-m1-lr0.075-s0``)."""
        if trial.trial_id not in self.names:
            preset = self.console.plan.preset
            try:
                cfg = from_dict(trial_config(preset.fixed, preset.per_loss, self.trial_params(trial)))
                self.names[trial.trial_id] = trial_run_name(cfg)
            except ValueError:
                return trial.trial_id
        return self.names[trial.trial_id]

    def row(self, trial: Trial) -> str:
        result, params = trial.last_result or {}, self.trial_params(trial)
        epochs = int(self.console.plan.preset.fixed.get("epochs", 0))
        knn, acc = result.get(rs.M_VAL_KNN), result.get(rs.M_HEADLINE)
        axes = "  ".join(f"{params.get(a, '')!s:>{self.width(a)}}" for a in self.console.axes())
        cells = [
            f"{self.name(trial):<36}",
            axes,
            f"{int(result.get('epoch', 0)):>3}/{epochs:<3}",
            f"{knn:7.2%}" if knn is not None else f"{'—':>7}",
            f"{acc:8.2%}" if acc is not None else f"{'—':>8}",
            STATUS_WORDS.get(trial.status, trial.status.lower()),
        ]
        if trial.status == Trial.ERROR and trial.error_file and Path(trial.error_file).is_file():
            lines = [line for line in Path(trial.error_file).read_text(errors="replace").splitlines() if line.strip()]
            cells.append(lines[-1][:120] if lines else "")
        return "  ".join(cells)

    @staticmethod
    def width(axis: str) -> int:
        return 12 if axis == "loss" else max(5, len(AXIS_LABELS.get(axis, axis)))

    def header(self) -> str:
        axes = "  ".join(f"{AXIS_LABELS.get(a, a):>{self.width(a)}}" for a in self.console.axes())
        return "  ".join([f"{'trial (MLflow run)':<36}", axes, f"{'epoch':<7}", f"{'val kNN':>7}", f"{'test acc':>8}", "status"])

    def progress(self, trials: list[Trial]) -> str:
        finished = sum(t.status in (Trial.TERMINATED, Trial.ERROR) for t in trials)
        failed = sum(t.status == Trial.ERROR for t in trials)
        running = sum(t.status == Trial.RUNNING for t in trials)
        left = max(self.total, len(trials)) - finished
        elapsed = time.monotonic() - self.console.started
        text = f"[{minutes(elapsed)}] {self.phase}: {finished}/{max(self.total, len(trials))} done ({failed} failed), {running} running"
        done_s = self.console.trial_seconds
        if done_s and left:
            text += f"; ETA {minutes(sum(done_s) / len(done_s) * left / max(1, self.console.concurrency))}"
        return text

    def table(self, trials: list[Trial]) -> str:
        return "\n".join([f"\n{self.phase}: final", self.header(), *(self.row(t) for t in trials)])
