"""FlatNCE against InfoNCE across batch sizes on CIFAR-10: the log-K curse (FlatCLR's setup).

ResNet-18 (CIFAR stem), FlatCLR's head, LARS with sqrt lr scaling (0.075 x sqrt(B), the
SimCLR small-batch rule FlatCLR's README recommends), temperature 0.1, 10 warm-up epochs
then cosine, one positive view. 2 losses x 6 batch sizes x 3 seeds = 36 trials. The linear
probe is FlatCLR's ``train_fc.py``: SGD lr 1.6, momentum 0.9, cosine, 100 epochs, at its batch
4096 (at a smaller probe batch the same lr would take a larger step per example).
"""

from search_spaces.preset import Preset
from trainables.spec.claims import LEARNING, Claim

# FlatCLR's claims (Chen et al. 2021, "Simpler, Faster, Stronger: Breaking the log-K Curse on Contrastive
# Learners with FlatNCE"), shared by every preset that runs its batch-size comparison.
FLATCLR_CLAIMS = (
    Claim(
        id="flatnce-at-least-infonce",
        text="FlatNCE at least matches InfoNCE at every batch size",
        kind="at_least",
        loss="flatnce",
        against="infonce",
        margin=0.005,  # half a point: the test-set noise of CIFAR-10's 10,000 images at ~80 %
        source="FlatCLR, abstract and the batch-size figure",
    ),
    Claim(
        id="flatnce-gap-widens-as-batch-shrinks",
        text="The gap FlatNCE − InfoNCE widens as the batch shrinks (the log-K curse)",
        kind="difference_trend",
        loss="flatnce",
        against="infonce",
        direction="decreasing",  # along increasing batch size: largest at the smallest batch
        source="FlatCLR, sections 1 and 3",
    ),
    LEARNING,
)

PRESET = Preset(
    name="flatnce-batch-size",
    description="infonce vs flatnce x batch 16..512 on CIFAR-10, ResNet-18, LARS sqrt scaling, 3 seeds",
    fixed={
        "dataset": "cifar10", "backbone": "resnet18", "head": "mlp", "views": 1, "temperature": 0.1,
        "optimizer": "lars", "lr": 0.075, "lr_scaling": "sqrt", "weight_decay": 1e-6,
        "schedule": "cosine", "warmup_epochs": 10, "epochs": 100, "gpu": True,
    },
    grid={"loss": ("infonce", "flatnce"), "batch_size": (16, 32, 64, 128, 256, 512)},
    seeds=(0, 1, 2),
    evaluation={"mode": "linear", "recipe": "flatclr", "epochs": 100, "batch_size": 4096},
    claims=FLATCLR_CLAIMS,
)
