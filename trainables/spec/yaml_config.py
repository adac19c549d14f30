"""Configs read from YAML: safe, YAML 1.2 numbers, bounded in size, a bad key named with its file."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from trainables.spec.pretrain_config import PretrainConfig, from_dict
from trainables.spec.validation import ConfigError, Problem

MAX_CONFIG_BYTES = 1 << 20  # a config file is a few hundred bytes; a larger one is not a config
MAX_YAML_VALUES = 10_000  # values after alias expansion: a 270-byte alias bomb expands to millions


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that 1e-3 and 5e+2 are floats, as in YAML 1.2 (PyYAML follows
    YAML 1.1, which wants a dot and a signed exponent, and reads 1e-3 as the string '1e-3')."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"), list("-+0123456789.")
)


def _expanded_size(value: Any, budget: int) -> int:
    """How many values ``value`` holds once aliases are expanded, counting no further than ``budget``."""
    count, stack = 0, [value]
    while stack and count <= budget:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple)):
            stack += item
    return count


def load_yaml(text: str, source: str = "YAML") -> Any:
    """YAML as config values: safe (no Python objects), 1e-3 read as a number, sizes bounded.

    Raises:
        ConfigError: naming ``source``, for text that is too long, not YAML, or expands beyond
            MAX_YAML_VALUES values through aliases.
    """
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: {len(text):,} characters; a configuration holds at most {MAX_CONFIG_BYTES:,}")
    try:
        value = yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, RecursionError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{source} is not valid YAML: {first[:200]}") from None
    if _expanded_size(value, MAX_YAML_VALUES) > MAX_YAML_VALUES:
        raise ConfigError(f"{source} expands to more than {MAX_YAML_VALUES:,} values (YAML aliases?); a configuration is smaller")
    return value


def read_yaml_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file, or a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config={str(path)!r}: no such file")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config={str(path)!r}: {path.stat().st_size:,} bytes; a configuration holds at most {MAX_CONFIG_BYTES:,}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config={str(path)!r} is not UTF-8 text") from None
    loaded = load_yaml(text, source=f"config={str(path)!r}")
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config={str(path)!r} must hold a mapping of field: value, not {type(loaded).__name__}")
    return loaded


def from_file(problems: list[Problem], path: str | Path, keys: Iterable[str]) -> list[Problem]:
    """``problems``, those that involve only ``keys`` read from the file at ``path`` said to be that file's."""
    keys = set(keys)
    return [Problem(p.fields, f"in config={str(path)!r}: {p.message}") if p.fields and set(p.fields) <= keys else p for p in problems]


def from_yaml(path: str | Path, overrides: dict[str, Any] | None = None) -> PretrainConfig:
    """A config from a YAML mapping, with ``overrides`` (e.g. from flags) on top; a bad key names the file."""
    loaded, overrides = read_yaml_file(path), overrides or {}
    try:
        return from_dict(loaded | overrides)
    except ConfigError as err:
        raise ConfigError(from_file(err.problems, path, set(loaded) - set(overrides))) from None
