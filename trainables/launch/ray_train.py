"""Running the pretraining loop under Ray Train's TorchTrainer (DDP over gloo or NCCL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray.train
from ray.train.torch import TorchConfig, TorchTrainer

from trainables.integration.session import RayTrainSession
from trainables.run.evaluation import EvalConfig
from trainables.run.train_and_evaluate import train_and_evaluate
from trainables.spec.pretrain_config import PretrainConfig, from_dict


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train's per-worker entry: ``{"config", "run_id", "tracking_uri", "evaluation"}``."""
    evaluation = loop_config.get("evaluation")
    train_and_evaluate(
        from_dict(loop_config["config"]), RayTrainSession(), run_id=loop_config.get("run_id"),
        tracking_uri=loop_config.get("tracking_uri"), evaluation=EvalConfig(**evaluation) if evaluation else None,
    )


def scaling_config(cfg: PretrainConfig) -> ray.train.ScalingConfig:
    """W workers, each with ``cpus_per_worker`` CPUs and, when ``gpu``, ``gpus_per_worker`` of a GPU."""
    resources = {"CPU": cfg.cpus_per_worker} | ({"GPU": cfg.gpus_per_worker} if cfg.gpu else {})
    return ray.train.ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.gpu, resources_per_worker=resources)


def build_trainer(
    cfg: PretrainConfig, *, name: str, storage_path: str | Path, run_id: str | None, tracking_uri: str | None,
    max_failures: int = 0, evaluation: dict[str, Any] | None = None, callbacks: list[ray.train.UserCallback] | None = None,
) -> TorchTrainer:
    """A TorchTrainer whose run ``name`` under ``storage_path`` is stable: running it again
    with the same name resumes from its latest checkpoint (Ray Train restores by name)."""
    storage = str(storage_path) if "://" in str(storage_path) else str(Path(storage_path).resolve())
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": cfg.to_dict(), "run_id": run_id, "tracking_uri": tracking_uri, "evaluation": evaluation},
        torch_config=TorchConfig(backend="nccl" if cfg.gpu else "gloo"),
        scaling_config=scaling_config(cfg),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            # The newest three survive, so a corrupt latest one can fall back to an older one.
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=3),
            callbacks=callbacks or [],
        ),
    )
