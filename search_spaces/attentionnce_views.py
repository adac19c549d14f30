"""AttentionNCE against InfoNCE across positive views and batch sizes (AttentionNCE's recipe).

ResNet-18 (CIFAR stem), the DCL/HCL/AttentionNCE head, Adam 1e-3 with wd 1e-6 and no
schedule, temperature 0.5, (d_pos, d_neg) = (1, 10) as published for CIFAR-10. M positive
views: infonce encodes M+1 views per image, attentionnce M+2 — compare at equal compute
with the analysis' views table. 2 losses x 4 views x 3 batch sizes = 24 trials.
"""

from search_spaces.preset import Preset

PRESET = Preset(
    name="attentionnce-views",
    description="infonce vs attentionnce x M in {1,2,4,6} x batch {64,128,256} on CIFAR-10, Adam 1e-3",
    fixed={
        "dataset": "cifar10", "backbone": "resnet18", "head": "mlp_bn", "temperature": 0.5,
        "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-6, "schedule": "constant", "epochs": 400, "gpu": True,
    },
    grid={"loss": ("infonce", "attentionnce"), "views": (1, 2, 4, 6), "batch_size": (64, 128, 256)},
    per_loss={"attentionnce": {"d_pos": 1.0, "d_neg": 10.0}},
    evaluation={"mode": "linear", "recipe": "attentionnce", "epochs": 100},
)
