"""Retention: a cap on active runs (``RUNYARD_MAX_RUNS`` / ``retention.max_active_runs``).

Above the cap, the oldest *eligible* runs are archived — every guard still applies,
and it is a normal archive batch with reason ``retention``, never a deletion. Run it
from cron (docs/lifecycle.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from runyard.errors import Invalid
from runyard.lifecycle import archive
from runyard.lifecycle.guards import Scope
from runyard.registry import lifecycle as registry

if TYPE_CHECKING:
    from runyard.yard import Yard


@dataclass
class RetentionPlan:
    cap: int
    active: int
    excess: int
    options: archive.ArchiveOptions


def plan_retention(yard: Yard, command: list[str]) -> RetentionPlan:
    """How many active runs exceed the cap, and the archive options that trim them."""
    cap = yard.settings.max_active_runs
    if cap is None:
        raise Invalid(
            "no cap on active runs is set",
            hint="set retention.max_active_runs in runyard.toml or RUNYARD_MAX_RUNS",
        )
    with yard.read() as conn:
        active = len(registry.active_runs(conn))
    excess = max(0, active - cap)
    options = archive.ArchiveOptions(
        scope=Scope(all=True),
        reason="retention",
        command=command,
        oldest=excess,
        kind="retention",
    )
    return RetentionPlan(cap=cap, active=active, excess=excess, options=options)
