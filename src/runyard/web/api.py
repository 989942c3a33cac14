"""``/api/v1``: the registry, read side (scenarios, config versions, plan versions, runs,
jobs), on the same core functions as the CLI. Lists are keyset pages: pass a page's
``next_cursor`` as ``after``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse

from runyard.ids import validate_run_id
from runyard.jobs import service as job_service
from runyard.models import (
    ConfigDiff,
    ConfigVersion,
    Job,
    Page,
    PlanDetail,
    PlanVersion,
    Run,
    RunLocation,
    RunStatus,
    Scenario,
)
from runyard.registry import configs, plans, scenarios
from runyard.registry import jobs as job_registry
from runyard.registry.lineage import plan_detail
from runyard.registry.runs import RunFilter, get_run, list_runs
from runyard.yard import Yard

router = APIRouter(prefix="/api/v1")

Limit = Annotated[int, Query(ge=1, le=1000, description="items per page")]
After = Annotated[str | None, Query(description="the next_cursor of the previous page")]


def current_yard(request: Request) -> Yard:
    yard: Yard = request.app.state.yard
    return yard


YardDep = Annotated[Yard, Depends(current_yard)]


@router.get("/scenarios", response_model=Page[Scenario], tags=["scenarios"])
def scenario_list(yard: YardDep, limit: Limit = 100, after: After = None) -> Any:
    with yard.read() as conn:
        return scenarios.list_scenarios(conn, limit=limit, after=after)


@router.get("/scenarios/{scenario}", response_model=Scenario, tags=["scenarios"])
def scenario_show(yard: YardDep, scenario: str) -> Any:
    """A scenario by id or name."""
    with yard.read() as conn:
        return scenarios.get_scenario(conn, scenario)


@router.get("/configs", response_model=Page[ConfigVersion], tags=["configs"])
def config_list(yard: YardDep, limit: Limit = 100, after: After = None) -> Any:
    with yard.read() as conn:
        return configs.list_configs(conn, limit=limit, after=after)


@router.get("/configs/{config_version_id}", response_model=ConfigVersion, tags=["configs"])
def config_show(yard: YardDep, config_version_id: str) -> Any:
    with yard.read() as conn:
        return configs.get_config(conn, config_version_id)


@router.get(
    "/configs/{config_version_id}/diff/{other}", response_model=ConfigDiff, tags=["configs"]
)
def config_diff(yard: YardDep, config_version_id: str, other: str) -> Any:
    with yard.read() as conn:
        return configs.diff_configs(conn, config_version_id, other)


@router.get("/plans", response_model=Page[PlanVersion], tags=["plans"])
def plan_list(
    yard: YardDep,
    limit: Limit = 100,
    after: After = None,
    scenario: Annotated[str | None, Query(description="scenario id or name")] = None,
    config_version_id: str | None = None,
) -> Any:
    with yard.read() as conn:
        return plans.list_plans(conn, limit, after, scenario, config_version_id)


@router.get("/plans/{plan_version_id}", response_model=PlanDetail, tags=["plans"])
def plan_show(
    yard: YardDep, plan_version_id: str, runs: Annotated[int, Query(ge=0, le=1000)] = 20
) -> Any:
    """A plan version with its scenario, config version, newest runs, jobs and aggregates."""
    return plan_detail(yard, plan_version_id, run_limit=runs)


@router.get("/runs", response_model=Page[Run], tags=["runs"])
def run_list(
    yard: YardDep,
    limit: Limit = 50,
    after: After = None,
    plan_version_id: str | None = None,
    scenario: Annotated[str | None, Query(description="scenario id or name")] = None,
    config_version_id: str | None = None,
    status: RunStatus | None = None,
    group: str | None = None,
    location: RunLocation | None = None,
    legacy: bool | None = None,
    started_after: datetime | None = None,
    started_before: datetime | None = None,
) -> Any:
    """Runs newest first; every filter combines with the others."""
    filters = RunFilter(
        plan_version_id=plan_version_id,
        scenario=scenario,
        config_version_id=config_version_id,
        status=status,
        group=group,
        location=location,
        legacy=legacy,
        started_after=started_after,
        started_before=started_before,
    )
    return list_runs(yard, filters, limit=limit, after=after)


@router.get("/runs/{run_id}", response_model=Run, tags=["runs"])
def run_show(yard: YardDep, run_id: str) -> Any:
    """One run: its plan version, config version and scenario ids, summary, tags, where
    its folder is."""
    return get_run(yard, validate_run_id(run_id))


@router.get("/jobs", response_model=Page[Job], tags=["jobs"])
def job_list(
    yard: YardDep,
    limit: Limit = 50,
    after: After = None,
    plan_version_id: str | None = None,
    type: str | None = None,
    status: str | None = None,
) -> Any:
    with yard.read() as conn:
        return job_registry.list_jobs(conn, plan_version_id, type, status, limit, after)


@router.get("/jobs/{job_id}", response_model=Job, tags=["jobs"])
def job_show(yard: YardDep, job_id: str) -> Any:
    return job_service.get_job(yard, job_id)


@router.get("/jobs/{job_id}/log", response_class=PlainTextResponse, tags=["jobs"])
def job_log(yard: YardDep, job_id: str) -> str:
    """The worker's lines about the job, then its runner's output."""
    return job_service.job_log(yard, job_service.get_job(yard, job_id))
