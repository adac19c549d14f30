"""cifar10-cpu under the fair tuning protocol: each (loss, batch size) cell tuned alike first.

Every one of the 4 cells gets its own Optuna TPE study of 4 trials over the base lr (LARS, sqrt
scaling, log-uniform in [0.02, 0.3]) and τ (the loss catalog's range, log-uniform in [0.05, 1]),
run at a seed of its
own and selected on the final validation kNN accuracy; the selected (lr, τ) of each cell is
then re-run with the study's 10 seeds, and only those 40 re-runs are the study's trials and
enter its table. 16 tuning trials + 40 = 56 trials: about 1.4 times cifar10-cpu's time.
"""

import dataclasses

from search_spaces.cifar10_cpu import PRESET as CIFAR10_CPU
from search_spaces.preset import Tuning

PRESET = dataclasses.replace(
    CIFAR10_CPU,
    name="cifar10-cpu-tuned",
    description="cifar10-cpu with lr and tau tuned per (loss, batch) cell: 4 TPE trials each, then 10 seeds of the selection",
    tuning=Tuning(samples=4, lr=(0.02, 0.3)),
)
