"""Modules the CLI imports when a command runs, not when it starts.

``runyard --help`` must not pay for SQLAlchemy, pydantic or FastAPI (docs/cli.md): a
command module names its core modules as ``lazy("runyard.registry.runs")`` and uses
them as usual (``runs.list_runs(...)``); the import happens at the first attribute.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """A module imported at its first attribute access (then from ``sys.modules``)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"LazyModule({self._name!r})"


def lazy(name: str) -> Any:
    """``name``, imported when first used (typed as Any: the caller names the module)."""
    return LazyModule(name)
