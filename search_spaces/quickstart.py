"""The offline CPU study that ``make demo`` runs: a few losses x 2 batch sizes on digits.

scikit-learn's bundled digits (1,797 real 8x8 images, upscaled), the small backbone, a few
epochs, 3 seeds shared by the losses (the fewest that give the paired differences an interval);
a linear probe on cached features after each pretraining. Minutes on a 2-core laptop, with real
MLflow runs and a real table.
"""

from search_spaces.preset import Preset
from trainables.spec.claims import LEARNING

PRESET = Preset(
    name="quickstart",
    description="infonce, flatnce, dcl x batch {32, 128} on bundled digits, small backbone, CPU, 3 seeds",
    fixed={
        "dataset": "digits", "backbone": "small", "head": "mlp_bn", "views": 1, "temperature": 0.2,
        "optimizer": "adam", "lr": 2e-3, "weight_decay": 1e-6, "schedule": "constant", "epochs": 5,
        "n_eval_epochs": 1, "n_save_epochs": 5, "workers": 1, "cpus_per_worker": 1.0,
    },
    grid={"loss": ("infonce", "flatnce", "dcl"), "batch_size": (32, 128)},
    seeds=(0, 1, 2),
    # 1,300 training images: small probe batches give the linear layer enough steps.
    evaluation={"mode": "linear", "recipe": "attentionnce", "epochs": 50, "batch_size": 64},
    claims=(LEARNING,),  # a demo, not a paper: only the claim every study makes
)
