"""Evaluating a backbone: linear probe, fine-tuning, or kNN, each recorded as its own MLflow run.

Unlike the seeds' probes, the backbone is in eval mode (BatchNorm statistics frozen), the
epoch is chosen on the validation split, and the test accuracy at that epoch is the reported
number. The seeds' "best test accuracy over epochs" is recorded too, under a name that says
it was selected on the test set.

The test predictions of the reported epoch are recorded as well, one class per test image
(``rs.TEST_PREDICTIONS``, beside the labels), so that two trials can be compared image by image
(``python -m analysis mcnemar``): with CIFAR-10's 10,000 test images, the test set's own noise
(about ±0.5 points) is as large as the differences the tables resolve over seeds.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient
from torch import nn

from trainables.core.augment import AugmentConfig, SimCLRAugment, eval_transform
from trainables.core.components import Components, build_components, encoder
from trainables.core.data import Images, Splits
from trainables.core.distributed import world
from trainables.core.features import split_features
from trainables.core.knn import knn_predict
from trainables.core.models import ContrastiveModel
from trainables.core.optim import build_schedule
from trainables.integration.tracking import (
    RunLogger,
    create_run,
    end_run,
    trial_run_name,
)
from trainables.run.checkpoint import load_checkpoint
from trainables.spec import run_schema as rs
from trainables.spec.eval_config import RECIPES, EvalConfig
from trainables.spec.files import write_atomically
from trainables.spec.papers import Recipe
from trainables.spec.pretrain_config import PretrainConfig, from_dict
from trainables.spec.validation import ConfigError


@dataclass(frozen=True)
class Pretrained:
    """What is evaluated: a model (on the evaluation's device) with the data and augmentation of
    its config, and where it came from."""

    components: Components
    config: PretrainConfig
    epoch: int  # pretraining epochs behind the weights; 0 for a randomly initialised encoder
    pretrain_run_id: str  # "" when the weights come from no MLflow run

    @property
    def model(self) -> ContrastiveModel:
        return self.components.model

    @property
    def data(self) -> Splits:
        return self.components.data

    @property
    def aug_cfg(self) -> AugmentConfig:
        return self.components.aug_cfg


def load_pretrained(checkpoint: Path, eval_cfg: EvalConfig, device: torch.device) -> Pretrained:
    state = load_checkpoint(checkpoint, map_location=device)
    cfg = from_dict(state["config"] | ({"data_dir": eval_cfg.data_dir} if eval_cfg.data_dir else {}))
    c = build_components(cfg)
    c.model.load_state_dict(state["model"])
    c.model.to(device)
    return Pretrained(c, cfg, int(state["epoch"]), str(state["mlflow_run_id"]))


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


@dataclass
class Selection:
    """Per-epoch validation and test accuracies, the validation-selected epoch and its test predictions."""

    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    test_predictions: torch.Tensor | None = None  # of the selected epoch so far: [test images], on the device

    def add(self, epoch: int, train_loss: float, val_acc: float, test_acc: float, test_predictions: torch.Tensor) -> None:
        # Strictly better only: the earliest epoch among ties is the selected one, as in summary().
        if not self.history or val_acc > max(h[rs.M_EVAL_VAL_ACC] for h in self.history):
            self.test_predictions = test_predictions
        self.history.append({"epoch": epoch, rs.M_EVAL_TRAIN_LOSS: train_loss, rs.M_EVAL_VAL_ACC: val_acc, rs.M_EVAL_TEST_ACC: test_acc})

    def summary(self) -> dict[str, float]:
        best = max(self.history, key=lambda h: (h[rs.M_EVAL_VAL_ACC], -h["epoch"]))  # earliest among ties
        return {
            rs.M_TEST_AT_BEST_VAL: best[rs.M_EVAL_TEST_ACC],
            rs.M_BEST_VAL_ACC: best[rs.M_EVAL_VAL_ACC],
            rs.M_BEST_EPOCH: best["epoch"],
            rs.M_MAX_TEST_OVER_EPOCHS: max(h[rs.M_EVAL_TEST_ACC] for h in self.history),
        }


def make_optimizer(params: list[nn.Parameter], recipe: Recipe, lr: float, fused: bool) -> torch.optim.Optimizer:
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=recipe.weight_decay, fused=fused or None)
    return torch.optim.SGD(params, lr=lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, fused=fused or None)


def train_classifier(
    classifier: nn.Module, params: list[nn.Parameter], batches: Callable[[torch.Generator], list[tuple[torch.Tensor, torch.Tensor]]],
    evaluate: Callable[[], tuple[float, float, torch.Tensor]], eval_cfg: EvalConfig, device: torch.device,
) -> Selection:
    """The epoch loop shared by the linear probe and fine-tuning."""
    recipe = RECIPES[eval_cfg.recipe]
    optimizer = make_optimizer(params, recipe, eval_cfg.lr or recipe.lr, fused=device.type == "cuda")
    generator = torch.Generator(device).manual_seed(eval_cfg.seed)
    epoch_batches = batches(generator)  # epoch 1's batches; their count sizes the schedule
    schedule = build_schedule(optimizer, recipe.schedule, warmup_steps=0, total_steps=eval_cfg.epochs * len(epoch_batches))
    selection = Selection()
    for epoch in range(1, eval_cfg.epochs + 1):
        classifier.train()
        losses = torch.zeros((), device=device)
        for inputs, labels in epoch_batches if epoch == 1 else batches(generator):
            loss = F.cross_entropy(classifier(inputs), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses += loss.detach()
        classifier.eval()
        val_acc, test_acc, test_predictions = evaluate()
        selection.add(epoch, losses.item() / len(epoch_batches), val_acc, test_acc, test_predictions)
    return selection


def shuffled_batches(
    inputs: torch.Tensor, labels: torch.Tensor, batch_size: int, generator: torch.Generator
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    order = torch.randperm(len(labels), generator=generator, device=generator.device)
    return [(inputs[i], labels[i]) for i in order.split(batch_size)]


def linear_probe(p: Pretrained, eval_cfg: EvalConfig, device: torch.device) -> Selection:
    """A single linear layer on features extracted once per split and kept on the device."""
    p.model.eval()
    encode = encoder(p.model, p.aug_cfg, device)
    feats = {name: split_features(encode, getattr(p.data, name), normalize=False) for name in ("train", "val", "test")}
    labels = {name: getattr(p.data, name).labels.to(device) for name in feats}
    torch.manual_seed(eval_cfg.seed)
    linear = nn.Linear(feats["train"].shape[1], p.data.spec.num_classes).to(device)

    @torch.no_grad()
    def evaluate() -> tuple[float, float, torch.Tensor]:
        test_logits = linear(feats["test"])
        return accuracy(linear(feats["val"]), labels["val"]), accuracy(test_logits, labels["test"]), test_logits.argmax(1)

    batches = lambda g: shuffled_batches(feats["train"], labels["train"], eval_cfg.batch_size, g)  # noqa: E731
    return train_classifier(linear, list(linear.parameters()), batches, evaluate, eval_cfg, device)


def finetune(p: Pretrained, eval_cfg: EvalConfig, device: torch.device) -> Selection:
    """The whole network trained with a linear layer, on crop-and-flip augmented images."""
    torch.manual_seed(eval_cfg.seed)
    network = nn.Sequential(copy.deepcopy(p.model.backbone), nn.Linear(p.model.feature_dim, p.data.spec.num_classes)).to(device)
    crop_flip = SimCLRAugment(dataclasses.replace(p.aug_cfg, crop_scale=(0.2, 1.0), jitter_prob=0.0, gray_prob=0.0, blur_prob=0.0))
    train = p.data.train
    if not train.in_memory:
        raise ConfigError(
            f"mode='finetune' holds the training images in memory; dataset={p.config.dataset!r} streams from its files (raise in_memory_gb)"
        )
    train_images = torch.cat(list(train.batches(len(train))))

    def batches(g: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
        images = crop_flip.views(train_images.to(device), 1, g)[:, 0]
        return shuffled_batches(images, train.labels.to(device), eval_cfg.batch_size, g)

    @torch.no_grad()
    def split_logits(split: Images) -> torch.Tensor:
        return torch.cat([network(eval_transform(x.to(device), p.aug_cfg)) for x in split.batches(eval_cfg.batch_size)])

    def evaluate() -> tuple[float, float, torch.Tensor]:
        val_acc = accuracy(split_logits(p.data.val), p.data.val.labels.to(device))
        test_logits = split_logits(p.data.test)
        return val_acc, accuracy(test_logits, p.data.test.labels.to(device)), test_logits.argmax(1)

    return train_classifier(network, list(network.parameters()), batches, evaluate, eval_cfg, device)


@torch.no_grad()
def knn_evaluation(p: Pretrained, eval_cfg: EvalConfig, device: torch.device) -> tuple[dict[str, float], torch.Tensor]:
    """kNN on validation and test with the training split as the bank (nothing is selected), and the test predictions."""
    p.model.eval()
    encode = encoder(p.model, p.aug_cfg, device)
    bank = split_features(encode, p.data.train)
    bank_labels = p.data.train.labels.to(device)

    def split_predictions(split: Images) -> torch.Tensor:
        queries, classes = split_features(encode, split), p.data.spec.num_classes
        return knn_predict(bank, bank_labels, queries, k=eval_cfg.knn_k, temperature=eval_cfg.knn_temperature, num_classes=classes).cpu()

    def split_acc(split: Images, pred: torch.Tensor) -> float:
        return (pred == split.labels).float().mean().item()

    test_predictions = split_predictions(p.data.test)
    val_acc, test_acc = split_acc(p.data.val, split_predictions(p.data.val)), split_acc(p.data.test, test_predictions)
    metrics = {rs.M_TEST_AT_BEST_VAL: test_acc, rs.M_BEST_VAL_ACC: val_acc, rs.M_EVAL_VAL_ACC: val_acc, rs.M_EVAL_TEST_ACC: test_acc}
    return metrics, test_predictions


def evaluate(p: Pretrained, eval_cfg: EvalConfig, device: torch.device) -> tuple[dict[str, float], list[dict[str, float]]]:
    """(final metrics, per-epoch history) of the evaluation ``eval_cfg.mode``."""
    final, history, _ = evaluate_predicting(p, eval_cfg, device)
    return final, history


def evaluate_predicting(
    p: Pretrained, eval_cfg: EvalConfig, device: torch.device
) -> tuple[dict[str, float], list[dict[str, float]], torch.Tensor]:
    """(final metrics, per-epoch history, test predictions of the reported epoch) of the evaluation ``eval_cfg.mode``.

    Shape:
        predictions: [test images], the predicted class of each, in the test split's order
    """
    if eval_cfg.mode == "knn":
        metrics, predictions = knn_evaluation(p, eval_cfg, device)
        return metrics, [], predictions
    if eval_cfg.mode == "finetune" and world()[1] > 1:
        raise ConfigError("mode='finetune' runs in one process; evaluate the checkpoint with study/linear_eval.py")
    selection = linear_probe(p, eval_cfg, device) if eval_cfg.mode == "linear" else finetune(p, eval_cfg, device)
    return selection.summary(), selection.history, selection.test_predictions.cpu()


def predictions_file(predictions: torch.Tensor, labels: torch.Tensor, folder: Path) -> Path:
    """The test predictions and labels as ``rs.TEST_PREDICTIONS`` (int16 arrays ``predictions``, ``labels``), written atomically.

    Shape:
        predictions: [test images]
        labels: [test images]
    """
    buffer = io.BytesIO()
    np.savez(buffer, predictions=predictions.numpy().astype(np.int16), labels=labels.numpy().astype(np.int16))
    return write_atomically(folder / rs.TEST_PREDICTIONS, buffer.getvalue())


def eval_params(p: Pretrained, eval_cfg: EvalConfig) -> dict[str, Any]:
    """An evaluation run's params: the evaluation's own settings under ``probe_`` names (so that the
    probe's batch size is never read as the pretraining's), and what identifies the encoder under
    the trial runs' names: dataset, backbone and seed, and for a trained one (``p.epoch`` > 0)
    the pretraining's loss, batch size and views, so that evaluation rows sort and filter by
    them in the MLflow UI; and, under the pretraining runs' ``data.`` names, the statistics the
    images were normalised with and where they came from, which must be the pretraining's."""
    own = {f"{rs.PROBE_PREFIX}{k}": v for k, v in dataclasses.asdict(eval_cfg).items() if k not in ("mode", "recipe")}
    cfg = p.config
    encoder = {rs.P_DATASET: cfg.dataset, rs.P_BACKBONE: cfg.backbone, rs.P_SEED: cfg.seed}
    if p.epoch > 0:
        encoder |= {rs.P_LOSS: cfg.loss, rs.P_BATCH_SIZE: cfg.batch_size, rs.P_VIEWS: cfg.views}
    normalised = {k: v for k, v in p.data.describe().items() if k in ("mean", "std", "stats_source")}
    evaluation = {rs.P_EVAL_MODE: eval_cfg.mode, rs.P_RECIPE: eval_cfg.recipe, rs.P_CHECKPOINT_EPOCH: p.epoch}
    return own | encoder | {"data": normalised} | evaluation


def eval_run(tracking_uri: str, p: Pretrained, eval_cfg: EvalConfig, checkpoint: str) -> str:
    """A RUNNING child run of the pretraining run, in its experiment, with its study tag, named
    after the pretraining run."""
    client = MlflowClient(tracking_uri)
    parent = client.get_run(p.pretrain_run_id) if p.pretrain_run_id else None
    experiment = client.get_experiment(parent.info.experiment_id).name if parent else "nce-study"
    tags = {rs.KIND: rs.KIND_EVAL} | ({rs.STUDY: parent.data.tags[rs.STUDY]} if parent and rs.STUDY in parent.data.tags else {})
    params = eval_params(p, eval_cfg) | {rs.P_PRETRAIN_RUN_ID: p.pretrain_run_id, "checkpoint": checkpoint}
    name = f"{parent.info.run_name if parent else trial_run_name(p.config)}-{eval_cfg.mode}-epoch{p.epoch}"
    return create_run(tracking_uri, experiment, run_name=name, params=params, tags=tags, parent_run_id=p.pretrain_run_id or None)


def evaluate_and_record(
    p: Pretrained, eval_cfg: EvalConfig, device: torch.device, *, tracking_uri: str | None, checkpoint: str, log: bool = True
) -> dict[str, float]:
    """Evaluate, recording a child MLflow run of the pretraining run (see :func:`record`)."""
    run_id = eval_run(tracking_uri, p, eval_cfg, checkpoint) if log and tracking_uri else None
    return record(p, eval_cfg, device, tracking_uri=tracking_uri, run_id=run_id)


def record(p: Pretrained, eval_cfg: EvalConfig, device: torch.device, *, tracking_uri: str | None, run_id: str | None) -> dict[str, float]:
    """Evaluate into the RUNNING run ``run_id`` and end it (FAILED with the reason if evaluation fails,
    KILLED with the signal if a stop signal interrupts it).

    Every DDP worker calls this (feature extraction is shared); only the one given a run writes.
    """
    try:
        final, history, predictions = evaluate_predicting(p, eval_cfg, device)
    except KeyboardInterrupt as err:  # a stop signal (study/stopping.py raises it), not a failure: the run ends KILLED
        if run_id:
            client = MlflowClient(tracking_uri)
            client.set_tag(run_id, rs.FAILURE_REASON, str(err) or "KeyboardInterrupt")
            client.set_terminated(run_id, status="KILLED")
        raise
    except BaseException as err:
        if run_id:
            end_run(tracking_uri, run_id, failed_reason=f"{type(err).__name__}: {err}")
        raise
    if run_id:
        logger = RunLogger(tracking_uri, run_id)
        for h in history:
            logger.log_epoch(int(h["epoch"]), {k: v for k, v in h.items() if k != "epoch"})
        logger.log_final(final)
        with tempfile.TemporaryDirectory() as folder:
            predictions_file(predictions, p.data.test.labels.cpu(), Path(folder))
            logger.log_artifacts(Path(folder), "")
        logger.flush_with_retry()
        end_run(tracking_uri, run_id)
    return final | ({"eval_run_id": run_id} if run_id else {})
