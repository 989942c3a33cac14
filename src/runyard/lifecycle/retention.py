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
from runyard.lifecycle.lock import yard_lock
from runyard.registry import lifecycle as registry

if TYPE_CHECKING:
    from runyard.yard import Yard


@dataclass
class RetentionPlan:
    cap: int
    active: int
    excess: int
    options: archive.ArchiveOptions


@dataclass
class RetentionRun:
    plan: RetentionPlan
    archived: archive.ArchiveResult | None  # None: nothing over the cap
    recovered: list[str]  # what recover settled first


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


def run_retention(yard: Yard, command: list[str]) -> RetentionRun:
    """Settle any interrupted batch first (also when nothing is over the cap: a cron job
    is often the first to come by after a crash), then archive what is over the cap."""
    from runyard.lifecycle.recover import recover_locked

    plan_retention(yard, command)  # no cap set: refused before anything happens
    with yard_lock(yard.settings.yard_path, "retention"):
        recovered = recover_locked(yard, command)
    plan = plan_retention(yard, command)  # counted again: recovery may change the count
    if plan.excess == 0:
        return RetentionRun(plan=plan, archived=None, recovered=recovered)
    result = archive.run_archive(yard, plan.options)
    return RetentionRun(plan=plan, archived=result, recovered=recovered + result.recovered)
