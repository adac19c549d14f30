"""A named choice of a config field (a backbone, a head, an optimiser, a schedule): one catalog line each.

A catalog maps each name a config may give to where its builder lives, as ``"module:attr"``, and
a few words for ``--help``. Config validation and the command line read the names without
importing torch; the core imports the builder only when it builds (:meth:`Choice.load`). A new
choice is a module holding its builder and one line in its catalog.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trainables.spec.lazy import resolve


@dataclass(frozen=True)
class Choice:
    """One name a config field may take.

    Attributes:
        name: The config's value.
        location: ``"module:attr"`` of its builder (imported only by ``load``).
        summary: A few words for ``--help``.
    """

    name: str
    location: str
    summary: str

    def load(self) -> Any:
        """The builder (this imports its module, and so torch)."""
        return resolve(self.location)


def catalog(*choices: Choice) -> dict[str, Choice]:
    """A catalog: each choice by its name, in the order given (``--help`` lists them in it)."""
    return {choice.name: choice for choice in choices}


def listed(choices: Mapping[str, Choice]) -> str:
    """The choices as ``--help`` says them: each name with its summary."""
    return ", ".join(f"{choice.name} ({choice.summary})" for choice in choices.values())
