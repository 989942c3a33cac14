"""The types core functions return: pydantic models, never ORM rows.

Their JSON form (``model_dump(mode="json")``) is what ``--json`` prints and,
later, what the HTTP API answers; every object carries its id key at the top.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from runyard.statuses import (
    FINISH_STATUSES,
    TERMINAL_STATUSES,
    JobStatus,
    JobType,
    RunLocation,
    RunStatus,
)

__all__ = [
    "FINISH_STATUSES",
    "TERMINAL_STATUSES",
    "JobStatus",
    "JobType",
    "RunLocation",
    "RunStatus",
]


class FrozenModel(BaseModel):
    """The base of runyard's read-only records: built once, never changed afterwards."""

    model_config = ConfigDict(frozen=True)


class Scenario(FrozenModel):
    scenario_id: str
    name: str
    description: str
    locked: bool
    locked_reason: str | None = None
    locked_at: datetime | None = None
    created_at: datetime
    data_digest: str | None = Field(
        default=None, description="sha256 of the scenario data's canonical JSON, if any"
    )


class ConfigVersion(FrozenModel):
    config_version_id: str
    name: str | None
    digest: str
    created_at: datetime
    content: dict[str, Any] = Field(description="the canonical JSON snapshot")


class ConfigAdded(ConfigVersion):
    created: bool = Field(description="false when identical content was already stored")


class ConfigChange(FrozenModel):
    path: str
    change: str  # "added" | "removed" | "changed"
    old: Any = None
    new: Any = None


class ConfigDiff(FrozenModel):
    config_version_id_a: str
    config_version_id_b: str
    identical: bool
    changes: list[ConfigChange]
    unified_diff: str


class PlanVersion(FrozenModel):
    plan_version_id: str
    scenario_id: str
    config_version_id: str
    params: dict[str, Any]
    label: str | None
    runner: str
    created_at: datetime


class Run(FrozenModel):
    run_id: str
    plan_version_id: str | None
    config_version_id: str | None
    scenario_id: str | None
    group: str | None
    status: RunStatus
    legacy: bool
    location: RunLocation
    pinned: bool
    created_at: datetime
    started_at: datetime
    finished_at: datetime | None
    summary: dict[str, Any]
    tags: dict[str, str]
    error: str | None
    archive_batch_id: str | None = Field(default=None, description="when archived")
    path: str = Field(description="the run directory, absolute (where it is now)")
    size_bytes: int | None = Field(
        default=None, description="its folder's bytes when last measured (finish, import, move)"
    )
    created_by: str | None = Field(
        default=None, description="the token name that recorded it through the web API"
    )


class Job(FrozenModel):
    job_id: str
    type: JobType
    status: JobStatus
    plan_version_id: str | None
    params: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    attempts: int
    max_attempts: int
    error: str | None
    run_id: str | None = Field(description="the run a planning job produced")
    worker_id: str | None = Field(description="the worker that holds or held it")
    heartbeat_at: datetime | None
    cancel_requested: bool
    result: dict[str, Any] | None = Field(description="what the job produced (aggregates)")
    created_by: str | None = Field(default=None, description="the token that queued it (web API)")


class Aggregate(FrozenModel):
    aggregate_id: str
    plan_version_id: str
    job_id: str
    path: str = Field(description="the folder of aggregate.csv and aggregate.json")
    run_count: int
    created_at: datetime


class PlanDetail(PlanVersion):
    scenario: Scenario
    config_version: ConfigVersion
    run_count: int
    runs: list[Run]
    jobs: list[Job] = Field(default_factory=list, description="its newest jobs")
    aggregates: list[Aggregate] = Field(default_factory=list, description="newest first")


T = TypeVar("T")


class Page(FrozenModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="pass as --after/after to get the next page")


class ImportOutcome(FrozenModel):
    path: str
    run_id: str | None
    outcome: str  # "imported" | "legacy" | "already_registered" | "error"
    message: str | None = None


class ImportResult(FrozenModel):
    items: list[ImportOutcome]
    imported: int
    legacy: int
    already_registered: int
    errors: int


class SavedView(FrozenModel):
    """A saved view of the runs list: a query, an order and the KPI columns, by name."""

    name: str
    where: str = Field(description="the query (docs/query.md); empty for every run")
    order_by: list[str] = Field(description="sort keys, e.g. 'kpi.total_cost asc'")
    columns: list[str] = Field(description="KPI columns; empty for the yard's defaults")
    created_at: datetime
    updated_at: datetime
