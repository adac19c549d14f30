"""A study's plan: its trials, each validated, and what each asks of the cluster — before Ray starts.

``--set key=value`` overrides a preset: a config field (``epochs=50``), a grid axis (a list
replaces the axis, a single value fixes it), ``seeds``, ``num_samples``, ``scheduler``, or an
evaluation field (``eval.epochs=20``). Values are read as YAML (``lr=1e-3``, ``batch_size=[64,128]``).
In a grid study a list for any other single-valued config field makes it a new axis (``lr=[0.1,0.3]``),
except a loss's hyperparameters, which apply only to the losses that take them.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search_spaces import PRESETS, Preset
from search_spaces.preset import ADAPTIVE_FIELDS, Adaptive
from trainables.spec.eval_config import EvalConfig, eval_from_dict
from trainables.spec.losses import CATALOG, hyperparameter_names, preset_hyperparameters
from trainables.spec.pretrain_config import PretrainConfig, from_dict
from trainables.spec.study_context import trial_config, uses_train_workers
from trainables.spec.validation import (
    ConfigError,
    Problem,
    annotation_kinds,
    problem,
    renamed,
)
from trainables.spec.yaml_config import load_yaml

STUDY_KEYS = ("seeds", "num_samples", "scheduler", "adaptive")
SCHEDULERS = ("none", "asha")
MAX_SEEDS = 100  # seeds per grid point; each one repeats every trial of the grid
MAX_NUM_SAMPLES = 10_000  # trials of an Optuna search
TPE_VALIDATION_SAMPLES = 50  # suggestions drawn from a search space to check they all validate
DRIVER_CPU = 0.5  # a Tune trial that only drives a TorchTrainer
# A field that, given on the command line, replaces these per-loss settings of a preset: an
# AttentionNCE dataset preset is a (d_pos, d_neg) pair, which explicit values would otherwise beat.
SUPERSEDES = {"published_hyperparameters": preset_hyperparameters()}


def join_split_values(items: list[str]) -> list[str]:
    """``--set`` items with the pieces a shell split off put back: ``batch_size=[64,`` ``256]``.

    A piece without ``=`` (or one that opens no new key, as in ``256]``) continues the item before it.
    """
    joined: list[str] = []
    for item in items:
        key = item.partition("=")[0]
        if joined and ("=" not in item or not key.strip() or any(c in key for c in "[]{},")):
            joined[-1] = f"{joined[-1]} {item}"
        else:
            joined.append(item)
    return joined


def parse_overrides(items: list[str], source: str = "--set") -> dict[str, Any]:
    overrides = {}
    for item in join_split_values(items):
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{source} {item!r} is not key=value")
        overrides[key.strip()] = load_yaml(text, source=f"{source} {key.strip()}")
    return overrides


def preset_named(name: str) -> Preset:
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, 1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(problem("preset", name, f"allowed: {', '.join(PRESETS)}{hint}"))
    return PRESETS[name]


@dataclass(frozen=True)
class Plan:
    preset: Preset  # with the overrides applied
    overrides: dict[str, Any]
    configs: list[PretrainConfig]  # one per grid trial; sampled suggestions for a search
    notes: list[str] = field(default_factory=list)  # what the overrides changed beyond the obvious

    @property
    def is_search(self) -> bool:
        return self.preset.search is not None

    @property
    def num_trials(self) -> int:
        return self.preset.num_samples if self.is_search else len(self.configs)


def single_valued_fields() -> set[str]:
    """Config fields whose value is not itself a list: a list given for one of them is an axis.

    A loss's hyperparameters are not among them: one applies only to the losses that take it,
    which an axis shared by every trial cannot say. A field is list-valued where any type of its
    annotation is (``data_mean: tuple[float, ...] | None``).
    """
    hints = typing.get_type_hints(PretrainConfig)

    def takes_a_list(name: str) -> bool:
        return any(typing.get_origin(kind) in (list, tuple) for kind in annotation_kinds(hints[name]))

    fields = {f.name for f in dataclasses.fields(PretrainConfig) if not takes_a_list(f.name)}
    return fields - set(loss_specific_fields())


def check_axis(preset: Preset, key: str, values: list[Any], source: str) -> None:
    """A grid axis has values, and only a grid study has axes (an Optuna search draws its own)."""
    if not values:
        raise ConfigError(Problem((key,), f"{source} {key}=[]: a grid axis needs at least one value"))
    if key not in preset.grid and preset.search is not None:
        raise ConfigError(
            Problem((key,), f"{source} {key}={values}: a list makes {key} a grid axis, but this preset is an Optuna search; give one value")
        )


def unknown_key(key: str, source: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, 1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(
        Problem((key,), f"{source} {key}: not a config field, a grid axis, eval.<field> or one of {', '.join(STUDY_KEYS)}{hint}")
    )


def study_value(key: str, value: Any) -> Any:
    """A study-level override (seeds, num_samples, scheduler), checked and bounded."""
    if key == "seeds":
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SEEDS:
            return tuple(range(value))
        if isinstance(value, list) and 1 <= len(value) <= MAX_SEEDS and len(set(map(repr, value))) == len(value):
            if all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**32 for x in value):
                return tuple(value)
        raise ConfigError(
            problem("seeds", value, f"use a count in [1, {MAX_SEEDS}] or a list of at most {MAX_SEEDS} distinct seeds in [0, 2^32)")
        )
    if key == "adaptive":
        return adaptive_value(value)
    if key == "num_samples":
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_NUM_SAMPLES:
            return value
        raise ConfigError(problem("num_samples", value, f"it must be an integer in [1, {MAX_NUM_SAMPLES}]"))
    if value not in SCHEDULERS:
        raise ConfigError(problem("scheduler", value, f"allowed: {', '.join(SCHEDULERS)}"))
    return value


def adaptive_value(value: Any) -> Adaptive | None:
    """``adaptive={initial: 6, step: 2, max_seeds: 12}`` (any of the fields; the others keep their
    defaults), or null for a fixed number of seeds."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise ConfigError(problem("adaptive", value, f"use a mapping of {', '.join(ADAPTIVE_FIELDS)}, e.g. {{initial: 6, step: 2, max_seeds: 12}}, or null"))
    unknown = sorted(set(value) - set(ADAPTIVE_FIELDS))
    if unknown:
        raise ConfigError(problem("adaptive", value, f"{', '.join(map(str, unknown))} not allowed; allowed: {', '.join(ADAPTIVE_FIELDS)}"))
    try:
        return Adaptive(**value)
    except ValueError as err:
        raise ConfigError(Problem(("adaptive",), str(err))) from None


def adaptive_seeds(seeds: tuple[int, ...], adaptive: Adaptive) -> tuple[int, ...]:
    """An adaptive study's seed budget, in the order it runs them: the study's seeds, then the next
    integers above them, up to ``max_seeds`` (the first ``initial`` run at once)."""
    if len(seeds) > adaptive.max_seeds:
        raise ConfigError(
            Problem(("seeds", "adaptive"), f"seeds: {len(seeds)} given but adaptive.max_seeds={adaptive.max_seeds}; give at most that many")
        )
    extra = range(max(seeds) + 1, max(seeds) + 1 + adaptive.max_seeds - len(seeds))
    return (*seeds, *extra)


def without_overridden(per_loss: dict[str, dict[str, Any]], key: str, value: Any, notes: list[str]) -> dict[str, dict[str, Any]]:
    """The preset's per-loss settings, less those the override of ``key`` replaces, each one noted."""
    replaced = (key, *SUPERSEDES.get(key, ()))
    kept = {}
    for loss, settings in per_loss.items():
        dropped = {k: v for k, v in settings.items() if k in replaced}
        if dropped:
            was = ", ".join(f"{k}={v!r}" for k, v in dropped.items())
            notes.append(f"override {key}={value!r} replaces the preset's setting for loss {loss!r}: {was}")
        kept[loss] = {k: v for k, v in settings.items() if k not in replaced}
    return kept


def loss_specific_fields() -> tuple[str, ...]:
    """Config fields that only some losses take: their hyperparameters and the published-preset name."""
    return (*hyperparameter_names(), "published_hyperparameters")


def takes_field(loss: str, key: str) -> bool:
    entry = CATALOG.get(loss)
    return entry is not None and (bool(entry.presets) if key == "published_hyperparameters" else key in entry.hyperparameters)


def study_losses(fixed: dict[str, Any], grid: dict[str, tuple[Any, ...]]) -> tuple[str, ...]:
    return tuple(grid["loss"]) if "loss" in grid else (fixed.get("loss", PretrainConfig.loss),)


def for_the_losses_taking_it(
    per_loss: dict[str, dict[str, Any]], key: str, value: Any, losses: tuple[str, ...], notes: list[str]
) -> dict[str, dict[str, Any]]:
    """A loss-specific override set on the losses of the study that take it (the others ignore it), noted;
    at least one of ``losses`` takes it."""
    taking = [loss for loss in losses if takes_field(loss, key)]
    per_loss = without_overridden(per_loss, key, value, notes)
    if len(taking) < len(losses):
        notes.append(f"override {key}={value!r} applies to loss {', '.join(taking)} only: the others do not take it")
    return per_loss | {loss: per_loss.get(loss, {}) | {key: value} for loss in taking}


def apply_overrides(preset: Preset, overrides: dict[str, Any], sources: dict[str, str] | None = None) -> tuple[Preset, list[str]]:
    """The preset with the overrides applied, and notes on the preset settings they replaced.

    A config field given on the command line wins over the preset's per-loss setting of the same
    field (and of the fields it supersedes); each such replacement is a note printed with the plan.
    """
    overrides, sources = renamed(overrides), renamed(sources or {})  # a field's old name read as its new one
    fixed, grid, evaluation, per_loss, study = dict(preset.fixed), dict(preset.grid), dict(preset.evaluation), dict(preset.per_loss), {}
    config_fields = [f.name for f in dataclasses.fields(PretrainConfig)]
    eval_fields = [f.name for f in dataclasses.fields(EvalConfig)]
    notes: list[str] = []
    untaken: list[Problem] = []  # loss-specific fields none of the study's losses takes, named together
    # Loss-specific fields last: which losses take them depends on the study's losses, which may be overridden too.
    # Among them a field that supersedes others (published_hyperparameters) first, so that those given with it still win.
    order = lambda item: (item[0] in loss_specific_fields(), item[0] not in SUPERSEDES)  # noqa: E731
    for key, value in sorted(overrides.items(), key=order):
        source = (sources or {}).get(key, "--set")
        if key.startswith("eval."):
            if key[5:] not in eval_fields:
                close = difflib.get_close_matches(key[5:], eval_fields, 1)
                hint = f" (did you mean 'eval.{close[0]}'?)" if close else ""
                raise ConfigError(
                    Problem((key,), f"{source} {key}: {key[5:]!r} is not an evaluation field{hint}; allowed: {', '.join(eval_fields)}")
                )
            evaluation[key[5:]] = value
        elif key in STUDY_KEYS:
            study[key] = study_value(key, value)
        elif key == "seed":
            raise ConfigError(
                Problem(("seed",), f"{source} seed: every trial's seed comes from seeds; use seeds=N (seeds 0..N-1) or seeds=[3,7]")
            )
        elif isinstance(value, list) and (key in grid or (value and key in single_valued_fields())):
            check_axis(preset, key, value, source)
            fixed.pop(key, None)
            grid[key] = tuple(value)
            per_loss = without_overridden(per_loss, key, value, notes)
        elif key in loss_specific_fields():
            losses = study_losses(fixed, grid)
            if not any(takes_field(loss, key) for loss in losses):
                untaken.append(problem(key, value, f"none of this study's losses ({', '.join(map(str, losses))}) takes {key}"))
                continue
            per_loss = for_the_losses_taking_it(per_loss, key, value, losses, notes)
            fixed.pop(key, None)
            grid.pop(key, None)
        elif key in config_fields:
            grid.pop(key, None)
            fixed[key] = value
            per_loss = without_overridden(per_loss, key, value, notes)
        else:
            raise unknown_key(key, source, [*config_fields, *grid, *STUDY_KEYS, *(f"eval.{f}" for f in eval_fields)])
    if untaken:
        raise ConfigError(untaken)
    if study.get("scheduler", preset.scheduler) not in SCHEDULERS:
        raise ConfigError(problem("scheduler", study.get("scheduler", preset.scheduler), f"allowed: {', '.join(SCHEDULERS)}"))
    adaptive = study.get("adaptive", preset.adaptive)
    if adaptive is not None:
        if preset.search is not None:
            raise ConfigError(problem("adaptive", adaptive.text(), "adaptive seeds compare a grid's cells; this preset is an Optuna search"))
        study["seeds"] = adaptive_seeds(study.get("seeds", preset.seeds), adaptive)
    return dataclasses.replace(preset, fixed=fixed, grid=grid, evaluation=evaluation, per_loss=per_loss, **study), notes


def sampled_suggestions(preset: Preset) -> list[dict[str, Any]]:
    """Suggestions from the preset's Optuna space (random sampling), to validate before Ray."""
    import optuna  # only search presets need it

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    suggestions = []
    for _ in range(TPE_VALIDATION_SAMPLES):
        trial = study.ask()
        constants = preset.search(trial) or {}  # type: ignore[misc]
        suggestions.append(trial.params | constants)
        study.tell(trial, 0.0)
    return suggestions


def make_plan(preset_name: str, overrides: dict[str, Any], sources: dict[str, str] | None = None) -> Plan:
    """The validated plan; any bad value raises ConfigError naming the trial and the field."""
    preset, notes = apply_overrides(preset_named(preset_name), overrides, sources)
    if preset.search is not None and preset.num_samples < 1:
        raise ConfigError(problem("num_samples", preset.num_samples, "an Optuna search needs it >= 1"))
    try:
        eval_from_dict(preset.evaluation)
    except ConfigError as err:
        raise ConfigError(
            [Problem(tuple(f"eval.{f}" for f in p.fields), p.message) for p in err.problems], header="invalid evaluation configuration"
        ) from None
    params = sampled_suggestions(preset) if preset.search else preset.grid_trials()
    configs = []
    for trial in params:
        try:
            configs.append(from_dict(trial_config(preset.fixed, preset.per_loss, trial)))
        except ConfigError as err:
            raise err.within(_culprit(err, trial, overrides, sources or {})) from None
    return Plan(preset, overrides, configs, notes)


def _culprit(err: ConfigError, trial: dict[str, Any], overrides: dict[str, Any], sources: dict[str, str]) -> str:
    """What a trial's bad config came from: the overrides (``--set lr=fast``) when they hold every
    field at fault, else the trial (its fields come from the preset's grid)."""
    fields = {field for p in err.problems for field in p.fields}
    if fields and fields <= set(overrides):
        return ", ".join(f"{sources.get(field, '--set')} {field}={overrides[field]}" for field in sorted(fields))
    return f"trial {trial}"


def machine_resources() -> dict[str, float]:
    """What a Ray instance started on this machine would offer: its CPUs and NVIDIA GPUs.

    Read without importing Ray or torch: the CPUs this process may run on, and the GPUs in
    CUDA_VISIBLE_DEVICES or, without it, those the NVIDIA driver lists.
    """
    cpus = float(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else float(os.cpu_count() or 1)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    else:
        driver = Path("/proc/driver/nvidia/gpus")
        gpus = len(list(driver.iterdir())) if driver.is_dir() else 0
    return {"CPU": cpus, "GPU": float(gpus)}


def trial_resources(cfg: PretrainConfig) -> tuple[dict[str, float], dict[str, float]]:
    """(what the Tune trial holds, what its Ray Train workers hold in total)."""
    if not uses_train_workers(cfg):
        return {"CPU": cfg.cpus_per_worker}, {}
    workers = {"CPU": cfg.workers * cfg.cpus_per_worker} | ({"GPU": cfg.workers * cfg.gpus_per_worker} if cfg.gpu else {})
    return {"CPU": DRIVER_CPU}, workers


def max_concurrent(configs: list[PretrainConfig], cluster: dict[str, float], where: str = "the cluster") -> int:
    """How many of the largest trial fit on the cluster at once (driver and workers together)."""
    need: dict[str, float] = {}
    for cfg in configs:
        driver, workers = trial_resources(cfg)
        for key in set(driver) | set(workers):
            need[key] = max(need.get(key, 0.0), driver.get(key, 0.0) + workers.get(key, 0.0))
    missing = [f"{need[k]:g} {k}" for k in need if cluster.get(k, 0.0) < need[k]]
    if missing:
        have = ", ".join(f"{cluster.get(k, 0):g} {k}" for k in need)
        fields = ("workers", "cpus_per_worker", "gpu")
        raise ConfigError(
            Problem(fields, f"one trial needs {', '.join(missing)} but {where} has {have}; lower workers or cpus_per_worker, or drop gpu")
        )
    return max(1, min(math.floor(cluster[k] / need[k] + 1e-9) for k in need if need[k] > 0))
