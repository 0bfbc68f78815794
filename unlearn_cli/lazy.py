"""Names a package re-exports from its modules, each module imported when one of its names is first used, so that
importing a torch-free module of the package does not import the others (what `--help` and `report` load).

Usage (in a package's __init__.py):
    _HOMES = {"metric_keys": "keys", "mia_scores": "mia"}     # name -> the module of this package that defines it
    __all__ = sorted(_HOMES)
    __getattr__ = lazy_attributes(__name__, _HOMES)
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_attributes(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `package`: name -> getattr(package.<homes[name]>, name)."""

    def attribute(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{homes[name]}"), name)

    return attribute
