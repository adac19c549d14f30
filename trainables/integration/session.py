"""Where a training loop reports its metrics and checkpoints, and finds them again to resume.

The same loop runs under Ray Train on W workers (:class:`RayTrainSession`), directly inside a
Ray Tune trial when one CPU worker is enough (:class:`TuneSession`: a Train worker group costs
~10 s of start-up per trial), or with no Ray at all (:class:`LocalSession`, for tests and
scripts). Checkpoints are reported as ``epoch_NNNNN`` directories, so their names sort by epoch
and a resume can fall back past a corrupt one.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable, Protocol

from trainables.core.distributed import world


def checkpoint_dir_name(epoch: int) -> str:
    return f"epoch_{epoch:05d}"


def _sorted_checkpoints(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("epoch_*") if p.is_dir())


class Session(Protocol):
    rank: int
    world_size: int
    shows_progress: bool  # draw an epoch progress bar (Tune trials have Tune's own table)

    def report(self, metrics: dict[str, float], checkpoint: Path | None, epoch: int) -> None:
        """Hand the epoch's metrics (and a checkpoint directory, if any) to whoever runs us."""

    def checkpoints(self) -> list[Path]:
        """Local directories of the checkpoints to resume from, oldest first."""


def _local_candidates(checkpoint: object | None) -> list[Path]:
    """The reported checkpoint and its siblings when storage is a local filesystem."""
    if checkpoint is None:
        return []
    path = Path(checkpoint.path)  # type: ignore[attr-defined]
    if path.is_dir():
        return _sorted_checkpoints(path.parent) or [path]
    # Remote storage (s3://, gs://): only the latest checkpoint is fetched.
    return [Path(checkpoint.to_directory(tempfile.mkdtemp(prefix="nce-resume-")))]  # type: ignore[attr-defined]


class RayTrainSession:
    """Inside ``TorchTrainer``: ``ray.train.report`` from every worker, checkpoints from rank 0."""

    shows_progress = True

    def __init__(self) -> None:
        import ray.train

        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()

    def report(self, metrics: dict[str, float], checkpoint: Path | None, epoch: int) -> None:
        import ray.train

        ckpt = ray.train.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None
        ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=checkpoint_dir_name(epoch) if ckpt else None)

    def checkpoints(self) -> list[Path]:
        import ray.train

        return _local_candidates(ray.train.get_checkpoint())


class TuneSession:
    """Inside a Ray Tune function trainable, one process: ``ray.tune.report``."""

    rank, world_size = 0, 1
    shows_progress = False

    def report(self, metrics: dict[str, float], checkpoint: Path | None, epoch: int) -> None:
        import ray.tune

        ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None)

    def checkpoints(self) -> list[Path]:
        import ray.tune

        return _local_candidates(ray.tune.get_checkpoint())


class LocalSession:
    """No Ray: checkpoints are copied under ``directory``; metrics go to ``on_report``."""

    shows_progress = False

    def __init__(self, directory: str | Path, on_report: Callable[[dict[str, float]], None] | None = None) -> None:
        self.directory = Path(directory)
        self.on_report = on_report
        self.rank, self.world_size = world()
        self.reported: list[dict[str, float]] = []

    def report(self, metrics: dict[str, float], checkpoint: Path | None, epoch: int) -> None:
        self.reported.append(metrics)
        if self.on_report is not None:
            self.on_report(metrics)
        if checkpoint is not None and self.rank == 0:
            final = self.directory / checkpoint_dir_name(epoch)
            staging = self.directory / f".{final.name}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(checkpoint, staging)
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)

    def checkpoints(self) -> list[Path]:
        return _sorted_checkpoints(self.directory) if self.directory.is_dir() else []
