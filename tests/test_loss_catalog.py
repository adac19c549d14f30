"""The loss catalog is the one list of losses: a new loss needs three edits, and no other file names one.

The throw-away loss below (InfoNCE with an additive margin m on the positive, a hyperparameter
no other loss takes) is registered exactly as the recipe in ``trainables/core/losses/__init__.py``
says: a module, a catalog line (plus the new hyperparameter's line) and a reference line. A fresh
interpreter then shows config validation, ``--set``, the command line, ``build_loss``, the table
labels and symbols, the plot colour, the tuning space and the loss benchmark taking it up.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import textwrap
import tokenize
from pathlib import Path

from trainables.spec.losses import CATALOG, HYPERPARAMETERS

REPO = Path(__file__).resolve().parents[1]

TOY_MODULE = '''
import torch
import torch.nn.functional as F

from trainables.core.losses.base import ContrastiveLoss, LossTerms
from trainables.spec.losses import HYPERPARAMETERS
from trainables.core.losses.infonce import decoupled_logits


class MarginLoss(ContrastiveLoss):
    """InfoNCE with the positive's similarity lowered by a margin m: softplus(v + m / tau)."""

    name = "margin_nce"

    def __init__(self, temperature: float = 0.2, margin: float = 0.5, gather_distributed: bool = True) -> None:
        super().__init__(temperature, gather_distributed)
        self.margin = HYPERPARAMETERS["margin"].check(margin)

    def terms(self, local, glob, offset):
        v = decoupled_logits(local, glob, offset, self.temperature) + self.margin / self.temperature
        return LossTerms(terms=F.softplus(v), pos_prob=torch.sigmoid(-v))
'''

# Runs in a fresh interpreter: the three registrations first, then only the project's own code.
DRIVER = '''
import argparse
import re

import numpy as np
import pytest

import loss_references as ref
import test_losses
from trainables.spec import losses as catalog

# 1. the module: toy_loss.py above.  2. the catalog line (and the new hyperparameter's line).
catalog.HYPERPARAMETERS["margin"] = catalog.Hyperparameter("margin", "additive margin on the positive", "m", 0, search=(0.0, 1.0, False))
catalog.CATALOG["margin_nce"] = catalog.LossEntry(
    "margin_nce", "Margin NCE", "tab:brown", "toy_loss:MarginLoss", "InfoNCE with a margin",
    presets={"cifar10": {"margin": 0.3}, "digits": {"margin": 0.1}},
)
# 3. the reference line.
def margin_reference(z, tau, m):
    return float(np.mean([-(sp - m / tau) + np.log(np.exp(sp - m / tau) + np.exp(n).sum()) for sp, n in ref.pairs(z, tau)]))
test_losses.REFERENCES["margin_nce"] = test_losses.Reference(
    lambda z, f, hp: margin_reference(z, hp["temperature"], hp["margin"]),
    [{"temperature": 0.2, "margin": 0.5}, {"temperature": 0.5, "margin": 0.1}],
)

from analysis import labels, plots, selection
from benchmarks import losses as benchmark
from search_spaces import tpe_lr
from study import plan, train
from trainables.spec.validation import ConfigError
from trainables.spec.pretrain_config import from_dict
from trainables.core.losses import build_loss

# build_loss: the signature's defaults, and the float64 reference's value and gradient.
loss = build_loss("margin_nce")
assert (loss.temperature, loss.margin) == (0.2, 0.5)
for hp in test_losses.REFERENCES["margin_nce"].settings:
    test_losses.check_value("margin_nce", hp, (4, 2, 8), test_losses.REFERENCES)
    test_losses.check_gradient("margin_nce", hp, test_losses.REFERENCES)

# config validation: a field for the new hyperparameter, its range, and only for its loss.
cfg = from_dict({"loss": "margin_nce", "margin": 0.3, "views": 2})
assert cfg.loss_hyperparameters() == {"margin": 0.3} and cfg.views_per_image == 3
for values, message in (
    ({"loss": "margin_nce", "margin": -1.0}, "margin=-1.0 is not allowed; it must be >= 0"),
    ({"loss": "infonce", "margin": 0.3}, "margin=0.3 does not apply to loss='infonce'"),
    ({"loss": "margin_nce", "tau_plus": 0.1}, "which takes: temperature, margin"),
):
    with pytest.raises(ConfigError, match=re.escape(message)):
        from_dict(values)
assert from_dict({"loss": "margin_nce"} | plan.parse_overrides(["margin=0.25"])).margin == 0.25
# published settings by dataset: its own, not another loss's, and a given value wins over them.
assert from_dict({"loss": "margin_nce", "published_hyperparameters": "digits"}).loss_hyperparameters() == {"margin": 0.1}
assert from_dict({"loss": "margin_nce", "published_hyperparameters": "digits", "margin": 0.2}).loss_hyperparameters() == {"margin": 0.2}
for values, message in (
    ({"loss": "margin_nce", "published_hyperparameters": "stl10"}, "not published for loss='margin_nce'; allowed: cifar10, digits"),
    ({"loss": "attentionnce", "published_hyperparameters": "digits"}, "not published for loss='attentionnce'"),
):
    with pytest.raises(ConfigError, match=re.escape(message)):
        from_dict(values)

# the command line: listed in --help, a flag for the hyperparameter.
parser = train.build_parser()
assert "margin_nce (InfoNCE with a margin)" in " ".join(parser.format_help().split())
assert "--margin" in parser.format_help()
assert train.config_from_args(parser.parse_args(["--loss", "margin_nce", "--margin", "0.4"])).margin == 0.4

# tables and plots: its label, its symbol in footnotes, its colour.
assert labels.loss_label("margin_nce") == "Margin NCE" and labels.loss_order(["margin_nce", "infonce"]) == ["infonce", "margin_nce"]
assert selection.CONFIG_SYMBOLS["param.margin"] == "m" and plots.LOSS_COLORS["margin_nce"] == "tab:brown"

# the tuning space samples its hyperparameters over their catalog range.
class Trial:
    def __init__(self):
        self.params = {}
    def suggest_categorical(self, name, choices):
        assert name != "loss" or "margin_nce" in choices
        self.params[name] = "margin_nce" if name == "loss" else choices[0]
        return self.params[name]
    def suggest_float(self, name, low, high, log=False):
        self.params[name] = low
        return low
trial = Trial()
tpe_lr.space(trial)
assert set(trial.params) == {"loss", "batch_size", "lr", "temperature", "margin"}

# the loss benchmark: in its default run, timed, its missing dense version said, not a KeyError.
args = benchmark.parse_args(["--no-record", "--repeats", "5", "--min-seconds", "0"])
assert "margin_nce" in args.losses
entry = benchmark.bench_config("margin_nce", 16, 1, args, benchmark.torch.device("cpu"))
assert entry["ours"]["median_ms"] > 0 and "no dense version" in entry["reference"]["skipped"]
print("registered")
'''


def test_a_throwaway_loss_needs_only_its_module_catalog_line_and_reference(tmp_path: Path) -> None:
    (tmp_path / "toy_loss.py").write_text(TOY_MODULE)
    (tmp_path / "driver.py").write_text(textwrap.dedent(DRIVER))
    path = os.pathsep.join([str(tmp_path), str(REPO), str(REPO / "tests")])
    env = os.environ | {"PYTHONPATH": path}
    done = subprocess.run([sys.executable, str(tmp_path / "driver.py")], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip().endswith("registered")


def test_importing_the_catalog_and_the_package_imports_no_torch() -> None:
    code = "import sys, trainables.core.losses, trainables.spec.losses as c; c.CATALOG['hcl'].defaults; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)}, check=True)


def test_every_hyperparameter_row_is_taken_by_some_loss() -> None:
    taken = {name for entry in CATALOG.values() for name in entry.hyperparameters}
    assert taken == set(HYPERPARAMETERS)


def test_readme_losses_table_lists_exactly_the_catalog() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## The losses", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)`", section, flags=re.MULTILINE)
    assert rows == list(CATALOG)


# --- no file outside the losses names a loss or a loss hyperparameter ---------------------------

# Declarations: data, not logic. Study presets say which losses they compare and with what
# per-loss settings; the papers' published numbers say which loss each number is for; the
# offline check's and the GPU study's commands choose the losses they run, as a preset would.
DECLARATIONS = ("search_spaces/", "analysis/reported.py", "tools/offline_check.py", "benchmarks/gpu_study.py")
EXEMPT = ("trainables/core/losses/", "trainables/spec/losses.py", "tests/", "docs/", *DECLARATIONS)
# Strings that spell a loss's or hyperparameter's name but name something else, by file and name.
OTHER_MEANINGS: dict[tuple[str, str], str] = {
    ("trainables/spec/papers.py", "attentionnce"): "a paper recipe named after the AttentionNCE code base, not the loss",
    ("analysis/conditions.py", "temperature"): "the paper recipe's field holding the temperature that paper used",
    ("trainables/spec/run_schema.py", "temperature"): "the MLflow param every loss logs, typed for the analysis",
}
NAMES = (*CATALOG, *HYPERPARAMETERS)
# Loss names and hyperparameter names that are no English word (tau_plus): as a whole word, not
# inside a longer name (knn_temperature), a dashed preset name (flatnce-batch-size) or a LaTeX
# command (\\beta). Names that are English words (temperature, beta) only as a key: the whole
# string, ``name=`` or ``--name``, so that prose about the kNN's temperature is not a hit.
_CODED = [name for name in NAMES if name in CATALOG or "_" in name]
_WORDS = [name for name in NAMES if name not in _CODED]
WORD = re.compile(
    r"(?<![\w\-\\])(" + "|".join(map(re.escape, _CODED)) + r")(?![\w-])"
    + "".join(rf"|^[\"']({re.escape(w)})[\"']$|(?<![\w-])(?:--)?({re.escape(w)})(?==)|--({re.escape(w)})\b" for w in _WORDS)
)


def named_outside_the_catalog(path: str, root: Path = REPO) -> list[str]:
    """Lines of ``path`` naming a loss or hyperparameter in a string (docstrings are docs) or as an attribute."""
    tokens = list(tokenize.generate_tokens(io.StringIO((root / path).read_text(encoding="utf-8")).readline))
    statement_start = {tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.NL, tokenize.ENCODING}
    hits, previous = [], tokenize.NEWLINE
    for i, token in enumerate(tokens):
        docstring = token.type == tokenize.STRING and previous in statement_start and tokens[i + 1].type == tokenize.NEWLINE
        if token.type == tokenize.STRING and not docstring:
            found = [next(group for group in match if group) for match in WORD.findall(token.string)]
            names = [name for name in found if (path, name) not in OTHER_MEANINGS]
            hits += [f"{token.start[0]}: {name} in {token.string[:80]}" for name in names]
        elif token.type == tokenize.NAME and token.string in NAMES and tokens[i - 1].string == ".":
            hits += [] if (path, token.string) in OTHER_MEANINGS else [f"{token.start[0]}: .{token.string}"]
        if token.type not in (tokenize.COMMENT, tokenize.NL):
            previous = token.type
    return hits


def test_no_code_outside_the_losses_names_a_loss_or_its_hyperparameters() -> None:
    """Outside trainables/core/losses/, the catalog (trainables/spec/losses.py), tests and docs, loss names and loss hyperparameter names reach
    code only through the catalog: as string literals they would be a second list that goes stale.
    Study presets (search_spaces/), the papers' published numbers (analysis/reported.py) and the
    offline check's and GPU study's commands are declarations and may name losses and per-loss settings. Docstrings and comments are prose.
    ``OTHER_MEANINGS`` lists, with the reason, strings that spell such a name but mean something else."""
    files = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    found = {name: hits for name in files if not name.startswith(EXEMPT) and (hits := named_outside_the_catalog(name))}
    assert found == {}


def test_the_scan_finds_a_loss_named_in_code(tmp_path: Path) -> None:
    """The scan above can fail: a string naming a loss, or an attribute named for a hyperparameter, is found."""
    (tmp_path / "probe.py").write_text('"""Docstrings may say infonce."""\nLOSS = "infonce"\nx = cfg.tau_plus  # tau_plus\n')
    assert named_outside_the_catalog("probe.py", tmp_path) == ['2: infonce in "infonce"', "3: .tau_plus"]
