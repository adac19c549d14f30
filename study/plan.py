"""A study's plan: its trials, each validated, and what each asks of the cluster — before Ray starts.

``--set key=value`` overrides a preset: a config field (``epochs=50``), a grid axis (a list
replaces the axis, a single value fixes it), ``seeds``, ``num_samples``, ``scheduler``, or an
evaluation field (``eval.epochs=20``). Values are read as YAML (``lr=1e-3``, ``batch_size=[64,128]``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import optuna
import yaml

from search_spaces import PRESETS, Preset
from trainables.config import ConfigError, PretrainConfig, from_dict, load_yaml
from trainables.evaluation import EvalConfig
from trainables.study_context import trial_config

STUDY_KEYS = ("seeds", "num_samples", "scheduler")
SCHEDULERS = ("none", "asha")
TPE_VALIDATION_SAMPLES = 50  # suggestions drawn from a search space to check they all validate
DRIVER_CPU = 0.5  # a Tune trial that only drives a TorchTrainer


def parse_overrides(items: list[str]) -> dict[str, Any]:
    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r} is not key=value")
        try:
            overrides[key.strip()] = load_yaml(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {key.strip()}: {text!r} is not a YAML value ({str(err).splitlines()[0]})") from None
    return overrides


def preset_named(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"preset={name!r} is not known; allowed: {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class Plan:
    preset: Preset  # with the overrides applied
    overrides: dict[str, Any]
    configs: list[PretrainConfig]  # one per grid trial; sampled suggestions for a search

    @property
    def is_search(self) -> bool:
        return self.preset.search is not None

    @property
    def num_trials(self) -> int:
        return self.preset.num_samples if self.is_search else len(self.configs)


def apply_overrides(preset: Preset, overrides: dict[str, Any]) -> Preset:
    fixed, grid, evaluation, study = dict(preset.fixed), dict(preset.grid), dict(preset.evaluation), {}
    config_fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    eval_fields = {f.name for f in dataclasses.fields(EvalConfig)}
    for key, value in overrides.items():
        if key.startswith("eval."):
            if key[5:] not in eval_fields:
                raise ConfigError(f"--set {key}: {key[5:]!r} is not an evaluation field; allowed: {', '.join(sorted(eval_fields))}")
            evaluation[key[5:]] = value
        elif key in STUDY_KEYS:
            study[key] = tuple(range(value)) if key == "seeds" and isinstance(value, int) else tuple(value) if key == "seeds" and isinstance(value, list) else value
        elif key == "seed":
            raise ConfigError("--set seed: every trial's seed comes from seeds; use --set seeds=N (seeds 0..N-1) or seeds=[3,7]")
        elif key in grid and isinstance(value, list):
            if not value:
                raise ConfigError(f"--set {key}=[]: a grid axis needs at least one value")
            grid[key] = tuple(value)
        elif key in config_fields:
            grid.pop(key, None)
            fixed[key] = value
        else:
            raise ConfigError(f"--set {key}: not a config field, a grid axis, eval.<field> or one of {', '.join(STUDY_KEYS)}")
    seeds = study.get("seeds", preset.seeds)
    if not isinstance(seeds, tuple) or not seeds or not all(isinstance(x, int) and x >= 0 for x in seeds):
        raise ConfigError(f"seeds={overrides.get('seeds')!r} is not allowed; use a count >= 1 or a list of seeds >= 0")
    if study.get("scheduler", preset.scheduler) not in SCHEDULERS:
        raise ConfigError(f"scheduler={study['scheduler']!r} is not allowed; allowed: {', '.join(SCHEDULERS)}")
    return dataclasses.replace(preset, fixed=fixed, grid=grid, evaluation=evaluation, **study)


def sampled_suggestions(preset: Preset) -> list[dict[str, Any]]:
    """Suggestions from the preset's Optuna space (random sampling), to validate before Ray."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    suggestions = []
    for _ in range(TPE_VALIDATION_SAMPLES):
        trial = study.ask()
        constants = preset.search(trial) or {}  # type: ignore[misc]
        suggestions.append(trial.params | constants)
        study.tell(trial, 0.0)
    return suggestions


def make_plan(preset_name: str, overrides: dict[str, Any]) -> Plan:
    """The validated plan; any bad value raises ConfigError naming the trial and the field."""
    preset = apply_overrides(preset_named(preset_name), overrides)
    if preset.search is not None and preset.num_samples < 1:
        raise ConfigError(f"num_samples={preset.num_samples} is not allowed for an Optuna search; it must be >= 1")
    EvalConfig(**preset.evaluation)
    params = sampled_suggestions(preset) if preset.search else preset.grid_trials()
    configs = []
    for trial in params:
        try:
            configs.append(from_dict(trial_config(preset.fixed, preset.per_loss, trial)))
        except ConfigError as err:
            raise ConfigError(f"trial {trial}: {err}") from None
    return Plan(preset, overrides, configs)


def uses_train_workers(cfg: PretrainConfig) -> bool:
    """Several workers or a GPU run under TorchTrainer; one CPU worker runs inside the trial."""
    return cfg.workers > 1 or cfg.gpu


def trial_resources(cfg: PretrainConfig) -> tuple[dict[str, float], dict[str, float]]:
    """(what the Tune trial holds, what its Ray Train workers hold in total)."""
    if not uses_train_workers(cfg):
        return {"CPU": cfg.cpus_per_worker}, {}
    workers = {"CPU": cfg.workers * cfg.cpus_per_worker} | ({"GPU": cfg.workers * cfg.gpus_per_worker} if cfg.gpu else {})
    return {"CPU": DRIVER_CPU}, workers


def max_concurrent(configs: list[PretrainConfig], cluster: dict[str, float]) -> int:
    """How many of the largest trial fit on the cluster at once (driver and workers together)."""
    need: dict[str, float] = {}
    for cfg in configs:
        driver, workers = trial_resources(cfg)
        for key in set(driver) | set(workers):
            need[key] = max(need.get(key, 0.0), driver.get(key, 0.0) + workers.get(key, 0.0))
    missing = [f"{need[k]:g} {k}" for k in need if cluster.get(k, 0.0) < need[k]]
    if missing:
        have = ", ".join(f"{cluster.get(k, 0):g} {k}" for k in need)
        raise ConfigError(f"one trial needs {', '.join(missing)} but the cluster has {have}; lower workers or cpus_per_worker")
    return max(1, min(math.floor(cluster[k] / need[k] + 1e-9) for k in need if need[k] > 0))
