"""``/api/v1``: the registry, read side (scenarios, config versions, plan versions, runs,
jobs), on the same core functions as the CLI. Lists are keyset pages: pass a page's
``next_cursor`` as ``after``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse
from pydantic import BaseModel, Field

from runyard.artifacts import DEFAULT_LIMIT as ARTIFACT_LIMIT
from runyard.compare import RunComparison, compare_runs
from runyard.ids import validate_run_id
from runyard.jobs import service as job_service
from runyard.lifecycle.batches import (
    BatchDetail,
    BatchSummary,
    RunEvent,
    get_batch,
    list_batches,
    run_history,
)
from runyard.models import (
    ConfigDiff,
    ConfigVersion,
    Job,
    Page,
    PlanDetail,
    Run,
    RunLocation,
    RunStatus,
    Scenario,
)
from runyard.query import parse_query
from runyard.registry import configs, plans, scenarios
from runyard.registry import jobs as job_registry
from runyard.registry.lifecycle import Execution, list_executions
from runyard.registry.lineage import plan_detail
from runyard.registry.runs import RunFilter, get_run, list_runs
from runyard.web.auth import require_access
from runyard.web.files import ArtifactEntry, artifact_entries, download_name, resolve_requested
from runyard.yard import Yard


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, the same as the CLI's --json error code")
    message: str
    hint: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "the Host header is not one this server answers to",
        401: "no token, or one that is not valid (on a server with tokens)",
        403: "refused: the token's role is too low, or a cross-site write",
        404: "an unknown id",
        409: "refused by the current state (exists already, busy, not archived…)",
        413: "a request body over the size limit",
        422: "invalid input",
        423: "the scenario is locked",
        503: "the registry database needs attention",
    }
    return {s: {"model": ErrorResponse, "description": described[s]} for s in statuses}


READ_ERRORS = _errors(400, 401, 404, 409, 422, 503)
# Routes that answer text or a file still answer errors in JSON: say so explicitly (a
# ``model`` would be filed under the route's own media type).
JSON_ERRORS_OF_NON_JSON_ROUTE: dict[int | str, dict[str, Any]] = {
    status: {
        "description": entry["description"],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
    for status, entry in READ_ERRORS.items()
}
WRITE_ERRORS = _errors(400, 401, 403, 404, 409, 413, 422, 423, 503)

router = APIRouter(prefix="/api/v1", responses=READ_ERRORS, dependencies=[Depends(require_access)])

Limit = Annotated[int, Query(ge=1, le=1000, description="items per page")]
After = Annotated[str | None, Query(description="the next_cursor of the previous page")]


async def current_yard(request: Request) -> Yard:
    # async: it only reads app state, so FastAPI calls it on the event loop instead of
    # handing it to a worker thread (a thread hop per request).
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


@router.get("/plans", response_model=Page[plans.PlanListItem], tags=["plans"])
def plan_list(
    yard: YardDep,
    limit: Limit = 100,
    after: After = None,
    scenario: Annotated[str | None, Query(description="scenario id or name")] = None,
    config_version_id: str | None = None,
) -> Any:
    """Plan versions, newest first, each with its run count and the mean of each
    configured KPI (``[kpis.NAME]``) over its runs."""
    kpi_names = list(yard.settings.kpis)
    with yard.read() as conn:
        return plans.list_plans_with_stats(
            conn, kpi_names, limit, after, scenario, config_version_id
        )


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
    where: Annotated[
        str | None,
        Query(
            description="a query over KPIs, params, tags, config and attributes "
            "(docs/query.md), e.g. kpi.fill_rate >= 0.95 and tag.owner = 'ann'",
            max_length=10_000,
        ),
    ] = None,
    order_by: Annotated[
        list[str] | None,
        Query(description="sort keys, e.g. kpi.total_cost asc (repeatable; ties newest first)"),
    ] = None,
) -> Any:
    """Runs matching the filters and the query, newest first unless ``order_by`` says
    otherwise; every filter combines with the others. A bad query is a 422 that says
    where it went wrong."""
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
    query = parse_query(where, order_by)
    return list_runs(yard, filters, limit=limit, after=after, query=query)


@router.get("/runs/compare", response_model=RunComparison, tags=["runs"])
def run_compare(
    yard: YardDep,
    ids: Annotated[list[str], Query(description="two or more run ids")],
) -> Any:
    """Runs side by side: parameters, config differences, KPIs, and PSI series."""
    return compare_runs(yard, ids)


@router.get("/runs/{run_id}", response_model=Run, tags=["runs"])
def run_show(yard: YardDep, run_id: str) -> Any:
    """One run: its plan version, config version and scenario ids, summary, tags, where
    its folder is."""
    return get_run(yard, validate_run_id(run_id))


class ArtifactList(BaseModel):
    items: list[ArtifactEntry]
    truncated: bool = Field(description="the run has more files than were listed")


@router.get("/runs/{run_id}/artifacts", response_model=ArtifactList, tags=["runs"])
def run_artifacts(yard: YardDep, run_id: str) -> Any:
    """The files of the run's folder (symlinks listed, never followed). A name that is
    not UTF-8 is in display form (``\\xNN``), its exact bytes in ``path_b64``."""
    run = get_run(yard, validate_run_id(run_id))
    items, truncated = artifact_entries(Path(run.path), ARTIFACT_LIMIT)
    return ArtifactList(items=items, truncated=truncated)


@router.get(
    "/runs/{run_id}/artifacts/{path:path}",
    response_class=FileResponse,
    tags=["runs"],
    responses={200: {"content": {"application/octet-stream": {}}}, **JSON_ERRORS_OF_NON_JSON_ROUTE},
)
def run_artifact(
    yard: YardDep,
    run_id: str,
    path: str,
    path_b64: Annotated[
        str | None,
        Query(description="the exact bytes of a path that is not UTF-8, as the listing gives"),
    ] = None,
) -> FileResponse:
    """One file of the run's folder; only a file inside that folder is ever served."""
    run = get_run(yard, validate_run_id(run_id))
    real = resolve_requested(Path(run.path), path, path_b64)
    return FileResponse(
        real,
        media_type="application/octet-stream",
        filename=download_name(real),
        headers={"X-Content-Type-Options": "nosniff"},
    )


@router.get("/runs/{run_id}/history", response_model=list[RunEvent], tags=["runs"])
def run_history_of(yard: YardDep, run_id: str) -> Any:
    """Every archive, restore and purge of the run, oldest first."""
    run = get_run(yard, validate_run_id(run_id))
    return run_history(yard.settings, run.run_id)


@router.get("/archives", response_model=list[BatchSummary], tags=["archives"])
def archive_batches(yard: YardDep) -> Any:
    """The archive root's batches, newest first, with counts and sizes."""
    return list_batches(yard.settings)


@router.get("/archives/{batch_id}", response_model=BatchDetail, tags=["archives"])
def archive_batch(yard: YardDep, batch_id: str) -> Any:
    """A batch's archive report (entries, skips with reasons) and the restores done from it."""
    return get_batch(yard.settings, batch_id)


@router.get("/executions", response_model=Page[Execution], tags=["archives"])
def executions(yard: YardDep, limit: Limit = 50, after: After = None) -> Any:
    """The execution log: every archive, restore, recover, retention and purge."""
    with yard.read() as conn:
        return list_executions(conn, limit=limit, after=after)


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


@router.get(
    "/jobs/{job_id}/log",
    response_class=PlainTextResponse,
    tags=["jobs"],
    responses=JSON_ERRORS_OF_NON_JSON_ROUTE,
)
def job_log(yard: YardDep, job_id: str) -> str:
    """The worker's lines about the job, then its runner's output."""
    return job_service.job_log(yard, job_service.get_job(yard, job_id))
