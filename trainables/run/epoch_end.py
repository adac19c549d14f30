"""Everything that happens once an epoch is trained: checkpoint, MLflow, the session's report, progress.

The training loop hands each epoch's metrics to one :class:`EpochEnd` and knows nothing of where
they go. Each epoch's metrics gain the wall clock and device-hours spent so far (``rs.M_ELAPSED``,
``rs.M_DEVICE_HOURS_ELAPSED``), so that accuracy can be read against compute epoch by epoch. In
order, for every epoch: world rank 0 writes a checkpoint (on save epochs and the
last), rank 0 logs the epoch's metrics to the MLflow run (and the last checkpoint as an
artifact), every rank reports to the session (Ray Train's report is a barrier), and rank 0's
progress bar moves. With ``hold_last`` the last epoch's report waits for :meth:`EpochEnd.release`,
so that a trial can add its evaluation's results to the report Tune sees last.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from trainables.integration.session import Session
from trainables.integration.tracking import RunLogger, log_params
from trainables.run.checkpoint import save_checkpoint
from trainables.spec import run_schema as rs
from trainables.spec.losses import CATALOG
from trainables.spec.pretrain_config import PretrainConfig


@dataclass
class HeldReport:
    metrics: dict[str, float]
    checkpoint: Path | None
    epoch: int
    folder: Path  # the temporary folder holding the checkpoint until it is reported


class EpochEnd:
    def __init__(
        self, cfg: PretrainConfig, session: Session, *, run_id: str | None = None, tracking_uri: str | None = None, hold_last: bool = False
    ) -> None:
        self.cfg, self.session, self.hold_last, self.run_id = cfg, session, hold_last, run_id
        self.logger = RunLogger(tracking_uri, run_id) if run_id and tracking_uri and session.rank == 0 else None
        self.bar: Any = None
        self.held: HeldReport | None = None
        self.clock, self.elapsed_before = time.perf_counter(), 0.0

    def log_params(self, params: dict[str, Any]) -> None:
        """Params known only once the worker has loaded its data; world rank 0 logs them to the run."""
        if self.logger is not None:
            log_params(self.logger.client, self.logger.run_id, params)

    def start(self, done: int) -> None:
        """Called once before the first epoch, ``done`` epochs having been trained before."""
        self.clock = time.perf_counter()
        if self.logger is not None and done:  # a restart: the clock goes on from the epoch it resumes after
            history = self.logger.client.get_metric_history(self.logger.run_id, rs.M_ELAPSED)
            self.elapsed_before = max((m.value for m in history if m.step <= done), default=0.0)
        if self.session.shows_progress and self.session.rank == 0:
            from ray.experimental.tqdm_ray import (
                tqdm,  # a bar that Ray draws on the driver's terminal
            )

            self.bar = tqdm(total=self.cfg.epochs - done, desc=f"{self.cfg.loss} pretraining", unit="epoch")

    def __call__(self, epoch: int, metrics: dict[str, float], state: Callable[[], dict[str, Any]]) -> None:
        """The end of ``epoch``; ``state`` makes the checkpoint's contents when one is due."""
        last_epoch = epoch == self.cfg.epochs
        elapsed = self.elapsed_before + time.perf_counter() - self.clock
        metrics = metrics | {rs.M_ELAPSED: elapsed, rs.M_DEVICE_HOURS_ELAPSED: self.cfg.workers * elapsed / 3600}
        folder = Path(tempfile.mkdtemp(prefix="nce-ckpt-"))
        checkpoint = None
        if (epoch % self.cfg.n_save_epochs == 0 or last_epoch) and self.session.rank == 0:
            checkpoint = save_checkpoint(state(), folder)
        if self.logger is not None:
            self.logger.log_epoch(epoch, metrics)
            if checkpoint is not None and last_epoch:
                self.logger.log_artifacts(checkpoint, "checkpoint")
        report = HeldReport(metrics | {"epoch": epoch}, checkpoint, epoch, folder)
        if self.hold_last and last_epoch:
            self.held = report
        else:
            self._send(report)
        if self.bar is not None:
            probability = CATALOG[self.cfg.loss].diagnostics[0]
            loss = metrics[rs.M_TRAIN_LOSS]
            self.bar.set_description(f"epoch {epoch}/{self.cfg.epochs} loss {loss:.3f} {probability} {metrics[probability]:.3f}")
            self.bar.update(1)

    def close(self, final: dict[str, float]) -> None:
        """After the last epoch: the run's final metrics, and the progress bar closed."""
        if self.bar is not None:
            self.bar.close()
        if self.logger is not None:
            self.logger.log_final(final)

    @property
    def holding(self) -> bool:
        return self.held is not None

    def release(self, extra: dict[str, float]) -> None:
        """Send the held last report with ``extra`` added; rank 0 also logs ``extra`` to the run."""
        if self.held is None:
            raise RuntimeError("no report is held: the last epoch was trained before this run started")
        if self.logger is not None and extra:
            self.logger.log_final(extra)
        held, self.held = self.held, None
        held.metrics |= extra
        self._send(held)

    def discard(self) -> None:
        """Drop a held report (its evaluation failed): the trial fails with no last report."""
        if self.held is not None:
            shutil.rmtree(self.held.folder, ignore_errors=True)
            self.held = None

    def report_again(self, epoch: int) -> None:
        """For a run restored after its last report: report the run's latest metrics again, with no
        checkpoint. Its checkpoint, logged epochs and evaluation stand; but the last report may have
        been stored (a Ray Train checkpoint) without reaching whoever runs us, as when a Tune driver
        stops in between, and without it the run would look stopped early."""
        metrics = self.logger.latest_metrics() if self.logger is not None else {}
        self.session.report(metrics | {"epoch": epoch}, None, epoch)

    def _send(self, report: HeldReport) -> None:
        try:
            self.session.report(report.metrics, report.checkpoint, report.epoch)
        finally:
            shutil.rmtree(report.folder, ignore_errors=True)
