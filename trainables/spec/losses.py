"""The one list of contrastive losses and what the rest of the project needs to know about each.

Torch-free, so that config validation, the command line, the tables and the search spaces can
read it without importing a loss. A loss's hyperparameters and their defaults are read from its
class's ``__init__`` signature (the source, parsed, not imported); what any loss taking a given
hyperparameter allows, and how tables and tuners name and search it, is in ``HYPERPARAMETERS``.
Order matters: tables list losses and the config lists hyperparameter fields in this order.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from trainables.spec import run_schema as rs
from trainables.spec.lazy import resolve

NOT_HYPERPARAMETERS = ("self", "gather_distributed")  # __init__ arguments every loss has


@dataclass(frozen=True)
class Hyperparameter:
    """A loss hyperparameter: what every loss taking it allows, its table symbol, its tuning range.

    Attributes:
        name: The keyword of the loss's ``__init__`` and the config field of the same name.
        meaning: A few words for ``--help``.
        symbol: Its name in table footnotes.
        low: Smallest allowed value (excluded when ``low_open``).
        high: Values must be below it (``math.inf``: no upper bound).
        low_open: Whether ``low`` itself is refused.
        search: (low, high, log scale) a tuner samples from.
    """

    name: str
    meaning: str
    symbol: str
    low: float
    high: float = math.inf
    low_open: bool = False
    search: tuple[float, float, bool] = (0.0, 1.0, False)

    def allowed(self) -> str:
        """The allowed values in words, e.g. '> 0' or 'in [0, 1)'."""
        if math.isinf(self.high):
            return f"{'>' if self.low_open else '>='} {self.low}"
        return f"in {'(' if self.low_open else '['}{self.low}, {self.high})"

    def problem(self, value: float | None) -> str | None:
        """Why ``value`` is refused, naming the field, value and what is allowed; None when allowed."""
        if value is None:
            return None
        finite = isinstance(value, int) or math.isfinite(value)  # ints are finite, however large
        above = value > self.low if self.low_open else value >= self.low
        if finite and above and value < self.high:
            return None
        number = "a finite number " if not finite and math.isinf(self.high) else ""
        return f"{self.name}={value!r} is not allowed; it must be {number}{self.allowed()}"

    def check(self, value: float) -> float:
        """``value`` as a float, or a ValueError saying why it is refused."""
        problem = self.problem(value)
        if problem:
            raise ValueError(problem)
        return float(value)


HYPERPARAMETERS: dict[str, Hyperparameter] = {
    h.name: h
    for h in (
        Hyperparameter("temperature", "softmax temperature tau", "τ", 0, low_open=True, search=(0.05, 1.0, True)),
        Hyperparameter("d_pos", "positive-attention scale", "d_pos", 0, low_open=True, search=(0.25, 4.0, True)),
        Hyperparameter("d_neg", "negative-attention scale", "d_neg", 0, low_open=True, search=(0.5, 20.0, True)),
        Hyperparameter("tau_plus", "class prior tau+", "τ⁺", 0, 1, search=(0.0, 0.2, False)),
        Hyperparameter("beta", "hardness concentration beta", "β", 0, search=(0.0, 3.0, False)),
    )
}


@dataclass(frozen=True)
class LossEntry:
    """One loss.

    Attributes:
        name: The config's ``loss`` value.
        label: Its name in tables and plots.
        colour: Its matplotlib colour in plots.
        location: ``"module:Class"`` of the ``ContrastiveLoss`` subclass (imported only by ``load``).
        summary: A few words for ``--help`` (the paper, or what it changes).
        anchor_views: V = M + anchor_views encoder passes per image for M positive views per anchor:
            1 where every view is an anchor of the others, 2 for AttentionNCE's two anchors.
        negatives_from_anchors: Whether the negatives are only the anchor views of other images
            (AttentionNCE), not all their views; the similarity matrix is then (B·anchor_views)².
        diagnostics: Metric names of (the mean probability the loss gives the positive, one minus it).
        presets: Published hyperparameters by dataset name (the config's ``published_hyperparameters``).
        clr: Its value of FlatCLR's ``--clr`` flag, which the training command accepts too.
    """

    name: str
    label: str
    colour: str
    location: str
    summary: str
    anchor_views: int = 1
    negatives_from_anchors: bool = False
    diagnostics: tuple[str, str] = (rs.M_POS_PROB, rs.M_GRAD_SCALE)
    presets: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    clr: str | None = None

    def views_per_image(self, views: int) -> int:
        """V, the encoder passes per image, for M = ``views`` positive views per anchor."""
        return views + self.anchor_views

    @property
    def defaults(self) -> dict[str, float]:
        """Each hyperparameter the class takes, with its default, in signature order."""
        return signature_defaults(self.location)

    @property
    def hyperparameters(self) -> tuple[str, ...]:
        return tuple(self.defaults)

    def load(self) -> type:
        """The loss class (this imports torch)."""
        return resolve(self.location)


CATALOG: dict[str, LossEntry] = {
    e.name: e
    for e in (
        LossEntry("infonce", "InfoNCE", "tab:blue", "trainables.core.losses.infonce:InfoNCELoss", "SimCLR's NT-Xent", clr="simclr"),
        LossEntry("flatnce", "FlatNCE", "tab:orange", "trainables.core.losses.flatnce:FlatNCELoss", "FlatCLR", clr="flatclr"),
        LossEntry("dcl", "Debiased CL", "tab:green", "trainables.core.losses.debiased:DebiasedLoss", "Debiased CL"),
        LossEntry("hcl", "HCL", "tab:red", "trainables.core.losses.debiased:HardNegativeLoss", "hard negatives"),
        LossEntry(
            "attentionnce", "AttentionNCE", "tab:purple", "trainables.core.losses.attentionnce:AttentionNCELoss", "attention over views",
            anchor_views=2, negatives_from_anchors=True, diagnostics=(rs.M_PROTOTYPE_PROB, rs.M_PROTOTYPE_GRAD_SCALE),
            presets={  # (d_pos, d_neg) from the official README, per dataset
                "cifar10": {"d_pos": 1.0, "d_neg": 10.0},
                "cifar100": {"d_pos": 1.0, "d_neg": 10.0},
                "stl10": {"d_pos": 2.0, "d_neg": 0.5},
                "tinyimagenet": {"d_pos": 4.0, "d_neg": 1.0},
            },
        ),
    )
}
BASELINE = "infonce"  # the loss the others are compared with


def hyperparameter_names() -> tuple[str, ...]:
    """Every hyperparameter some loss takes, in ``HYPERPARAMETERS`` order (the config's fields)."""
    taken = {name for entry in CATALOG.values() for name in entry.hyperparameters}
    return tuple(name for name in HYPERPARAMETERS if name in taken)


def preset_names() -> tuple[str, ...]:
    """Every dataset name some loss publishes hyperparameters for."""
    return tuple(dict.fromkeys(preset for entry in CATALOG.values() for preset in entry.presets))


def preset_hyperparameters() -> tuple[str, ...]:
    """The hyperparameters some published preset sets (what an explicit preset choice replaces)."""
    return tuple(dict.fromkeys(hp for entry in CATALOG.values() for values in entry.presets.values() for hp in values))


def takes(name: str) -> str:
    """The hyperparameters of loss ``name`` as a message fragment."""
    return ", ".join(CATALOG[name].hyperparameters)


def field_help() -> dict[str, str]:
    """``--help`` text of the config fields the catalog defines: loss, views, presets, hyperparameters."""
    rules: dict[int, list[str]] = {}
    for entry in CATALOG.values():
        rules.setdefault(entry.anchor_views, []).append(entry.name)
    texts = {
        "loss": "contrastive loss: " + ", ".join(f"{e.name} ({e.summary})" for e in CATALOG.values()),
        "views": "M, positive views per anchor; encoded views per image: "
        + "; ".join(f"{'/'.join(names)} M+{extra}" for extra, names in rules.items()),
        "published_hyperparameters": "take the hyperparameters published for this dataset ('dataset': the run's own): "
        + "; ".join(f"{e.name}: {', '.join(e.presets)}" for e in CATALOG.values() if e.presets),
    }
    for name in hyperparameter_names():
        by_default: dict[float, list[str]] = {}
        for entry in CATALOG.values():
            if name in entry.defaults:
                by_default.setdefault(entry.defaults[name], []).append(entry.name)
        defaults = ", ".join(f"{value:g} for {'/'.join(losses)}" for value, losses in by_default.items())
        texts[name] = f"{HYPERPARAMETERS[name].meaning}, {HYPERPARAMETERS[name].allowed()} (unset: {defaults})"
    return texts


# --- reading a class's signature without importing it -------------------------------------------


@functools.cache
def signature_defaults(location: str) -> dict[str, float]:
    """The keyword defaults of ``module:Class``'s ``__init__`` (inherited where it has none).

    Raises:
        ValueError: the class is not found, or an argument has no literal default, or names no
            hyperparameter of ``HYPERPARAMETERS``.
    """
    module, _, name = location.partition(":")
    init = _find_init(module, name)
    args = [*init.args.posonlyargs, *init.args.args]
    defaults: list[ast.expr | None] = [None] * (len(args) - len(init.args.defaults)) + list(init.args.defaults)
    pairs = list(zip(args, defaults)) + list(zip(init.args.kwonlyargs, init.args.kw_defaults))
    found: dict[str, float] = {}
    for arg, default in pairs:
        if arg.arg in NOT_HYPERPARAMETERS:
            continue
        if default is None:
            raise ValueError(f"{location}: argument {arg.arg!r} has no default; every hyperparameter needs one")
        if arg.arg not in HYPERPARAMETERS:
            raise ValueError(f"{location}: argument {arg.arg!r} is not in catalog.HYPERPARAMETERS; add its range there")
        try:
            found[arg.arg] = ast.literal_eval(default)
        except ValueError:
            raise ValueError(f"{location}: the default of {arg.arg!r} must be a number written out, not {ast.unparse(default)}") from None
    return found


def _module_tree(module: str) -> ast.Module:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"loss module {module!r} is not found")
    return ast.parse(Path(spec.origin).read_text(encoding="utf-8"))


def _find_init(module: str, name: str) -> ast.FunctionDef:
    """The ``__init__`` that ``module.name`` runs: its own, or that of its first base, followed
    through the module's classes and ``from x import y`` imports."""
    tree = _module_tree(module)
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    if name not in classes:
        raise ValueError(f"class {name!r} is not found in {module}")
    cls = classes[name]
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            return node
    if not cls.bases or not isinstance(cls.bases[0], ast.Name):
        raise ValueError(f"{module}:{name} has no __init__ and no base class named plainly")
    base = cls.bases[0].id
    if base in classes:
        return _find_init(module, base)
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and any((a.asname or a.name) == base for a in node.names):
            original = next(a.name for a in node.names if (a.asname or a.name) == base)
            return _find_init(node.module, original)
    raise ValueError(f"{module}:{name}: base class {base!r} is neither defined nor imported by name there")

