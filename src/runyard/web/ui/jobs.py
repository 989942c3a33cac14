"""``/ui/jobs``: the job list (filters, keyset pages, the "aggregate a plan" form), a job's
page with its log (refreshing itself with htmx while the job is queued or running),
cancel, and the files an aggregate job left.

Routes only parse and render: the queue is ``jobs/service.py`` and ``registry/jobs.py``,
the same functions ``runyard job …`` and ``runyard plan aggregate`` call.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from runyard.errors import Invalid, NotFound
from runyard.jobs import aggregate as aggregate_files
from runyard.jobs import service as job_service
from runyard.models import Job, JobStatus, JobType
from runyard.registry import jobs as job_registry
from runyard.registry import plans as plan_registry
from runyard.registry.scenarios import scenario_names
from runyard.web.auth import require_ui_write, who_of
from runyard.web.ui.render import redirect, render
from runyard.yard import Yard

router = APIRouter()

PAGE_SIZE = 50
RECENT_PLANS = 50  # the aggregate form's suggestions
ERROR_PREVIEW = 80  # characters of an error shown in the list; the rest on hover
LIVE_TARGET = "job-live"  # the id of the job page's self-refreshing fragment
TABLE_TARGET = "jobs-table"  # the id of the job list's table, swapped by the filters
AGGREGATE_FILES = (aggregate_files.CSV_NAME, aggregate_files.JSON_NAME)
ACTIVE = (JobStatus.queued, JobStatus.running)


def _yard(request: Request) -> Yard:
    yard: Yard = request.app.state.yard
    return yard


def _blank_to_none(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _fragment_for(request: Request, target: str, default: bool = False) -> bool:
    """True for an htmx request that swaps only ``target`` (not a history restore,
    which wants the whole page); ``default`` when it names no target."""
    if (
        request.headers.get("HX-Request") != "true"
        or request.headers.get("HX-History-Restore-Request") == "true"
    ):
        return False
    named = request.headers.get("HX-Target")
    return default if named is None else named == target


def _vary(response: Response) -> Response:
    # The same URL answers a page or a fragment: caches must tell them apart.
    response.headers["Vary"] = "HX-Request, HX-Target"
    return response


# ---------------------------------------------------------------------------- list


def _list_page(
    request: Request,
    *,
    plan_version_id: str | None = None,
    job_type: str | None = None,
    status: str | None = None,
    after: str | None = None,
    aggregate_plan: str = "",
    aggregate_error: str | None = None,
    status_code: int = 200,
) -> Response:
    yard = _yard(request)
    with yard.read() as conn:
        page = job_registry.list_jobs(conn, plan_version_id, job_type, status, PAGE_SIZE, after)
        plans = plan_registry.list_plans(conn, limit=RECENT_PLANS).items
        names = scenario_names(conn, (p.scenario_id for p in plans))
    filters = {"plan_version_id": plan_version_id, "type": job_type, "status": status}
    api_query = urlencode({k: v for k, v in {**filters, "after": after}.items() if v})
    context: dict[str, Any] = {
        "page": page,
        "filters": filters,
        "filtered": any(filters.values()),
        "types": [t.value for t in JobType],
        "statuses": [s.value for s in JobStatus],
        "error_preview": ERROR_PREVIEW,
        "table_target": TABLE_TARGET,
    }
    template = "jobs/list.html"
    if status_code == 200 and _fragment_for(request, TABLE_TARGET):
        template = "jobs/_table.html"
    response = render(
        request,
        template,
        title="Jobs",
        section="jobs",
        json_href="/api/v1/jobs" + (f"?{api_query}" if api_query else ""),
        status_code=status_code,
        plans=plans,
        scenario_names=names,
        aggregate_plan=aggregate_plan,
        aggregate_error=aggregate_error,
        **context,
    )
    return _vary(response)


@router.get("/jobs", response_class=HTMLResponse)
def job_list(
    request: Request,
    plan_version_id: str | None = None,
    type: str | None = None,
    status: str | None = None,
    after: str | None = None,
) -> Response:
    """Jobs newest first, filtered by plan version, type and status (blank = any)."""
    return _list_page(
        request,
        plan_version_id=_blank_to_none(plan_version_id),
        job_type=_blank_to_none(type),
        status=_blank_to_none(status),
        after=_blank_to_none(after),
    )


@router.post(
    "/jobs/aggregate", response_class=HTMLResponse, dependencies=[Depends(require_ui_write)]
)
def aggregate(request: Request, plan_version_id: Annotated[str, Form()] = "") -> Response:
    """Queue an aggregate job of a plan version; the form again, with the error, if the
    plan is not there (nothing is queued)."""
    plan = plan_version_id.strip()
    try:
        if not plan:
            raise Invalid("enter the plan version to aggregate (pv-…)")
        job = job_service.enqueue_aggregate(_yard(request), plan, created_by=who_of(request))
    except (NotFound, Invalid) as exc:
        return _list_page(
            request,
            aggregate_plan=plan,
            aggregate_error=exc.message,
            status_code=404 if isinstance(exc, NotFound) else 422,
        )
    return redirect(
        f"/ui/jobs/{job.job_id}",
        f"Aggregate job {job.job_id} queued for plan {job.plan_version_id}.",
    )


# ---------------------------------------------------------------------------- one job


def _aggregate_links(yard: Yard, job: Job) -> list[dict[str, str]]:
    """Links to the files of a finished aggregate job, when its result names them."""
    if job.type != JobType.aggregate or not job.result or not job.plan_version_id:
        return []
    path = job.result.get("path")
    folder = yard.settings.aggregates_dir / job.plan_version_id / job.job_id
    if not isinstance(path, str) or yard.settings.yard_path / path != folder:
        return []
    return [
        {"name": name, "href": f"/ui/jobs/{job.job_id}/files/{name}"}
        for name in AGGREGATE_FILES
        if (folder / name).is_file()
    ]


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str) -> Response:
    """A job's facts and log. Queued or running, the facts and log refresh every 2 s:
    htmx asks this URL again and gets only the fragment, which stops asking once the
    job has finished."""
    yard = _yard(request)
    job = job_service.get_job(yard, job_id)
    active = job.status in ACTIVE
    elapsed = None
    if job.duration_seconds is None and job.started_at is not None and active:
        elapsed = (datetime.now(UTC) - job.started_at).total_seconds()
    live = _fragment_for(request, LIVE_TARGET, default=True)
    template = "jobs/_live.html" if live else "jobs/detail.html"
    response = render(
        request,
        template,
        title=f"Job {job.job_id}",
        section="jobs",
        json_href=f"/api/v1/jobs/{job.job_id}",
        job=job,
        active=active,
        elapsed=elapsed,
        log=job_service.job_log(yard, job),
        files=_aggregate_links(yard, job),
        live_target=LIVE_TARGET,
    )
    return _vary(response)


@router.post(
    "/jobs/{job_id}/cancel", response_class=HTMLResponse, dependencies=[Depends(require_ui_write)]
)
def cancel(request: Request, job_id: str) -> Response:
    """Cancel a queued job at once, or ask the worker of a running one to stop it."""
    job = job_service.cancel_job(_yard(request), job_id)
    if job.status == JobStatus.cancelled:
        message = f"Job {job.job_id} cancelled."
    else:
        message = f"Cancel requested: the worker will stop job {job.job_id}."
    return redirect(f"/ui/jobs/{job.job_id}", message)


@router.get("/jobs/{job_id}/files/{name}")
def aggregate_file(request: Request, job_id: str, name: str) -> Response:
    """``aggregate.csv`` or ``aggregate.json`` of an aggregate job, from its own folder."""
    yard = _yard(request)
    job = job_service.get_job(yard, job_id)
    if name not in AGGREGATE_FILES:
        raise NotFound(f"an aggregate job has no file {name[:80]!r}")
    if not any(link["name"] == name for link in _aggregate_links(yard, job)):
        raise NotFound(f"job {job.job_id} has no {name}")
    assert job.plan_version_id is not None  # _aggregate_links found the file
    path = yard.settings.aggregates_dir / job.plan_version_id / job.job_id / name
    media = "text/csv" if name.endswith(".csv") else "application/json"
    return FileResponse(path, media_type=media, filename=name, content_disposition_type="inline")
