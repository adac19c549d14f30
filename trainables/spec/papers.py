"""The papers' recipes: how each paper's official code pretrains and evaluates, one home for every fact.

The evaluation reads each paper's probe recipe from here (``EvalConfig.recipe`` names a paper)
and the report's Conditions section compares what a study recorded with the whole recipe, read
from the papers' official code. Torch-free, so that config validation and ``--help`` read it. Order matters: ``--help`` lists the recipes in it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """How the classifier is trained, from a seed's evaluation script."""

    optimizer: str
    lr: float
    weight_decay: float
    momentum: float = 0.0
    schedule: str = "constant"


@dataclass(frozen=True)
class PaperRecipe:
    """A paper's pretraining and evaluation recipe, as its official code runs it.

    Attributes:
        name: The paper's code, as the notes name it.
        source: Where the recipe is written down: the paper and its official code, as a report cites them.
        backbone: Backbone name, spelled as this project's ``backbone`` param.
        head: Projection head, as this project's ``head`` param.
        optimizer: Pretraining optimiser, as this project's ``optimizer`` param.
        lr: Base learning rate.
        lr_scaling: Rule applied to ``lr``, as this project's ``lr_scaling`` param.
        batch_size: Pretraining batch size.
        epochs: Pretraining epochs.
        temperature: τ.
        schedule: lr schedule, as this project's ``schedule`` param.
        warmup_epochs: Warm-up epochs of the schedule.
        blur_prob: Probability of a Gaussian blur in the CIFAR augmentation.
        blur: The blur in words.
        precision: Arithmetic of pretraining.
        probe: How its evaluation script trains the linear probe (the evaluation runs it as given).
        probe_batch_size: Linear-probe batch size.
        probe_epochs: Linear-probe epochs.
        probe_input: What the probe trains on.
        probe_augments: Whether the probe's training images are augmented (frozen features of unaugmented images are not).
    """

    name: str
    source: str
    backbone: str
    head: str
    optimizer: str
    lr: float
    lr_scaling: str
    batch_size: int
    epochs: int
    temperature: float
    schedule: str
    warmup_epochs: int
    blur_prob: float
    blur: str
    precision: str
    probe: Recipe
    probe_batch_size: int
    probe_epochs: int
    probe_input: str
    probe_augments: bool

    @property
    def probe_lr(self) -> float:
        """Linear-probe learning rate."""
        return self.probe.lr


PAPERS: dict[str, PaperRecipe] = {
    "attentionnce": PaperRecipe(
        name="AttentionNCE and its DCL/HCL lineage",
        source="official code liubin06/AttentioNCE, image/main.py and image/linear.py, shared with chingyaoc/DCL and joshr17/HCL",
        backbone="resnet50", head="mlp_bn", optimizer="adam", lr=1e-3, lr_scaling="none", batch_size=256, epochs=400, temperature=0.5,
        schedule="constant", warmup_epochs=0, blur_prob=0.5, blur="Gaussian blur with p = 0.5, kernel 3",
        precision="fp32", probe=Recipe("adam", lr=1e-3, weight_decay=1e-6),  # linear.py of the AttentionNCE lineage
        probe_batch_size=512, probe_epochs=100, probe_input="the full contrastive augmentation", probe_augments=True,
    ),
    "flatclr": PaperRecipe(
        name="FlatCLR (Chen et al. 2021)", source="arXiv 2107.01152; official code Junya-Chen/FlatCLR, main.py and train_fc.py",
        backbone="resnet50", head="mlp",
        optimizer="lars", lr=0.3, lr_scaling="linear", batch_size=512, epochs=100, temperature=0.1,
        schedule="cosine", warmup_epochs=10, blur_prob=0.0, blur="no blur on CIFAR (the standard path)",
        precision="fp32, fp16 autocast optional", probe=Recipe("sgd", lr=1.6, weight_decay=0.0, momentum=0.9, schedule="cosine"),  # train_fc.py
        probe_batch_size=4096, probe_epochs=100, probe_input="unaugmented images (ToTensor only)", probe_augments=False,
    ),
}
DEFAULT_PAPER = "attentionnce"  # the evaluation's default recipe, and the paper a study without one is compared with
