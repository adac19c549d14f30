"""Bad input, fuzzed: configurations and command lines, valid and invalid, checked against a table of rules.

The table below is written from the issue and the flags' help, not read from trainables/spec/pretrain_config.py:
batch_size >= 2, views >= 1, epochs >= 1, lr > 0, workers >= 1 dividing batch_size, names from their
registries, loss hyperparameters only for their losses, unknown keys and wrong types rejected. The
losses, their hyperparameters and ranges are generated from the loss catalog, so that a new loss is
fuzzed with no edit here; tests/test_losses.py checks the catalog's ranges against the issue's
(temperature, d_pos and d_neg > 0, tau_plus in [0, 1), beta >= 0). Beyond the issue's
list it holds what the data and training code need: numbers are finite, val_fraction is in (0, 1)
(``load_dataset`` holds out a validation split and keeps a training split), seed is in [0, 2^32)
(the batch order's seed must be >= 0), the experiment has a name, tags map strings to strings,
a cosine schedule's warm-up ends before the last epoch, and the per-channel statistics data_mean and
data_std are three finite numbers each (one per RGB channel; a std > 0), given both or neither.

Every valid configuration must be accepted; every invalid one rejected with a ConfigError (or, on a
command line, argparse's error) naming every offending field, before Ray starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import math
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from search_spaces import PRESETS
from study import run_sweep, train
from study.plan import parse_overrides
from trainables.core.data import load_dataset
from trainables.spec.dataset_errors import DatasetNotFoundError
from trainables.spec.datasets import dataset_spec
from trainables.spec.losses import CATALOG, hyperparameter_names, preset_names
from trainables.spec.losses import HYPERPARAMETERS as LOSS_HYPERPARAMETERS
from trainables.spec.pretrain_config import PretrainConfig, from_dict
from trainables.spec.validation import ConfigError
from trainables.spec.yaml_config import from_yaml

# --- the rules --------------------------------------------------------------------------------

LOSSES = tuple(CATALOG)
PRESET = "published_hyperparameters"  # the config field naming a dataset whose published hyperparameters a loss takes
TAKES = {name: {*entry.hyperparameters, *([PRESET] if entry.presets else [])} for name, entry in CATALOG.items()}
HYPERPARAMETERS = (*hyperparameter_names(), PRESET)


@dataclass(frozen=True)
class Rule:
    kind: type
    low: float | None = None  # None: unbounded
    high: float | None = None
    low_open: bool = False
    high_open: bool = True
    optional: bool = False  # None allowed
    names: tuple[str, ...] | None = None
    non_empty: bool = False
    pattern: str | None = None  # a str must match it whole; a dict's keys must
    length: int | None = None  # a list's: of numbers within low and high

    @property
    def element(self) -> Rule:
        """The rule of each number of a list."""
        return Rule(float, self.low, self.high, self.low_open, self.high_open)

    def type_ok(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.kind is bool:
            return isinstance(value, bool)
        if self.kind is int:
            return isinstance(value, int) and not isinstance(value, bool)
        if self.kind is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.kind is dict:
            return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        if self.kind is tuple:  # a YAML list; its numbers must be finite
            return isinstance(value, (list, tuple)) and all(Rule(float).type_ok(v) and finite(v) for v in value)
        return isinstance(value, self.kind)

    def allows_text(self, value: str) -> bool:
        if self.pattern is not None:
            return re.fullmatch(self.pattern, value) is not None
        return bool(value.strip()) or not self.non_empty

    def allows(self, value: Any) -> bool:
        """Whether a value of the right type is allowed."""
        if value is None:
            return self.optional
        if self.names is not None:
            return value in self.names
        if self.kind is str:
            return self.allows_text(value)
        if self.kind is dict:
            return len(value) <= 100 and all(re.fullmatch(self.pattern or ".*", k) for k in value)
        if self.kind is tuple:
            return len(value) == self.length and all(self.element.allows(v) for v in value)
        if self.kind in (int, float):
            if self.kind is float and not finite(value):
                return False
            above = self.low is None or (value > self.low if self.low_open else value >= self.low)
            below = self.high is None or (value < self.high if self.high_open else value <= self.high)
            return above and below
        return True


def finite(value: float) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int too large for a float
        return False


def hyperparameter_rule(name: str) -> Rule:
    spec = LOSS_HYPERPARAMETERS[name]
    return Rule(float, spec.low, None if math.isinf(spec.high) else spec.high, low_open=spec.low_open, optional=True)


POSITIVE = {"low": 0, "low_open": True}
UP_TO = {"high_open": False}  # a closed upper bound
NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"  # run and experiment names: safe as folders and in MLflow filters
RULES: dict[str, Rule] = {
    "loss": Rule(str, names=LOSSES),
    "views": Rule(int, 1, 64, **UP_TO),
    **{name: hyperparameter_rule(name) for name in hyperparameter_names()},
    PRESET: Rule(str, names=preset_names(), optional=True),
    "dataset": Rule(str, names=("cifar10", "cifar100", "stl10", "imagefolder", "digits", "tinyimagenet", "imagenet")),
    "data_dir": Rule(str, non_empty=True),
    "download": Rule(bool),
    "limit_train": Rule(int, 1, optional=True),
    "val_fraction": Rule(float, 0, 1, low_open=True),
    "split_seed": Rule(int, 0),
    "image_size": Rule(int, 1, 4096, **UP_TO, optional=True),
    "load_size": Rule(int, 1, 4096, **UP_TO, optional=True),
    "in_memory_gb": Rule(float, 0),
    "cache_dir": Rule(str, optional=True, non_empty=True),
    "data_mean": Rule(tuple, length=3, optional=True),  # one number per RGB channel
    "data_std": Rule(tuple, length=3, optional=True, **POSITIVE),
    "backbone": Rule(str, names=("resnet18", "resnet50", "small")),
    "head": Rule(str, names=("mlp", "mlp_bn")),
    "proj_dim": Rule(int, 1, 2**16, **UP_TO),
    "epochs": Rule(int, 1, 100_000, **UP_TO),
    "batch_size": Rule(int, 2, 2**17, **UP_TO),
    "lr": Rule(float, **POSITIVE),
    "optimizer": Rule(str, names=("lars", "sgd", "adam")),
    "lr_scaling": Rule(str, names=("linear", "sqrt", "none")),
    "weight_decay": Rule(float, 0),
    "momentum": Rule(float, 0, 1),
    "schedule": Rule(str, names=("cosine", "constant")),
    "warmup_epochs": Rule(int, 0),
    "jitter_strength": Rule(float, 0, 2.5, **UP_TO, optional=True),  # the augmentation's hue bound
    "blur_prob": Rule(float, 0, 1, high_open=False, optional=True),
    "n_eval_epochs": Rule(int, 1),
    "n_save_epochs": Rule(int, 1),
    "knn_k": Rule(int, 1, 100_000, **UP_TO),
    "knn_temperature": Rule(float, **POSITIVE),
    "save_dir": Rule(str, non_empty=True),
    "workers": Rule(int, 1, 4096, **UP_TO),
    "gpu": Rule(bool),
    "cpus_per_worker": Rule(float, low=0.0001, high=4096, high_open=False),
    "gpus_per_worker": Rule(float, low=0.0001, high=1, high_open=False),
    "seed": Rule(int, 0, 2**32),
    "precision": Rule(str, names=("auto", "fp32", "bf16")),
    "compile": Rule(bool),
    "gather": Rule(bool),
    "tracking_uri": Rule(str, optional=True, non_empty=True),
    "experiment": Rule(str, pattern=NAME),
    "run_name": Rule(str, optional=True, pattern=NAME),
    "tags": Rule(dict, pattern=r"[A-Za-z0-9][A-Za-z0-9._/-]{0,249}"),
}
FIELDS = tuple(RULES)
DEFAULTS = {
    "loss": "infonce", "batch_size": 256, "workers": 1, "epochs": 400, "warmup_epochs": 0, "schedule": "constant",
    "data_mean": None, "data_std": None,
}
STATISTICS = ("data_mean", "data_std")  # given both or neither
TYPO_KEYS = ("batchsize", "learning_rate", "temprature", "Loss", "num_views", "max_epochs", "d-pos", "lr ", "wd", "é")


def offenders(values: dict[Any, Any]) -> set[Any]:
    """Every field (or unknown key) the table says is wrong in ``values``; empty when valid."""
    bad: set[Any] = {k for k in values if k not in RULES}
    typed = {k: v for k, v in values.items() if k in RULES and RULES[k].type_ok(v)}
    bad |= {k for k in values if k in RULES and k not in typed}
    bad |= {k for k, v in typed.items() if not RULES[k].allows(v)}
    cfg = DEFAULTS | typed
    mistyped = set(values) - set(typed)
    if "loss" not in mistyped and cfg["loss"] in LOSSES:
        bad |= {h for h in HYPERPARAMETERS if typed.get(h) is not None and h not in TAKES[cfg["loss"]]}
    if not mistyped & {"batch_size", "workers"} and cfg["workers"] >= 1 and cfg["batch_size"] % cfg["workers"]:
        bad |= {"batch_size", "workers"}
    if (
        not mistyped & {"schedule", "epochs", "warmup_epochs"}
        and cfg["schedule"] == "cosine"
        and cfg["warmup_epochs"] >= cfg["epochs"] >= 1
    ):
        bad.add("warmup_epochs")
    if not mistyped & set(STATISTICS) and (cfg["data_mean"] is None) != (cfg["data_std"] is None):
        bad |= set(STATISTICS)
    return bad


def names(message: str, key: Any) -> bool:
    """Whether ``message`` names the field (as ``field=``) or the unknown key (quoted)."""
    if key in RULES:
        return re.search(rf"\b{re.escape(key)}=", message) is not None
    return repr(key) in message


def test_the_rule_table_covers_every_config_field() -> None:
    assert set(FIELDS) == {f.name for f in dataclasses.fields(PretrainConfig)}
    assert offenders(PretrainConfig().to_dict()) == set()  # the defaults are valid
    assert offenders({"loss": "infonce", "d_neg": 1.0}) == {"d_neg"} and offenders({"workers": 3}) == {"batch_size", "workers"}


# --- strategies -------------------------------------------------------------------------------

TEXT = st.text(alphabet=string.ascii_letters + string.digits + " _-./éü数据", max_size=12)


def _parses(kind: Callable[[str], Any], text: str) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True


def numbers(rule: Rule, low: float | None, high: float | None, *, low_open: bool, high_open: bool) -> st.SearchStrategy:
    if rule.kind is int:
        first = None if low is None else int(low) + (1 if low_open else 0)
        last = None if high is None else int(high) - (1 if high_open else 0)
        return st.integers(first if first is not None else -(10**6), last if last is not None else 10**6)
    floats = st.floats(
        low,
        high,
        exclude_min=low_open and low is not None,
        exclude_max=high_open and high is not None,
        allow_nan=False,
        allow_infinity=False,
    )
    return floats if high is not None else floats.filter(lambda v: v < 1e6) | st.integers(int(low or 0) + 1, int(low or 0) + 1000)


def valid(rule: Rule) -> st.SearchStrategy:
    if rule.names is not None:
        strategy = st.sampled_from(rule.names)
    elif rule.kind is bool:
        strategy = st.booleans()
    elif rule.kind is str and rule.pattern is not None:
        strategy = st.from_regex(rule.pattern, fullmatch=True)
    elif rule.kind is str:
        strategy = TEXT.filter(lambda s: s.strip()) if rule.non_empty else TEXT
    elif rule.kind is dict:
        strategy = st.dictionaries(st.from_regex(rule.pattern or ".*", fullmatch=True).filter(lambda k: len(k) < 40), TEXT, max_size=3)
    elif rule.kind is tuple:
        strategy = st.lists(valid(rule.element), min_size=rule.length, max_size=rule.length).map(tuple)
    else:
        strategy = numbers(rule, rule.low, rule.high, low_open=rule.low_open, high_open=rule.high_open)
    return strategy | st.none() if rule.optional else strategy


def out_of_range(rule: Rule) -> st.SearchStrategy | None:
    """Values of the right type that the rule forbids (None where every such value is allowed)."""
    if rule.names is not None:
        return st.sampled_from(("SimCLR", "InfoNCE", " adam", "cifar-10", "")) | TEXT.filter(lambda s: s not in (rule.names or ()))
    if rule.kind is str and rule.pattern is not None:
        return st.sampled_from(("", "../x", "a b", "a'b", "/abs", ".hidden", "é", "x" * 101))
    if rule.kind is str:
        return st.sampled_from(("", " ", "\t")) if rule.non_empty else None
    if rule.kind is dict:
        return st.sampled_from(({"a b": "x"}, {"": "x"}, {"../k": "v"}))
    if rule.kind is tuple:  # a number too few or too many, or one out of range (at least one number: a flag cannot say [])
        lengths = st.lists(valid(rule.element), min_size=1, max_size=5).filter(lambda v: len(v) != rule.length)
        wrong = out_of_range(rule.element)
        return lengths if wrong is None else lengths | st.lists(valid(rule.element) | wrong, min_size=rule.length, max_size=rule.length)
    if rule.kind not in (int, float) or (rule.low is None and rule.high is None):
        return None
    options = []
    if rule.low is not None:
        options.append(
            numbers(rule, None if rule.kind is float else rule.low - 10**6, rule.low, low_open=False, high_open=not rule.low_open)
        )
    if rule.high is not None:
        options.append(
            numbers(rule, rule.high, None if rule.kind is float else rule.high + 10**6, low_open=not rule.high_open, high_open=False)
        )
    if rule.kind is float:
        options.append(st.sampled_from((math.nan, math.inf, -math.inf)))
        options.append(st.just(10**400))  # an int no float can hold
    return st.one_of(options)


def wrong_type(rule: Rule) -> st.SearchStrategy:
    lists = st.lists(st.integers(0, 9), max_size=2)
    options: list[st.SearchStrategy] = [lists]
    if rule.kind is int:
        options += [st.floats(allow_nan=False) | st.just(2.0), TEXT, st.booleans()]
    elif rule.kind is float:
        options += [TEXT, st.booleans()]
    elif rule.kind is str:
        options += [st.integers(), st.floats(allow_nan=False), st.booleans()]
    elif rule.kind is bool:
        options += [st.integers(0, 1), st.sampled_from(("true", "yes"))]
    elif rule.kind is dict:
        options += [TEXT, st.dictionaries(TEXT, st.integers(), min_size=1, max_size=2)]
    elif rule.kind is tuple:
        options += [TEXT, st.floats(allow_nan=False), st.lists(st.sampled_from(("a", True, math.nan, math.inf)), min_size=1, max_size=3)]
    if not rule.optional:
        options.append(st.none())
    return st.one_of(options)


MODES = ("valid",) * 5 + ("range", "type")


@st.composite
def any_config(draw: st.DrawFn, fields: tuple[str, ...] = FIELDS, max_size: int = 8) -> dict[Any, Any]:
    """Up to ``max_size`` fields, each valid (mostly), out of range or of a wrong type; sometimes unknown keys."""
    values: dict[Any, Any] = {}
    for name in draw(st.lists(st.sampled_from(fields), unique=True, max_size=max_size)):
        rule, mode = RULES[name], draw(st.sampled_from(MODES))
        strategy = {"valid": valid(rule), "range": out_of_range(rule), "type": wrong_type(rule)}[mode]
        values[name] = draw(strategy if strategy is not None else valid(rule))
    if draw(st.integers(0, 7)) == 0:
        for key in draw(st.lists(st.sampled_from(TYPO_KEYS) | st.integers(0, 3), min_size=1, max_size=2, unique=True)):
            values[key] = draw(st.integers(0, 9))
    return values


@st.composite
def valid_config(draw: st.DrawFn) -> dict[str, Any]:
    """A valid configuration of many fields, respecting the rules that join fields."""
    loss = draw(st.sampled_from(LOSSES))
    values: dict[str, Any] = {"loss": loss}
    joined = (*HYPERPARAMETERS, *STATISTICS, "loss", "batch_size", "workers", "epochs", "warmup_epochs", "schedule")
    independent = [f for f in FIELDS if f not in joined]
    for name in draw(st.lists(st.sampled_from(independent), unique=True, max_size=12)):
        values[name] = draw(valid(RULES[name]))
    for name in draw(st.lists(st.sampled_from(sorted(TAKES[loss])), unique=True)):
        values[name] = draw(valid(RULES[name]))
    workers = draw(st.integers(1, 8))
    values |= {"workers": workers, "batch_size": workers * draw(st.integers(2, 512))}
    values |= {"epochs": draw(st.integers(1, 1000)), "schedule": draw(st.sampled_from(("cosine", "constant")))}
    values["warmup_epochs"] = draw(st.integers(0, values["epochs"] - 1))
    if draw(st.booleans()):
        values |= {name: draw(valid(RULES[name]).filter(lambda v: v is not None)) for name in STATISTICS}
    return values


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- from_dict --------------------------------------------------------------------------------


@FUZZ
@given(valid_config())
def test_no_valid_config_is_rejected(values: dict[str, Any]) -> None:
    assert offenders(values) == set()
    cfg = from_dict(values).to_dict()
    assert {k: cfg[k] for k in values} == values


@FUZZ
@given(any_config())
def test_from_dict_accepts_exactly_the_valid_configs_and_names_every_bad_field(values: dict[Any, Any]) -> None:
    bad = offenders(values)
    if not bad:
        cfg = from_dict(values).to_dict()
        assert {k: cfg[k] for k in values} == values
        return
    with pytest.raises(ConfigError) as err:
        from_dict(values)
    message = str(err.value)
    assert all(names(message, key) for key in bad), (sorted(map(str, bad)), message)


def test_every_kind_of_problem_at_once_is_named() -> None:
    values = {"batchsize": 64, "epochs": "3", "lr": -1.0, "loss": "infonce", "tau_plus": 0.5, "tags": {"a": 1}, "seed": -1}
    with pytest.raises(ConfigError) as err:
        from_dict(values)
    message = str(err.value)
    assert offenders(values) == {"batchsize", "epochs", "lr", "tau_plus", "tags", "seed"}
    assert all(names(message, key) for key in offenders(values)), message
    assert "did you mean 'batch_size'?" in message


# --- study/train.py's command line ------------------------------------------------------------

PARSER = train.build_parser()
FLAG_FIELDS = tuple(f for f in FIELDS if f != "tags")  # a dict has no flag


def boolean(text: str) -> bool:
    """What a boolean flag accepts, by its help: true or false (and 1/0, yes/no, on/off)."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def flag_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):  # a list flag takes its numbers comma-separated
        return ",".join(repr(float(v)) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


@st.composite
def command_line(draw: st.DrawFn) -> tuple[list[str], dict[str, Any], list[str], list[str]]:
    """(argv, the values the flags carry, flags whose text is not of their type, unknown flags)."""
    argv, values, unparsable, unknown = [], {}, [], []
    for name in draw(st.lists(st.sampled_from(FLAG_FIELDS), unique=True, max_size=8)):
        rule, mode = RULES[name], draw(st.sampled_from(MODES))
        flag = draw(st.sampled_from((f"--{name}", f"--{name.replace('_', '-')}")))
        if mode == "type" and rule.kind in (int, float, bool):
            kind = {int: int, float: float, bool: boolean}[rule.kind]
            text = draw(st.sampled_from(("abc", "", "2.5", "1e3", "maybe", "0x10", "yes")).filter(lambda s: not _parses(kind, s)))
            argv.append(f"{flag}={text}")
            unparsable.append(name)
            continue
        wrong = out_of_range(rule) if mode == "range" else None
        value = draw(wrong if wrong is not None else valid(rule))
        numbers = value if rule.kind is tuple else [value] if rule.kind is float else []
        if value is None or any(isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**1000 for v in numbers):
            continue  # a flag cannot say None; argparse itself turns a huge number into a float
        argv.append(f"{flag}={flag_text(value)}")
        values[name] = float(value) if rule.kind is float else tuple(map(float, value)) if rule.kind is tuple else value
    if draw(st.integers(0, 7)) == 0:
        key = draw(st.sampled_from(("batchsize", "learning-rate", "num_views", "warm_up")))
        argv.append(f"--{key}=1")
        unknown.append(f"--{key}")
    return argv, values, unparsable, unknown


def parse(argv: list[str]) -> tuple[Any, str]:
    """(namespace or the SystemExit code, what argparse wrote to stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            return PARSER.parse_args(argv), err.getvalue()
        except SystemExit as stop:
            return stop.code, err.getvalue()


@FUZZ
@given(command_line())
def test_train_command_line_rejects_exactly_the_bad_flags_naming_them(case: tuple[list[str], dict[str, Any], list[str], list[str]]) -> None:
    argv, values, unparsable, unknown = case
    args, stderr = parse(argv)
    if unparsable:  # argparse stops at the first value it cannot convert
        assert args == 2 and f"--{unparsable[0]}" in stderr, (argv, stderr)
        return
    if unknown:
        assert args == 2 and all(flag in stderr for flag in unknown), (argv, stderr)
        return
    assert not isinstance(args, int), (argv, stderr)
    bad = offenders(values)
    if not bad:
        cfg = train.config_from_args(args).to_dict()
        assert {k: cfg[k] for k in values} == values
        return
    with pytest.raises(ConfigError) as err:
        train.config_from_args(args)
    assert all(names(str(err.value), key) for key in bad), (argv, str(err.value))


# --- study/run_sweep.py --set overrides (--dry-run: validated, nothing started) ----------------

QUICKSTART = PRESETS["quickstart"]
SWEEP_FIELDS = tuple(f for f in FIELDS if f not in ("seed", "tags"))  # trials take their seed from `seeds`


def yaml_text(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10**9, allow_unicode=True).removesuffix("\n...\n").strip()


@st.composite
def sweep_overrides(draw: st.DrawFn) -> list[str]:
    values = draw(any_config(fields=SWEEP_FIELDS, max_size=4))
    # An empty list would empty a grid axis: see test_sweep_with_an_empty_grid_axis_gets_a_message.
    items = [f"{key}={yaml_text(value)}" for key, value in values.items() if key in RULES and not (key in QUICKSTART.grid and value == [])]
    if draw(st.booleans()):
        axis = draw(st.sampled_from(("loss", "batch_size")))
        if axis not in values:
            choices = (*LOSSES, "simclr") if axis == "loss" else (16, 30, 32, 64, 1)
            items.append(f"{axis}={yaml_text(draw(st.lists(st.sampled_from(choices), min_size=1, max_size=3, unique=True)))}")
    if draw(st.integers(0, 7)) == 0:
        items.insert(
            draw(st.integers(0, len(items))), f"{draw(st.sampled_from(('lossx', 'batchsize', 'eval.epoch')))}={draw(st.integers(0, 9))}"
        )
    return items


def trial_configs(overrides: dict[str, Any]) -> list[dict[str, Any]] | tuple[str, ...]:
    """A preset's trials under ``--set``: a list replaces a grid axis (a non-empty one for a field that
    takes no list adds one), a single value fixes the field, and a loss-specific field (a hyperparameter,
    published_hyperparameters) is set on the study's losses that take it. Loss-specific fields that none of
    them takes are returned as the keys the sweep must name, all of them."""
    from study.plan import single_valued_fields

    fixed, grid = dict(QUICKSTART.fixed), dict(QUICKSTART.grid)
    for key, value in overrides.items():
        if key in HYPERPARAMETERS:
            continue
        if isinstance(value, list) and (key in grid or (value and key in single_valued_fields())):
            fixed.pop(key, None)
            grid[key] = tuple(value)
        else:
            grid.pop(key, None)
            fixed[key] = value
    points = [dict(zip(grid, point)) for point in itertools.product(*grid.values())]
    configs = [fixed | point | {"seed": seed} for point in points for seed in QUICKSTART.seeds]
    def taking(key: str) -> list[dict[str, Any]]:
        return [c for c in configs if isinstance(c.get("loss"), str) and key in TAKES.get(c["loss"], ())]

    untaken = tuple(key for key in overrides if key in HYPERPARAMETERS and not taking(key))
    if untaken:
        return untaken
    for key, value in overrides.items():
        for c in taking(key) if key in HYPERPARAMETERS else ():
            c[key] = value
    return configs


def run_sweep_main(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_sweep.main(argv)
    return code, err.getvalue()


def not_on_this_machine(config: dict[str, Any]) -> bool:
    """A dataset the dry run finds missing: not the bundled digits, and not one a trial will download."""
    name = config.get("dataset", "digits")
    return name != "digits" and not (config.get("download") and not dataset_spec(name).from_files)


@FUZZ
@given(sweep_overrides())
def test_sweep_overrides_are_validated_before_ray_naming_the_field(items: list[str]) -> None:
    argv = ["--preset", "quickstart", *itertools.chain.from_iterable(("--set", item) for item in items), "--dry-run"]
    code, stderr = run_sweep_main(argv)
    overrides = parse_overrides(items)  # what the sweep receives: each value read as YAML
    unknown = [k for k in overrides if k not in RULES]
    if unknown:
        assert code == 2 and f"--set {unknown[0]}" in stderr, (items, stderr)
        return
    configs = trial_configs(overrides)
    if isinstance(configs, tuple):  # loss-specific fields no loss of the study takes: each is named
        assert code == 2 and all(f"{key}=" in stderr for key in configs), (items, stderr)
        return
    failing = [bad for bad in map(offenders, configs) if bad]
    if not failing:
        if any(not_on_this_machine(c) for c in configs):  # a dry run checks the data; only digits is bundled
            assert code == 2 and "dataset" in stderr.lower(), (items, stderr)
        else:
            assert code == 0, (items, stderr)
        return
    assert code == 2, items
    assert any(all(names(stderr, key) for key in bad) for bad in failing), (items, [sorted(b) for b in failing], stderr)


def test_sweep_override_with_an_exponent_is_a_number() -> None:
    code, stderr = run_sweep_main(["--preset", "quickstart", "--set", "lr=1e-3", "--dry-run"])
    assert code == 0, stderr


def test_sweep_override_that_is_not_yaml_gets_a_message() -> None:
    code, stderr = run_sweep_main(["--preset", "quickstart", "--set", "tags={a: [", "--dry-run"])
    assert code == 2 and "tags" in stderr


def test_sweep_eval_override_of_a_wrong_type_gets_a_message() -> None:
    code, stderr = run_sweep_main(["--preset", "quickstart", "--set", "eval.epochs=ten", "--dry-run"])
    assert code == 2 and "epochs" in stderr


def test_sweep_with_an_empty_grid_axis_gets_a_message() -> None:
    code, stderr = run_sweep_main(["--preset", "quickstart", "--set", "loss=[]", "--dry-run"])
    assert code == 2 and "loss" in stderr


# --- files: YAML, paths, datasets -------------------------------------------------------------


@pytest.fixture
def no_tracking_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)


def train_main(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = train.main(argv)
    return code, err.getvalue()


ODD_PATHS = ("my data/cifar 10", "données/数据 集", "  leading space", "a'quote")


@pytest.mark.parametrize("odd", ODD_PATHS)
def test_paths_with_spaces_and_unicode_are_accepted_and_named_when_missing(tmp_path: Path, odd: str, no_tracking_env: None) -> None:
    data_dir, save_dir = tmp_path / odd / "data", tmp_path / odd / "checkpoints"
    cfg = from_dict({"data_dir": str(data_dir), "save_dir": str(save_dir)})
    assert (cfg.data_dir, cfg.save_dir) == (str(data_dir), str(save_dir))
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar10", cfg.data_dir)
    assert str(data_dir) in str(err.value)
    code, stderr = train_main(["--dataset", "imagefolder", "--data-dir", str(data_dir), "--save-dir", str(save_dir)])
    assert code == 2 and str(data_dir / "train") in stderr and "is not a folder" in stderr
    assert not data_dir.exists() and not (tmp_path / "mlflow.db").exists()


def test_a_yaml_file_with_a_typo_is_named_through_the_command_line(tmp_path: Path, no_tracking_env: None) -> None:
    path = tmp_path / "runs é" / "run 1.yaml"
    path.parent.mkdir()
    path.write_text("loss: flatnce\nbatchsize: 128\nlr: 1e-3\n", encoding="utf-8")
    code, stderr = train_main(["--config", str(path)])
    assert code == 2 and "'batchsize' (did you mean 'batch_size'?)" in stderr
    assert "lr=" not in stderr  # 1e-3 is read as the number it is


def test_yaml_reads_exponents_as_numbers(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("lr: 1e-3\nweight_decay: 5E-4\nmomentum: .5\nlimit_train: 1000\nrun_name: 1e3x\n")
    cfg = from_yaml(path)
    assert (cfg.lr, cfg.weight_decay, cfg.momentum, cfg.limit_train, cfg.run_name) == (1e-3, 5e-4, 0.5, 1000, "1e3x")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lr: [0.1\n", "is not valid YAML"),
        ("- lr\n- 0.1\n", "must hold a mapping"),
        ("lr: !!python/object:os.system x\n", "is not valid YAML"),
    ],
)
def test_a_bad_yaml_file_gets_a_message_naming_it(tmp_path: Path, text: str, expected: str, no_tracking_env: None) -> None:
    path = tmp_path / "bad run.yaml"
    path.write_text(text)
    code, stderr = train_main(["--config", str(path)])
    assert code == 2 and str(path) in stderr and expected in stderr, stderr


CIFAR_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta")


def test_a_cifar_folder_missing_a_batch_names_it(tmp_path: Path, no_tracking_env: None) -> None:
    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in CIFAR_FILES:
        if name != "data_batch_3":
            (folder / name).write_bytes(b"not the real file")
    code, stderr = train_main(["--dataset", "cifar10", "--data-dir", str(folder.parent)])
    assert code == 2 and f"Missing from {folder}: data_batch_3." in stderr, stderr


@pytest.fixture
def cifar_copy(tmp_path: Path, cifar10_root: Path) -> Path:
    """A cifar-10-batches-py of symbolic links to the real files, to break one at a time."""
    folder = tmp_path / "cifar copy" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for path in (cifar10_root / "cifar-10-batches-py").iterdir():
        (folder / path.name).symlink_to(path)
    return folder


def test_real_cifar_missing_or_truncated_batches_are_named(cifar_copy: Path) -> None:
    (cifar_copy / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match=f"Missing from {re.escape(str(cifar_copy))}: data_batch_3\\.$"):
        load_dataset("cifar10", cifar_copy.parent)
    original = (cifar_copy / "data_batch_2").resolve()
    (cifar_copy / "data_batch_2").unlink()
    (cifar_copy / "data_batch_2").write_bytes(original.read_bytes()[:1000])
    (cifar_copy / "data_batch_3").symlink_to(original.parent / "data_batch_3")
    with pytest.raises(DatasetNotFoundError, match="Failing their md5 checksum .*: data_batch_2\\.$"):
        load_dataset("cifar10", cifar_copy.parent)


def test_real_cifar_with_extra_files_loads(cifar_copy: Path) -> None:
    (cifar_copy / "data_batch_6").write_bytes(b"an extra batch nobody asked for")
    (cifar_copy / ".DS_Store").write_bytes(b"\x00\x01")
    (cifar_copy.parent / "notes.txt").write_text("downloaded by hand")
    data = load_dataset("cifar10", cifar_copy.parent, limit_train=100)
    assert (len(data.train), len(data.val), len(data.test)) == (100, 5000, 10000)


def write_image_folder(root: Path, classes: dict[str, int]) -> Path:
    for part in ("train", "val"):
        for name, count in classes.items():
            folder = root / part / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (8, 8), (40 * i % 255, 80, 120)).save(folder / f"{i}.png")
    return root


def test_an_image_folder_with_an_empty_class_names_it(tmp_path: Path, no_tracking_env: None) -> None:
    root = write_image_folder(tmp_path / "imgs é", {"cat": 3, "dog": 3})
    (root / "train" / "bird").mkdir()
    (root / "val" / "bird").mkdir()
    (root / "train" / "bird" / "notes.txt").write_text("no images here")
    code, stderr = train_main(["--dataset", "imagefolder", "--data-dir", str(root)])
    assert code == 2 and f"class folder {root / 'train' / 'bird'} holds no image files" in stderr, stderr


def test_an_image_folder_with_extra_files_loads_ignoring_them(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs", {"cat": 4, "dog": 4})
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"\x00")
    (root / "README.md").write_text("extra")
    (root / "test").mkdir()  # a folder that is neither train/ nor val/
    data = load_dataset("imagefolder", root, val_fraction=0.25, load_size=8)
    assert data.classes == ("cat", "dog") and len(data.train) + len(data.val) == 8 and len(data.test) == 8
