"""The evaluation config: how a pretrained encoder is judged (linear probe, fine-tuning or kNN) and with which paper's probe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainables.spec.papers import DEFAULT_PAPER, PAPERS, Recipe
from trainables.spec.validation import (
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_KNN_K,
    Check,
    a_text,
    at_least,
    between,
    build,
    one_of,
    validate,
)

# The probe recipes, named for the paper whose evaluation script they come from (trainables/spec/papers.py).
RECIPES: dict[str, Recipe] = {name: paper.probe for name, paper in PAPERS.items()}
EVAL_MODES = ("linear", "finetune", "knn")


@dataclass(frozen=True)
class EvalConfig:
    mode: str = "linear"
    recipe: str = DEFAULT_PAPER
    epochs: int = 100
    batch_size: int = 512
    lr: float | None = None  # None: the recipe's
    data_dir: str | None = None  # None: the pretraining run's
    knn_k: int = 200
    knn_temperature: float = 0.1
    gpu: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        validate(self, EVAL_CHECKS)


EVAL_CHECKS: list[Check] = [
    one_of("mode", EVAL_MODES),
    one_of("recipe", RECIPES),
    between("epochs", 1, MAX_EPOCHS),
    between("batch_size", 1, MAX_BATCH_SIZE),
    at_least("lr", 0, strict=True),
    a_text("data_dir"),
    between("knn_k", 1, MAX_KNN_K),
    at_least("knn_temperature", 0, strict=True),
    between("seed", 0, 2**32, high_open=True),
]


def eval_from_dict(values: dict[str, Any]) -> EvalConfig:
    """A validated evaluation config from plain values; unknown keys and wrong types are errors."""
    return build(EvalConfig, values, EVAL_CHECKS)


