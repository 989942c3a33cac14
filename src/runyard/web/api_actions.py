"""``/api/v1``, write side: lock scenarios, create and run plans, aggregate, pin runs,
cancel jobs, archive and restore. Every route needs ``require_api_write`` (a token with
the route's role in ``web.auth.ROUTE_ROLES`` when the server has tokens, and no
cross-site ``Origin``) and calls the same core functions as the CLI; archive and restore
are dry runs unless the body says ``"run": true``. A job queued here records the token's
name (``created_by``), an archive or restore the execution log's "who"."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from runyard.ids import validate_run_id
from runyard.jobs import service as job_service
from runyard.lifecycle import actions
from runyard.lifecycle.archive import ArchiveOptions
from runyard.lifecycle.guards import Scope
from runyard.lifecycle.report import ArchiveReport, RestoreReport, relative_to_yard
from runyard.models import Job, PlanVersion, Run, Scenario
from runyard.registry import scenarios
from runyard.registry.plans import DEFAULT_RUNNER, create_plan_in_yard
from runyard.registry.runs import set_pinned
from runyard.web import api_record
from runyard.web.api import WRITE_ERRORS, YardDep
from runyard.web.auth import acting, require_api_write, who_of

router = APIRouter(
    prefix="/api/v1", dependencies=[Depends(require_api_write)], responses=WRITE_ERRORS
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LockRequest(_Body):
    reason: str | None = Field(default=None, description="why it is frozen (locking only)")


class PlanCreateRequest(_Body):
    scenario: str = Field(description="the base scenario, by id or name")
    config_version_id: str
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None
    runner: str = Field(default=DEFAULT_RUNNER, description="a [runners.NAME] of runyard.toml")


class GuardOverrides(_Body):
    keep_recent_minutes: int | None = Field(default=None, ge=0, le=10**8)
    keep_last_runs: int | None = Field(default=None, ge=0, le=10**8)
    reason: str | None = Field(default=None, max_length=1000)
    run: bool = Field(default=False, description="move for real (default: a dry run)")


class ArchiveRequest(GuardOverrides):
    """Exactly one of ``groups``, ``run_ids`` or ``all`` chooses the runs, as on the CLI."""

    groups: list[str] = Field(default_factory=list)
    run_ids: list[str] = Field(default_factory=list)
    all: bool = False
    unscoped_only: bool = False
    legacy: bool = False
    older_than_days: float | None = Field(default=None, ge=0)


class RestoreRequest(_Body):
    run_ids: list[str] = Field(default_factory=list, description="only these (default: all)")
    run: bool = Field(default=False, description="move for real (default: a dry run)")


class RunRestoreRequest(_Body):
    run: bool = Field(default=False, description="move for real (default: a dry run)")


class ArchiveResponse(BaseModel):
    dry_run: bool
    report_path: str | None = Field(description="relative to the yard")
    recovered: list[str]
    report: ArchiveReport


class RestoreResponse(BaseModel):
    dry_run: bool
    report_path: str = Field(description="relative to the yard")
    recovered: list[str]
    report: RestoreReport


def _command(request: Request) -> list[str]:
    return ["runyard serve", f"{request.method} {request.url.path}"]


def _archive(
    yard: YardDep, request: Request, scope: Scope, body: GuardOverrides
) -> ArchiveResponse:
    options = ArchiveOptions(
        scope=scope,
        keep_recent_minutes=body.keep_recent_minutes,
        keep_last_runs=body.keep_last_runs,
        reason=body.reason,
        command=_command(request),
    )
    with acting(request):
        outcome = actions.archive(yard, options, run=body.run)
    path = outcome.report_path
    return ArchiveResponse(
        dry_run=outcome.dry_run,
        report_path=relative_to_yard(yard.settings, path) if path else None,
        recovered=outcome.recovered,
        report=outcome.report,
    )


def _restored(yard: YardDep, outcome: actions.RestoreOutcome) -> RestoreResponse:
    return RestoreResponse(
        dry_run=outcome.dry_run,
        report_path=relative_to_yard(yard.settings, outcome.report_path),
        recovered=outcome.recovered,
        report=outcome.report,
    )


@router.post("/scenarios/{scenario}/lock", response_model=Scenario, tags=["scenarios"])
def scenario_lock(yard: YardDep, scenario: str, body: LockRequest | None = None) -> Any:
    """Lock a scenario: no new plan versions or runs from it (idempotent)."""
    return scenarios.set_locked_in_yard(yard, scenario, True, body.reason if body else None)


@router.post("/scenarios/{scenario}/unlock", response_model=Scenario, tags=["scenarios"])
def scenario_unlock(yard: YardDep, scenario: str) -> Any:
    return scenarios.set_locked_in_yard(yard, scenario, False)


@router.post("/plans", response_model=PlanVersion, status_code=201, tags=["plans"])
def plan_create(yard: YardDep, body: PlanCreateRequest, idem: api_record.IdemDep) -> Any:
    """A new plan version from a base scenario, a config version and parameters (with an
    ``Idempotency-Key``, a retry answers the plan the first request made)."""
    from runyard.registry.lineage_files import write_plan_lineage
    from runyard.registry.plans import create_plan

    def create(on_commit: Any) -> PlanVersion:
        if on_commit is None:
            return create_plan_in_yard(
                yard, body.scenario, body.config_version_id, body.params, body.label, body.runner
            )
        # create_plan_in_yard, with the key stored in the plan's own transaction
        with yard.write() as conn:
            plan = create_plan(
                conn, body.scenario, body.config_version_id, body.params, body.label, body.runner
            )
            yard.settings.runner(body.runner)  # Invalid, naming the file, when unknown
            on_commit(conn, plan)
        with yard.read() as conn:
            write_plan_lineage(conn, yard.settings, plan.plan_version_id)
        return plan

    return api_record.once(yard, idem, create, lambda plan: (201, plan.model_dump(mode="json")))


@router.post("/plans/{plan_version_id}/run", response_model=Job, status_code=202, tags=["plans"])
def plan_run(yard: YardDep, request: Request, plan_version_id: str) -> Any:
    """Queue a planning job; a worker (``serve``'s own, or ``runyard worker``) runs it."""
    return job_service.enqueue_planning(yard, plan_version_id, created_by=who_of(request))


@router.post(
    "/plans/{plan_version_id}/aggregate", response_model=Job, status_code=202, tags=["plans"]
)
def plan_aggregate(yard: YardDep, request: Request, plan_version_id: str) -> Any:
    """Queue an aggregate job over the plan's succeeded runs."""
    return job_service.enqueue_aggregate(yard, plan_version_id, created_by=who_of(request))


@router.post("/runs/{run_id}/pin", response_model=Run, tags=["runs"])
def run_pin(yard: YardDep, run_id: str) -> Any:
    """Pin a run: no archive, retention or purge touches it."""
    return set_pinned(yard, validate_run_id(run_id), True)


@router.post("/runs/{run_id}/unpin", response_model=Run, tags=["runs"])
def run_unpin(yard: YardDep, run_id: str) -> Any:
    return set_pinned(yard, validate_run_id(run_id), False)


@router.post("/runs/{run_id}/archive", response_model=ArchiveResponse, tags=["archives"])
def run_archive(
    yard: YardDep, request: Request, run_id: str, body: GuardOverrides | None = None
) -> Any:
    """Archive this one run, every guard applied (a dry run unless ``run``)."""
    scope = Scope(run_ids=[validate_run_id(run_id)])
    return _archive(yard, request, scope, body or GuardOverrides())


@router.post("/runs/{run_id}/restore", response_model=RestoreResponse, tags=["archives"])
def run_restore(
    yard: YardDep, request: Request, run_id: str, body: RunRestoreRequest | None = None
) -> Any:
    """Restore this archived run from its batch (a dry run unless ``run``)."""
    run = body.run if body else False
    with acting(request):
        outcome = actions.restore_run(yard, run_id, run=run, command=_command(request))
    return _restored(yard, outcome)


@router.post("/jobs/{job_id}/cancel", response_model=Job, tags=["jobs"])
def job_cancel(yard: YardDep, job_id: str) -> Any:
    """Cancel a queued job, or stop a running one (its runner's process group)."""
    return job_service.cancel_job(yard, job_id)


@router.post("/archives", response_model=ArchiveResponse, tags=["archives"])
def archive(yard: YardDep, request: Request, body: ArchiveRequest) -> Any:
    """Archive run folders, every guard applied: a dry run (the report of what would move,
    written to the logs folder) unless ``run``."""
    scope = Scope(
        groups=body.groups,
        run_ids=body.run_ids,
        all=body.all,
        unscoped_only=body.unscoped_only,
        legacy=body.legacy,
        older_than_days=body.older_than_days,
    )
    return _archive(yard, request, scope, body)


@router.post("/archives/{batch_id}/restore", response_model=RestoreResponse, tags=["archives"])
def batch_restore(
    yard: YardDep,
    request: Request,
    batch_id: str,
    body: RestoreRequest | None = None,
) -> Any:
    """Restore a batch, or only some of its runs: never over an existing folder (a
    conflict is reported instead). A dry run unless ``run``."""
    body = body or RestoreRequest()
    with acting(request):
        outcome = actions.restore(
            yard, batch_id, body.run_ids, run=body.run, command=_command(request)
        )
    return _restored(yard, outcome)
