"""flatnce-batch-size scaled to a 2-core CPU on real CIFAR-10: the study anyone can run today.

The small backbone on a 5,000-image training subset for a few epochs, 2 seeds, the same
losses and lr rule as the GPU preset. Absolute accuracies are far below the papers'; the
point is a complete, real pipeline whose table shows learning (kNN well above 10% chance).
"""

from search_spaces.preset import Preset

PRESET = Preset(
    name="cifar10-cpu",
    description="infonce vs flatnce x batch {32, 64, 128, 256} on a CIFAR-10 subset, small backbone, CPU, 2 seeds",
    fixed={
        "dataset": "cifar10", "data_dir": "../shared/data/cifar10", "limit_train": 5000, "backbone": "small", "head": "mlp",
        "views": 1, "temperature": 0.1, "optimizer": "lars", "lr": 0.075, "lr_scaling": "sqrt", "weight_decay": 1e-6,
        "schedule": "cosine", "warmup_epochs": 1, "epochs": 5, "n_eval_epochs": 1, "n_save_epochs": 5,
        "workers": 1, "cpus_per_worker": 1.0,
    },
    grid={"loss": ("infonce", "flatnce"), "batch_size": (32, 64, 128, 256)},
    seeds=(0, 1),
    evaluation={"mode": "linear", "recipe": "attentionnce", "epochs": 50},
)
