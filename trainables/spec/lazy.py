"""A package whose names are imported from their submodules on first use, so that importing the package
(for ``--help``, for validation) does not import torch, pandas or MLflow."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def by_name(by_module: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Each exported name's submodule, from the names each submodule exports."""
    return {name: module for module, names in by_module.items() for name in names}


def lazy_getattr(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """The package's module ``__getattr__``: ``exports`` maps each name to the submodule that defines it."""

    def getattr_(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    return getattr_


def resolve(location: str) -> Any:
    """The object a catalog's ``"module:attr"`` names, importing its module (and so torch) only now."""
    module, _, name = location.partition(":")
    return getattr(importlib.import_module(module), name)
