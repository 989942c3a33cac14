"""The states a run or a job can be in, and where a run is: plain enums with no
dependencies, so that the CLI can name them in its options without importing pydantic
(``runyard.models`` re-exports them)."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    skipped = "skipped"  # a planning job with RUNYARD_SKIP_SIMULATION=1: no runner ran
    unknown = "unknown"  # legacy runs imported without a manifest

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled, RunStatus.skipped}
)
FINISH_STATUSES = (RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled, RunStatus.skipped)


class JobType(StrEnum):
    planning = "planning"
    aggregate = "aggregate"


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class RunLocation(StrEnum):
    active = "active"
    archived = "archived"
    missing = "missing"
    purged = "purged"
