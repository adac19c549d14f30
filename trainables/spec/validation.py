"""The validation of every typed config: checks that name field, value and what is allowed, and one path through them.

Every config dataclass runs :func:`validate` in ``__post_init__``, which coerces each field to its
annotated type and applies the class's checks. A check returns :class:`Problem` objects that
carry the offending fields as data; :class:`ConfigError` holds them all and renders one bounded
message. The driver refuses here whatever a worker would refuse later, and bounds what has no
natural bound (views, batch, epochs, names, tags), so a typo cannot start Ray or exhaust memory.
A field that was renamed is still read under its old name, with a note (``RENAMED_FIELDS``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import reprlib
import sys
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any

# Bounds on what has no natural bound: far beyond any paper's setting, small enough that a typo
# fails here instead of exhausting memory inside a worker.
MAX_VIEWS = 64  # M; the papers go to M = 8 (AttentionNCE) and every view is an encoder pass
MAX_BATCH_SIZE = 1 << 17  # SimCLR's largest batch is 8,192
MAX_EPOCHS = 100_000
RAY_RESOURCE_STEP = 0.0001
MAX_WORKERS = 4096
MAX_PROJ_DIM = 1 << 16
MAX_IMAGE_SIZE = 4096  # pixels a side; ImageNet trains at 224
MAX_KNN_K = 100_000
MAX_TAGS = 100
MAX_TEXT = 1000  # characters of a free-text value (paths, URIs, tag values)
# Hue jitter is 0.2 s and torchvision's hue shift must stay within [-0.5, 0.5]; trainables/core/augment.py
# reads the same bound, so the driver refuses what the augmentation would.
MAX_JITTER_STRENGTH = 2.5

# Run, study and experiment names: one character set, safe as a folder name, inside an MLflow
# filter string and in Ray's metric names. Starts with a letter or digit, so never "." or "..".
NAME_CHARS = "letters, digits, '.', '_', '-' (starting with a letter or digit, at most 100 characters)"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
TAG_KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,249}")

MAX_MESSAGE_CHARS = 4000  # an error message stays readable, whatever the input
_VALUE_REPR = reprlib.Repr()
_VALUE_REPR.maxstring, _VALUE_REPR.maxother, _VALUE_REPR.maxlevel = 80, 80, 3
_VALUE_REPR.maxlist = _VALUE_REPR.maxtuple = _VALUE_REPR.maxdict = _VALUE_REPR.maxset = 8


def shown(value: Any) -> str:
    """``repr(value)``, shortened: a value from a file or a flag can be arbitrarily large."""
    return _VALUE_REPR.repr(value)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: the fields it involves, the value, and the sentence that says so.

    Attributes:
        fields: the offending fields (two for a rule between fields, e.g. batch_size and workers).
        message: the full sentence, naming field, value and what is allowed.
    """

    fields: tuple[str, ...]
    message: str

    def __str__(self) -> str:
        return self.message


def problem(name: str, value: Any, allowed: str) -> Problem:
    """The usual problem: ``name=value is not allowed; allowed``."""
    return Problem((name,), f"{name}={shown(value)} is not allowed; {allowed}")


class ConfigError(ValueError):
    """Bad configuration; ``problems`` names every bad field as data, the message says the rest.

    ``ConfigError("text")`` is one problem without a field (a missing file, a flag clash).
    """

    def __init__(self, problems: str | Problem | Iterable[Problem], *, header: str = "invalid configuration") -> None:
        if isinstance(problems, str):
            problems = [Problem((), problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        self.header = header
        super().__init__(self._text())

    @property
    def fields(self) -> set[str]:
        return {name for p in self.problems for name in p.fields}

    def within(self, context: str) -> ConfigError:
        """The same problems, with ``context`` (a file, a trial) in front of the message."""
        return ConfigError(self.problems, header=f"{context}: {self.header}" if self.header else context)

    def _text(self) -> str:
        lines = [p.message for p in self.problems]
        if len(lines) == 1 and not lines[0].startswith(self.header):
            text = f"{self.header}: {lines[0]}" if self.header and self.problems[0].fields else lines[0]
        else:
            text = f"{self.header}:\n  - " + "\n  - ".join(lines)
        if len(text) > MAX_MESSAGE_CHARS:
            text = text[: MAX_MESSAGE_CHARS - 40] + f" ... ({len(text):,} characters in all)"
        return text



# --- checks: each returns the problems of one rule ------------------------------------------------

Check = Callable[[Any], list[Problem]]


def one_of(name: str, registry: Iterable[str] | Callable[[], Iterable[str]], *, optional: bool = False) -> Check:
    """The field's value must be a name in ``registry``, read at check time (registries may grow)."""

    def check(cfg: Any) -> list[Problem]:
        value, allowed = getattr(cfg, name), tuple(registry() if callable(registry) else registry)
        if value in allowed or (optional and value is None):
            return []
        close = difflib.get_close_matches(value, allowed, 1) if isinstance(value, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return [problem(name, value, f"allowed: {', '.join(allowed)}{hint}")]

    check.field, check.allowed = name, lambda: f"one of {', '.join(registry() if callable(registry) else registry)}"  # type: ignore[attr-defined]
    return check


def finite(value: float) -> bool:
    return isinstance(value, int) or math.isfinite(value)  # ints are finite, however large


def number(value: float) -> str:
    """A bound as people write it: 4294967296 rather than 4.29497e+09, 0.5 rather than 0.500000."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _bounded(value: float, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    above = low is None or (value > low if low_open else value >= low)
    below = high is None or (value < high if high_open else value <= high)
    return finite(value) and above and below


def between(name: str, low: float | None, high: float | None = None, *, low_open: bool = False, high_open: bool = False) -> Check:
    """low <= value <= high (either end open or absent); None passes (the field's own default)."""
    if high is None:
        allowed = f"it must be a finite number {'>' if low_open else '>='} {low}"
    else:
        allowed = f"it must be in {'(' if low_open else '['}{number(low)}, {number(high)}{')' if high_open else ']'}"

    def check(cfg: Any) -> list[Problem]:
        value = getattr(cfg, name)
        if value is None or _bounded(value, low, high, low_open, high_open):
            return []
        return [problem(name, value, allowed)]

    check.field, check.allowed = name, lambda: allowed.removeprefix("it must be ")  # type: ignore[attr-defined]
    return check


def at_least(name: str, low: float, *, strict: bool = False) -> Check:
    return between(name, low, low_open=strict)


def a_name(name: str, *, optional: bool = False) -> Check:
    """A run, study or experiment name: NAME_CHARS, so it is safe as a folder and in a query."""

    def check(cfg: Any) -> list[Problem]:
        value = getattr(cfg, name)
        if (value is None and optional) or NAME_PATTERN.fullmatch(value):
            return []
        return [problem(name, value, f"a name is made of {NAME_CHARS}")]

    check.field, check.allowed = name, lambda: f"a name of {NAME_CHARS}"  # type: ignore[attr-defined]
    return check


def a_text(name: str) -> Check:
    """Free text (a path, a URI): bounded, and without the NUL byte that no file system accepts."""

    def check(cfg: Any) -> list[Problem]:
        value = getattr(cfg, name)
        if value is None or (len(value) <= MAX_TEXT and "\0" not in value and value.strip()):
            return []
        return [problem(name, value, f"it must be non-empty text of at most {MAX_TEXT} characters without NUL bytes")]

    return check



def allowed_text(checks: list[Check]) -> dict[str, str]:
    """Field -> what its single-field rule allows, in words (for --help, from the rules themselves)."""
    return {check.field: check.allowed() for check in checks if hasattr(check, "field")}


# --- types and the one validation path --------------------------------------------------------------


def annotation_kinds(annotation: Any) -> tuple[Any, ...]:
    """The types a field's annotation allows: each member of ``X | Y``, else the annotation itself."""
    return typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)


def coerce(name: str, value: Any, annotation: Any) -> Any:
    """``value`` as the field's type, or a ConfigError naming the field; ints widen to floats."""
    allowed = annotation_kinds(annotation)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        base = typing.get_origin(kind) or kind
        if base is bool and isinstance(value, bool):
            return value
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            number = finite_float(value)
            if number is None:
                raise ConfigError(problem(name, value, "it must be a finite number"))
            return number
        if base is tuple and isinstance(value, (list, tuple)):  # a YAML list; a tuple keeps the frozen config immutable
            numbers = [finite_float(v) for v in value]
            if None in numbers:
                raise ConfigError(problem(name, value, "it must be a list of finite numbers"))
            return tuple(numbers)
        if base is str and isinstance(value, str):
            return value
        if base is dict and isinstance(value, dict):
            if all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                return value
            raise ConfigError(problem(name, value, "its keys and values must be strings (quote numbers in YAML)"))
    names = " or ".join(type_name(k) for k in allowed)
    raise ConfigError(Problem((name,), f"{name}={shown(value)} has type {type(value).__name__}; expected {names}"))


def finite_float(value: Any) -> float | None:
    """``value`` as a float, or None where it is not a finite number (a bool, inf, an int beyond any float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float (e.g. 400 digits in a YAML file)
        return None
    return number if math.isfinite(number) else None


def type_name(annotation: Any) -> str:
    """A field type as a config's author writes it: a YAML list, not a Python tuple."""
    if annotation is type(None):
        return "None"
    base = typing.get_origin(annotation) or annotation
    return "list of numbers" if base is tuple else getattr(base, "__name__", str(annotation))


def type_problems(config_class: type, values: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """(the values coerced to their fields' types, the problems of those that could not be)."""
    hints, typed, problems = typing.get_type_hints(config_class), {}, []
    for key, value in values.items():
        try:
            typed[key] = coerce(key, value, hints[key])
        except ConfigError as err:
            problems += err.problems
    return typed, problems


def validate(instance: Any, checks: list[Check]) -> None:
    """The one validation path of every config dataclass: types first, then every check at once."""
    typed, problems = type_problems(type(instance), {f.name: getattr(instance, f.name) for f in fields(instance)})
    if problems:
        raise ConfigError(problems)
    for name, value in typed.items():
        object.__setattr__(instance, name, value)  # ints widened to floats where the field is a float
    problems = [p for check in checks for p in check(instance)]
    if problems:
        raise ConfigError(problems)


def unknown_keys(values: dict[Any, Any], known: Iterable[str], kind: str = "config key") -> list[Problem]:
    """A problem per unknown key, with the closest known one when there is one."""
    known = sorted(known)
    problems = []
    for key in sorted(set(values) - set(known), key=str):
        close = difflib.get_close_matches(key, known, 1) if isinstance(key, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(Problem((str(key),), f"unknown {kind} {shown(key)}{hint}; allowed: {', '.join(known)}"))
    return problems


def build(config_class: type, values: dict[str, Any], checks: list[Check]) -> Any:
    """A validated ``config_class`` from plain values; every problem (unknown key, wrong type, range) at once."""
    values = renamed(values)
    known = {f.name for f in fields(config_class)}
    problems = unknown_keys(values, known)
    typed, type_errors = type_problems(config_class, {k: v for k, v in values.items() if k in known})
    problems += type_errors
    if not problems:
        return config_class(**typed)
    # Check the well-typed values too, leaving out what involves a field already reported.
    mistyped = {k for k in values if k in known and k not in typed}
    defaults = {f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default for f in fields(config_class)}  # type: ignore[misc]
    given = types.SimpleNamespace(**(defaults | typed))
    problems += [p for check in checks for p in check(given) if not mistyped & set(p.fields)]
    raise ConfigError(problems)




# Old field name -> its name now; configs, --set and YAML written with the old one still load.
RENAMED_FIELDS: dict[str, str] = {"attention_preset": "published_hyperparameters"}


@functools.cache
def note_renamed(old: str) -> None:
    """Says once per process that ``old`` is read as its new name."""
    print(f"note: {old} is now called {RENAMED_FIELDS[old]}; read as {RENAMED_FIELDS[old]}", file=sys.stderr)


def renamed(values: dict[Any, Any]) -> dict[Any, Any]:
    """``values`` with each old field name replaced by its new one (noted); both given is a ConfigError."""
    clashes = [old for old, new in RENAMED_FIELDS.items() if old in values and new in values]
    if clashes:
        raise ConfigError([Problem((old, RENAMED_FIELDS[old]), f"{old} and {RENAMED_FIELDS[old]} were both given; {old} is the old name of "
                                   f"{RENAMED_FIELDS[old]}: give only {RENAMED_FIELDS[old]}") for old in clashes])
    for old in (key for key in values if key in RENAMED_FIELDS):
        note_renamed(old)
    return {RENAMED_FIELDS.get(key, key) if isinstance(key, str) else key: value for key, value in values.items()}
