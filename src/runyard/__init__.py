"""runyard: a registry of pipeline runs with plan lineage, and a safe lifecycle for run folders.

The public Python API::

    import runyard

    with runyard.open_yard() as yard:
        with yard.start_run(plan_version_id="pv-…", group="CH01/003") as run:
            (run.path / "out.txt").write_text("…")
            run.log_summary({"fill_rate": 0.97})

The names below are imported when first used (PEP 562), so ``import runyard`` (and the
CLI's start-up) does not pay for SQLAlchemy and pydantic until something needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runyard.errors import RunyardError
    from runyard.models import Run
    from runyard.remote.yard import connect
    from runyard.statuses import RunStatus
    from runyard.tracking import RunHandle
    from runyard.yard import Yard, init_yard, open_yard

__all__ = [
    "Run",
    "RunHandle",
    "RunStatus",
    "RunyardError",
    "Yard",
    "connect",
    "init_yard",
    "open_yard",
]
__version__ = "0.1.0"

_WHERE = {
    "Run": "runyard.models",
    "RunHandle": "runyard.tracking",
    "RunStatus": "runyard.statuses",
    "RunyardError": "runyard.errors",
    "Yard": "runyard.yard",
    "connect": "runyard.remote.yard",
    "init_yard": "runyard.yard",
    "open_yard": "runyard.yard",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'runyard' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
