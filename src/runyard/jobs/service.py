"""The job operations the CLI (and later the web API) call: enqueue, cancel, wait, log."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from runyard.artifacts import refuse_swapped_folder
from runyard.errors import NotFound, RunyardError
from runyard.fsutil import read_regular_file
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


def enqueue_planning(yard: Yard, plan_version_id: str, created_by: str | None = None) -> Job:
    """Queue a planning job; refused at once for a locked scenario or an unknown runner.
    ``created_by``: the token name of a job queued through the web API."""
    with yard.read() as conn:
        plan = get_plan(conn, plan_version_id)
        scenario = get_scenario(conn, plan.scenario_id)
    ensure_unlocked(scenario, "running a plan")
    yard.settings.runner(plan.runner)
    return _enqueue(yard, JobType.planning, plan.plan_version_id, created_by)


def enqueue_aggregate(yard: Yard, plan_version_id: str, created_by: str | None = None) -> Job:
    with yard.read() as conn:
        plan = get_plan(conn, plan_version_id)
    return _enqueue(yard, JobType.aggregate, plan.plan_version_id, created_by)


def _enqueue(
    yard: Yard, job_type: JobType, plan_version_id: str, created_by: str | None = None
) -> Job:
    with yard.write() as conn:
        return job_registry.enqueue(
            conn,
            job_type,
            plan_version_id,
            max_attempts=yard.settings.file.jobs.max_attempts,
            created_by=created_by,
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
        parts.append(_read_log(job_log_path(yard, job.job_id), "the worker's log"))
    except FileNotFoundError:
        parts.append("(no worker has written about this job yet)\n")
    except RunyardError as exc:
        parts.append(f"({exc.message})\n")
    if job.run_id:
        try:
            run_dir = Path(get_run(yard, job.run_id).path)
            # A run folder swapped for a link, or a runner.log that is a fifo, is said,
            # never followed or waited on: this page must always answer.
            refuse_swapped_folder(run_dir)
            output = _read_log(run_dir / RUNNER_LOG, RUNNER_LOG)
            parts.append(f"--- {RUNNER_LOG} of run {job.run_id} ---\n{output}")
        except (NotFound, FileNotFoundError, NotADirectoryError):
            pass
        except RunyardError as exc:
            parts.append(f"--- {RUNNER_LOG} of run {job.run_id} ---\n({exc.message})\n")
    return "".join(parts)


def _read_log(path: Path, what: str) -> str:
    """A log's text (its last ``LOG_TAIL_BYTES`` when longer), never blocking on a file
    that is not a regular one; bytes that are not UTF-8 are replaced: it is only shown."""
    size = os.stat(path).st_size
    skipped = max(0, size - LOG_TAIL_BYTES)
    raw = read_regular_file(path, what, LOG_TAIL_BYTES, offset=skipped)
    text = raw[:LOG_TAIL_BYTES].decode("utf-8", errors="replace")
    return f"(… the first {skipped:,} bytes left out …)\n{text}" if skipped else text


LOG_TAIL_BYTES = 4 * 1024 * 1024
