"""What a job does once a worker holds it: a planning job runs a plan through its
runner and registers the run; an aggregate job tabulates a plan's succeeded runs."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runyard import canonical, fsutil
from runyard.errors import Invalid, RunyardError
from runyard.fsutil import write_atomic
from runyard.jobs.aggregate import aggregate_summaries, write_aggregate
from runyard.jobs.entry import SUMMARY_NAME
from runyard.jobs.runners import RUNNER_LOG, RunnerFiles, run_runner
from runyard.models import Job, JobStatus, JobType, RunStatus
from runyard.registry import jobs as job_registry
from runyard.registry.configs import get_config
from runyard.registry.plans import get_plan
from runyard.registry.runs import RunFilter, finish_run, list_runs, start_run
from runyard.registry.scenarios import data_content, ensure_unlocked, get_scenario

if TYPE_CHECKING:
    from runyard.yard import Yard

SKIPPED_NOTE = "simulation skipped (RUNYARD_SKIP_SIMULATION=1): the runner did not run"


@dataclass
class JobControl:
    """What a running job may ask of its worker: should it stop, and a log line."""

    worker_id: str
    should_stop: Callable[[], bool]
    log: Callable[[str], None]


@dataclass
class JobEnd:
    status: JobStatus
    error: str | None = None
    result: dict[str, Any] | None = field(default=None)


def execute(yard: Yard, job: Job, control: JobControl) -> JobEnd:
    """Do the job; every failure becomes a JobEnd with a clear error, never an exception
    (except BaseException such as KeyboardInterrupt, which the worker handles)."""
    try:
        if job.type == JobType.planning:
            return _planning(yard, job, control)
        return _aggregate(yard, job, control)
    except RunyardError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        return JobEnd(JobStatus.failed, f"{exc.message}{hint}")


# --- planning -------------------------------------------------------------------------------


def _planning(yard: Yard, job: Job, control: JobControl) -> JobEnd:
    settings = yard.settings
    if job.plan_version_id is None:
        raise Invalid("a planning job needs a plan version")
    with yard.read() as conn:
        plan = get_plan(conn, job.plan_version_id)
        scenario = get_scenario(conn, plan.scenario_id)
        config = get_config(conn, plan.config_version_id)
        data_text = data_content(conn, scenario.data_digest) if scenario.data_digest else None
    ensure_unlocked(scenario, "running a planning job")
    runner = settings.runner(plan.runner)
    run = start_run(yard, plan.plan_version_id, tags={"job_id": job.job_id})
    with yard.write() as conn:
        job_registry.set_run(conn, job.job_id, control.worker_id, run.run_id)
    control.log(f"run {run.run_id} started in {run.path}")
    run_dir = Path(run.path)
    try:
        files = RunnerFiles(
            run_dir=run_dir,
            run_id=run.run_id,
            job_id=job.job_id,
            plan_version_id=plan.plan_version_id,
            config=run_dir / "config.json",
            params=run_dir / "params.json",
            plan=run_dir / "plan.json",
            scenario_data=_data_file(yard, scenario.data_digest, data_text),
        )
        _write_json(files.config, config.content)
        _write_json(files.params, plan.params)
        _write_json(files.plan, plan.model_dump(mode="json"))
        _write_json(
            run_dir / "scenario.json",
            {**scenario.model_dump(mode="json"), "data_file": str(files.scenario_data or "")},
        )
        if settings.skip_simulation:
            control.log(SKIPPED_NOTE)
            finish_run(yard, run.run_id, RunStatus.skipped, summary={"note": SKIPPED_NOTE})
            return JobEnd(JobStatus.succeeded)
        try:
            outcome = run_runner(runner, files, control.should_stop, control.log)
        except OSError as exc:
            raise Invalid(f"cannot start the runner {plan.runner!r}: {exc}") from None
        summary = _read_summary(run_dir)
        if outcome.ok:
            finish_run(yard, run.run_id, RunStatus.succeeded, summary=summary)
            return JobEnd(JobStatus.succeeded)
        if outcome.cancelled:
            error = "cancelled while the runner ran; the runner was stopped"
            finish_run(yard, run.run_id, RunStatus.cancelled, summary=summary, error=error)
            return JobEnd(JobStatus.cancelled, error)
        if outcome.timed_out:
            error = f"timed out after {runner.timeout_seconds} s; the runner was stopped"
        else:
            error = f"the runner exited with code {outcome.returncode}" + _tail(run_dir)
        finish_run(yard, run.run_id, RunStatus.failed, summary=summary, error=error)
        return JobEnd(JobStatus.failed, error)
    except RunyardError as exc:
        _fail_run(yard, run.run_id, exc.message)
        raise
    except BaseException:
        _fail_run(yard, run.run_id, "the worker stopped while the job ran")
        raise


def _fail_run(yard: Yard, run_id: str, error: str) -> None:
    # Already finished, or its folder is gone: the job's error says enough then.
    with contextlib.suppress(RunyardError):
        finish_run(yard, run_id, RunStatus.failed, error=error)


def _write_json(path: Path, value: Any) -> None:
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    write_atomic(path, text.encode())


def _data_file(yard: Yard, digest: str | None, text: str | None) -> Path | None:
    """The scenario's data as a file runners can read, written once per digest."""
    if digest is None or text is None:
        return None
    path = yard.settings.scenario_data_dir / f"{digest}.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text.encode())
    return path


def _read_summary(run_dir: Path) -> dict[str, Any]:
    """What the runner left in ``summary.json``; a file that cannot be stored (not JSON, a
    FIFO, beyond the JSON limits) becomes a ``summary_error`` saying why, so the run still
    finishes with the runner's status."""
    path = run_dir / SUMMARY_NAME
    try:
        value = canonical.loads_checked(
            fsutil.read_regular_file(path, SUMMARY_NAME, canonical.MAX_JSON_BYTES),
            SUMMARY_NAME,
        )
    except FileNotFoundError:
        return {}
    except OSError as exc:
        return {"summary_error": f"{SUMMARY_NAME} could not be read: {exc.strerror or exc}"}
    except Invalid as exc:
        return {"summary_error": f"{SUMMARY_NAME} could not be read: {exc.message}"}
    if not isinstance(value, dict):
        return {"summary_error": f"{SUMMARY_NAME} is not a JSON object"}
    return value


def _tail(run_dir: Path, lines: int = 5) -> str:
    try:
        text = (run_dir / RUNNER_LOG).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    last = [line for line in text.splitlines() if line.strip()][-lines:]
    return ("; last lines of runner.log:\n" + "\n".join(last)) if last else ""


# --- aggregate ------------------------------------------------------------------------------


def _aggregate(yard: Yard, job: Job, control: JobControl) -> JobEnd:
    if job.plan_version_id is None:
        raise Invalid("an aggregate job needs a plan version")
    plan_id = job.plan_version_id
    summaries: list[tuple[str, dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        page = list_runs(
            yard, RunFilter(plan_version_id=plan_id, status=RunStatus.succeeded), 1000, cursor
        )
        summaries += [(r.run_id, r.summary) for r in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    if not summaries:
        raise Invalid(
            f"plan version {plan_id} has no succeeded runs to aggregate",
            hint=f"run it first: `runyard plan run {plan_id} --wait`",
        )
    summaries.reverse()  # oldest first, as they were made
    table = aggregate_summaries(summaries)
    folder = yard.settings.aggregates_dir / plan_id / job.job_id
    meta = {
        "plan_version_id": plan_id,
        "job_id": job.job_id,
        "created_at": datetime.now(UTC).isoformat(),
        "run_count": len(summaries),
    }
    write_aggregate(folder, table, meta)
    path = str(folder.relative_to(yard.settings.yard_path))
    with yard.write() as conn:
        aggregate = job_registry.add_aggregate(conn, plan_id, job.job_id, path, len(summaries))
    control.log(f"aggregated {len(summaries)} runs into {path}")
    return JobEnd(
        JobStatus.succeeded,
        result={"aggregate_id": aggregate.aggregate_id, "path": path, "runs": len(summaries)},
    )
