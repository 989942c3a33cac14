"""The job operations the CLI (and later the web API) call: enqueue, cancel, wait, log."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from runyard.errors import NotFound
from runyard.jobs.runners import RUNNER_LOG
from runyard.jobs.worker import Worker, job_log_path
from runyard.models import Job, JobStatus, JobType
from runyard.registry import jobs as job_registry
from runyard.registry.plans import get_plan
from runyard.registry.runs import get_run
from runyard.registry.scenarios import ensure_unlocked, get_scenario

if TYPE_CHECKING:
    from runyard.yard import Yard

FINISHED = (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


def enqueue_planning(yard: Yard, plan_version_id: str) -> Job:
    """Queue a planning job; refused at once for a locked scenario or an unknown runner."""
    with yard.read() as conn:
        plan = get_plan(conn, plan_version_id)
        scenario = get_scenario(conn, plan.scenario_id)
    ensure_unlocked(scenario, "running a plan")
    yard.settings.runner(plan.runner)
    return _enqueue(yard, JobType.planning, plan.plan_version_id)


def enqueue_aggregate(yard: Yard, plan_version_id: str) -> Job:
    with yard.read() as conn:
        plan = get_plan(conn, plan_version_id)
    return _enqueue(yard, JobType.aggregate, plan.plan_version_id)


def _enqueue(yard: Yard, job_type: JobType, plan_version_id: str) -> Job:
    with yard.write() as conn:
        return job_registry.enqueue(
            conn, job_type, plan_version_id, max_attempts=yard.settings.file.jobs.max_attempts
        )


def cancel_job(yard: Yard, job_id: str) -> Job:
    with yard.write() as conn:
        return job_registry.request_cancel(conn, job_id)


def get_job(yard: Yard, job_id: str) -> Job:
    with yard.read() as conn:
        return job_registry.get_job(conn, job_id)


def run_or_wait(yard: Yard, job_id: str, poll_seconds: float = 0.5) -> Job:
    """Run the job here if it is still queued, else wait for whoever runs it."""
    Worker(yard, only_job=job_id).run()
    while (job := get_job(yard, job_id)).status not in FINISHED:
        time.sleep(poll_seconds)
    return job


def job_log(yard: Yard, job: Job) -> str:
    """The worker's lines about the job, then its runner's output (kept in the run)."""
    parts: list[str] = []
    try:
        parts.append(job_log_path(yard, job.job_id).read_text(encoding="utf-8"))
    except FileNotFoundError:
        parts.append("(no worker has written about this job yet)\n")
    if job.run_id:
        try:
            run_dir = get_run(yard, job.run_id).path
            with open(f"{run_dir}/{RUNNER_LOG}", encoding="utf-8", errors="replace") as log:
                output = log.read()
            parts.append(f"--- {RUNNER_LOG} of run {job.run_id} ---\n{output}")
        except (NotFound, FileNotFoundError):
            pass
    return "".join(parts)
