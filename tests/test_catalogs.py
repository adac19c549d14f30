"""Backbones, heads, optimisers and schedules have one catalog each: a new one is a module and one catalog line.

The throw-away backbone (one convolution and a pooling) and the throw-away optimiser (SGD that
ignores momentum) below are registered as ``trainables/spec/choices.py`` says: a module holding
the builder and one line in ``trainables/spec/backbones.py`` or ``trainables/spec/optimizers.py``.
A fresh interpreter then shows config validation, ``--set``, the command line and its help, the
components and a pretraining epoch taking both up, with no other edit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trainables.spec import backbones, optimizers
from trainables.spec.choices import Choice

REPO = Path(__file__).resolve().parents[1]

TOY_BACKBONE = '''
from torch import nn


def tiny(image_size):
    """One 3x3 convolution and a global pooling: 8 features, whatever the image size."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten()), 8
'''

TOY_OPTIMIZER = '''
import torch


def plain_sgd(groups, lr, momentum, fused):
    """SGD without momentum, whatever the config's momentum says."""
    return torch.optim.SGD(groups, lr=lr, momentum=0.0)
'''

# Runs in a fresh interpreter: the two catalog lines first, then only the project's own code.
DRIVER = '''
import math
import re
import sys

import pytest
import torch

from trainables.spec import backbones, optimizers
from trainables.spec.choices import Choice

backbones.BACKBONES["tiny"] = Choice("tiny", "toy_backbone:tiny", "one convolution")
optimizers.OPTIMIZERS["plain_sgd"] = Choice("plain_sgd", "toy_optimizer:plain_sgd", "SGD without momentum")

from study import plan, train
from trainables.core.components import build_components
from trainables.core.optim import build_optimizer
from trainables.integration.session import LocalSession
from trainables.run.pretrain import pretrain
from trainables.spec import run_schema as rs
from trainables.spec.pretrain_config import from_dict
from trainables.spec.validation import ConfigError

TINY = {"dataset": "digits", "head": "mlp", "limit_train": 128, "batch_size": 64, "epochs": 1, "knn_k": 10, "seed": 1}

# config validation: the names are allowed, a typo of one is refused naming it as the closest.
cfg = from_dict(TINY | {"backbone": "tiny", "optimizer": "plain_sgd"})
for values, message in (({"backbone": "tinny"}, "did you mean 'tiny'"), ({"optimizer": "plain_sdg"}, "did you mean 'plain_sgd'")):
    with pytest.raises(ConfigError, match=re.escape(message)):
        from_dict(values)
assert from_dict(plan.parse_overrides(["backbone=tiny", "optimizer=plain_sgd"])).backbone == "tiny"

# the command line: listed in --help with its summary, accepted as a flag.
parser = train.build_parser()
text = " ".join(parser.format_help().split())
assert "tiny (one convolution)" in text and "plain_sgd (SGD without momentum)" in text, text
args = parser.parse_args(["--backbone", "tiny", "--optimizer", "plain_sgd", "--dataset", "digits"])
assert (train.config_from_args(args).backbone, train.config_from_args(args).optimizer) == ("tiny", "plain_sgd")
assert "toy_backbone" not in sys.modules and "toy_optimizer" not in sys.modules  # validation and --help imported neither builder

# building: the components hold the toy backbone, the optimiser is the toy's.
c = build_components(cfg)
assert c.model.feature_dim == 8 and isinstance(c.model.backbone[0], torch.nn.Conv2d)
optimizer = build_optimizer(cfg.optimizer, c.model, 0.1, weight_decay=0.0, momentum=0.9)
assert type(optimizer) is torch.optim.SGD and all(group["momentum"] == 0.0 for group in optimizer.param_groups)

# a pretraining epoch trains through both.
session = LocalSession(sys.argv[1])
trained = pretrain(cfg, session)
assert trained.components.model.feature_dim == 8 and math.isfinite(session.reported[-1][rs.M_TRAIN_LOSS])
print("registered")
'''


def test_a_throwaway_backbone_and_optimiser_are_taken_up_everywhere_from_their_module_and_one_catalog_line(tmp_path: Path) -> None:
    (tmp_path / "toy_backbone.py").write_text(TOY_BACKBONE)
    (tmp_path / "toy_optimizer.py").write_text(TOY_OPTIMIZER)
    (tmp_path / "driver.py").write_text(textwrap.dedent(DRIVER))
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run([sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "run")], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip().endswith("registered")


CATALOGS = {"backbone": backbones.BACKBONES, "head": backbones.HEADS, "optimizer": optimizers.OPTIMIZERS, "schedule": optimizers.SCHEDULES}


@pytest.mark.parametrize("field", list(CATALOGS))
def test_every_catalog_entry_resolves_to_a_builder(field: str) -> None:
    """Each line's location names a callable, and its key is its own name (a mistyped line is found here, not in a worker)."""
    for name, choice in CATALOGS[field].items():
        assert choice.name == name and callable(choice.load()), (field, name)


def test_a_location_that_names_nothing_fails_when_loaded() -> None:
    """The check above can fail: a line pointing at a builder that is not there raises on load."""
    with pytest.raises(AttributeError, match="no_such_backbone"):
        Choice("gone", "trainables.core.models:no_such_backbone", "a missing builder").load()


def test_importing_the_catalogs_and_the_config_imports_no_torch() -> None:
    code = (
        "import sys, trainables.spec.backbones, trainables.spec.optimizers, trainables.spec.papers, trainables.spec.pretrain_config, "
        "trainables.spec.eval_config, trainables.spec.yaml_config; assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)}, check=True)
