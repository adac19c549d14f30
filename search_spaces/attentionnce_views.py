"""AttentionNCE against InfoNCE across positive views and batch sizes (AttentionNCE's recipe).

ResNet-18 (CIFAR stem), the DCL/HCL/AttentionNCE head, Adam 1e-3 with wd 1e-6 and no
schedule, temperature 0.5, (d_pos, d_neg) as AttentionNCE published them for the study's dataset
(``published_hyperparameters="dataset"``; the values live in the loss catalog: (1, 10) for CIFAR-10, (4, 1)
with ``--set dataset=tinyimagenet``), and the lineage's augmentation: FlatCLR's CIFAR pipeline plus a Gaussian blur with p = 0.5 (kernel 3
at 32 px), as AttentionNCE's ``utils.py`` applies it to all six views.

Equal compute: InfoNCE encodes V = M + 1 views per image, AttentionNCE V = M + 2. InfoNCE
therefore runs M = 1..7 (V = 2..8) and AttentionNCE M in {1, 2, 4, 6} (V = 3, 4, 6, 8): the
views table compares both at M in {1, 2, 4, 6}, and the equal-compute table at the same
V x epochs for V in {3, 4, 6, 8}, so that no column is won by the only loss present.
(7 + 4) views x 3 batch sizes x 3 seeds = 99 trials; 3 seeds are what a paired test needs.
"""

from search_spaces.preset import Preset
from trainables.spec.claims import LEARNING, Claim
from trainables.spec.losses import CATALOG
from trainables.spec.pretrain_config import FROM_DATASET

PUBLISHED = "; ".join(f"{d} ({v['d_pos']:g}, {v['d_neg']:g})" for d, v in CATALOG["attentionnce"].presets.items())

PRESET = Preset(
    name="attentionnce-views",
    description="infonce (M=1..7) vs attentionnce (M in {1,2,4,6}) x batch {64,128,256} on CIFAR-10, Adam 1e-3, blur, 3 seeds; "
    f"attentionnce's (d_pos, d_neg) follow the dataset as published: {PUBLISHED}",
    fixed={
        "dataset": "cifar10", "backbone": "resnet18", "head": "mlp_bn", "temperature": 0.5, "blur_prob": 0.5,
        "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-6, "schedule": "constant", "epochs": 400, "gpu": True,
    },
    grid={"loss": ("infonce", "attentionnce"), "views": (1, 2, 4, 6), "batch_size": (64, 128, 256)},
    per_loss={"attentionnce": {"published_hyperparameters": FROM_DATASET}},
    per_loss_axes={"infonce": {"views": (1, 2, 3, 4, 5, 6, 7)}},
    seeds=(0, 1, 2),
    evaluation={"mode": "linear", "recipe": "attentionnce", "epochs": 100},
    claims=(
        Claim(
            id="attentionnce-beats-infonce-at-equal-compute",
            text="AttentionNCE is better than InfoNCE at equal encoder passes per image",
            kind="greater",
            loss="attentionnce",
            against="infonce",
            axis="equal_compute",
            source="AttentionNCE, the views ablation read at equal V x epochs",
        ),
        Claim(
            id="attentionnce-improves-with-views",
            text="AttentionNCE improves with the number of positive views M",
            kind="monotone",
            loss="attentionnce",
            axis="views",
            direction="increasing",
            source="AttentionNCE, the views ablation",
        ),
        LEARNING,
    ),
)
