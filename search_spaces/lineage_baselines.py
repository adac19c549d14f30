"""The AttentionNCE table's losses at batch 256: infonce, dcl, hcl, attentionnce, flatnce.

The shared DCL/HCL/AttentionNCE lineage setup: Adam 1e-3, wd 1e-6, temperature 0.5,
batch 256, the 2048->512->128 BN head style, 400 epochs, and the lineage's augmentation
(FlatCLR's CIFAR pipeline plus a Gaussian blur with p = 0.5, kernel 3 at 32 px); each loss's
published defaults (dcl/hcl tau+ 0.1, hcl beta 1, attentionnce d_pos 1, d_neg 10 with M = 4).
FlatNCE runs at the lineage's temperature 0.5 too, so every loss shares one setup.
5 losses x 3 seeds = 15 trials: 3 seeds feed the paired differences against InfoNCE.
"""

from search_spaces.preset import Preset
from trainables.spec.claims import LEARNING, Claim

PRESET = Preset(
    name="lineage-baselines",
    description="infonce, dcl, hcl, attentionnce (M=4), flatnce at batch 256 on CIFAR-10, Adam 1e-3, tau 0.5, blur, 3 seeds",
    fixed={
        "dataset": "cifar10", "backbone": "resnet18", "head": "mlp_bn", "batch_size": 256, "temperature": 0.5, "blur_prob": 0.5,
        "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-6, "schedule": "constant", "epochs": 400, "gpu": True,
    },
    grid={"loss": ("infonce", "dcl", "hcl", "attentionnce", "flatnce")},
    per_loss={
        "dcl": {"tau_plus": 0.1},
        "hcl": {"tau_plus": 0.1, "beta": 1.0},
        "attentionnce": {"views": 4, "d_pos": 1.0, "d_neg": 10.0},
    },
    seeds=(0, 1, 2),
    evaluation={"mode": "linear", "recipe": "attentionnce", "epochs": 100},
    claims=(
        Claim(
            id="dcl-beats-infonce",
            text="Debiased CL is better than SimCLR's InfoNCE at the same batch size",
            kind="greater",
            loss="dcl",
            against="infonce",
            source="Debiased Contrastive Learning (Chuang et al. 2020), CIFAR-10 table",
        ),
        Claim(
            id="hcl-beats-infonce",
            text="HCL is better than SimCLR's InfoNCE at the same batch size",
            kind="greater",
            loss="hcl",
            against="infonce",
            source="Hard Negative Samples (Robinson et al. 2021), CIFAR-10 table",
        ),
        LEARNING,
    ),
)
