"""``runyard job …``, ``runyard worker`` and ``runyard plan run``: jobs and who runs them."""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

import typer
from rich.text import Text

from runyard.cli.common import (
    AfterOption,
    JsonOption,
    LimitOption,
    check_range,
    check_seconds,
    yard_from,
)
from runyard.cli.lazy import lazy
from runyard.cli.output import (
    console,
    err_console,
    handles_errors,
    key_values,
    next_page_hint,
    print_json,
    short_json,
    styled_status,
    table,
    when,
)
from runyard.cli.server import client_from
from runyard.errors import JobFailed
from runyard.limits import MAX_SECONDS
from runyard.statuses import JobStatus

if TYPE_CHECKING:
    from runyard import models as _models
    from runyard import yard as _yard
    from runyard.jobs import service
    from runyard.jobs import worker as _worker_jobs
    from runyard.registry import jobs as job_registry
    from runyard.remote.client import Client
else:
    _worker_jobs = lazy("runyard.jobs.worker")
    _models = lazy("runyard.models")
    _yard = lazy("runyard.yard")
    job_registry = lazy("runyard.registry.jobs")
    service = lazy("runyard.jobs.service")


app = typer.Typer(help="Jobs: planning and aggregate work, run by workers.", no_args_is_help=True)

JobIdArg = Annotated[str, typer.Argument(help="Job id (job-…).", metavar="JOB_ID")]
WaitOption = Annotated[
    bool,
    typer.Option(
        "--wait",
        help="Run the job here (or wait for the worker that took it); exit 7 unless it succeeded.",
    ),
]


JOB_COLUMNS = ["job_id", "type", "status", "plan_version_id", "run_id", "created", "duration"]
JOB_COLUMNS += ["error"]


def _duration(job: _models.Job) -> str:
    return "-" if job.duration_seconds is None else f"{job.duration_seconds:.2f} s"


def _job_pairs(job: _models.Job) -> list[tuple[str, object]]:
    return [
        ("job_id", job.job_id),
        ("type", job.type.value),
        ("status", styled_status(job.status.value)),
        ("plan_version_id", job.plan_version_id),
        ("run_id", job.run_id),
        ("created", when(job.created_at)),
        ("started", when(job.started_at)),
        ("finished", when(job.finished_at)),
        ("duration", _duration(job)),
        ("attempts", f"{job.attempts} of {job.max_attempts}"),
        ("worker", job.worker_id),
        ("cancel requested", "yes" if job.cancel_requested else "no"),
        ("result", short_json(job.result, 200) if job.result else None),
        ("error", job.error),
    ]


def show_job(job: _models.Job, title: str, json_output: bool) -> None:
    if json_output:
        print_json(job)
    else:
        console().print(key_values(title, _job_pairs(job)))


def finish_waiting(job: _models.Job, json_output: bool) -> None:
    """Print the job that was waited for; exit 7 unless it succeeded."""
    show_job(job, "Job", json_output)
    if job.status != JobStatus.succeeded:
        message = f"job {job.job_id} {job.status.value}: {job.error or 'no error recorded'}"
        err_console().print(Text(f"error: {message}", style="red"))
        if job.run_id:
            err_console().print(f"hint: `runyard job log {job.job_id}` shows its log")
        raise typer.Exit(JobFailed.exit_code)


@app.command("list")
@handles_errors
def list_(
    ctx: typer.Context,
    plan: Annotated[
        str | None, typer.Option("--plan", help="Only this plan version.", metavar="ID")
    ] = None,
    type_: Annotated[
        str | None,
        typer.Option("--type", help="planning or aggregate.", metavar="TYPE"),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="queued, running, succeeded, failed or cancelled.",
            metavar="STATUS",
        ),
    ] = None,
    limit: LimitOption = 50,
    after: AfterOption = None,
    json_output: JsonOption = False,
) -> None:
    """List jobs, newest first, with the plan version each one concerns."""
    client = client_from(ctx)
    if client is not None:
        answer = client.get(
            "jobs", plan_version_id=plan, type=type_, status=status, limit=limit, after=after
        )
        page = _models.Page[_models.Job].model_validate(answer)
    else:
        with yard_from(ctx) as yard, yard.read() as conn:
            page = job_registry.list_jobs(conn, plan, type_, status, limit=limit, after=after)
    if json_output:
        print_json(page)
        return
    out = console()
    out.print(
        table(
            None,
            [
                "job_id",
                "type",
                "status",
                "plan_version_id",
                "run_id",
                "created",
                "duration",
                "error",
            ],
            [
                (
                    j.job_id,
                    j.type.value,
                    styled_status(j.status.value),
                    j.plan_version_id,
                    j.run_id,
                    when(j.created_at),
                    _duration(j),
                    short_json(j.error, 60) if j.error else None,
                )
                for j in page.items
            ],
        )
    )
    next_page_hint(out, page.next_cursor, "runyard job list")


@app.command("show")
@handles_errors
def show(ctx: typer.Context, job_id: JobIdArg, json_output: JsonOption = False) -> None:
    """One job: its type, status, plan version, run, times, attempts and error."""
    client = client_from(ctx)
    if client is not None:
        job = _remote_job(client, job_id)
    else:
        with yard_from(ctx) as yard:
            job = service.get_job(yard, job_id)
    show_job(job, "Job", json_output)


@app.command("log")
@handles_errors
def log(ctx: typer.Context, job_id: JobIdArg, json_output: JsonOption = False) -> None:
    """What the worker wrote about a job, then its runner's output."""
    client = client_from(ctx)
    if client is not None:
        job = _remote_job(client, job_id)
        text = client.request("GET", f"jobs/{_seg(job_id)}/log").text
    else:
        with yard_from(ctx) as yard:
            job = service.get_job(yard, job_id)
            text = service.job_log(yard, job)
    if json_output:
        print_json({"job_id": job.job_id, "status": job.status.value, "log": text})
    else:
        sys.stdout.write(text)


@app.command("cancel")
@handles_errors
def cancel(ctx: typer.Context, job_id: JobIdArg, json_output: JsonOption = False) -> None:
    """Cancel a queued job, or stop a running one (its runner's process group is stopped)."""
    client = client_from(ctx)
    if client is not None:
        job = _models.Job.model_validate(client.post(f"jobs/{_seg(job_id)}/cancel"))
    else:
        with yard_from(ctx) as yard:
            job = service.cancel_job(yard, job_id)
    if json_output:
        print_json(job)
    elif job.status == JobStatus.cancelled:
        console().print(f"Cancelled {job.job_id} (it had not started).")
    else:
        console().print(
            f"Asked the worker of {job.job_id} to stop it; it ends `cancelled` within a few "
            "seconds (`runyard job show` tells)."
        )


@app.command("aggregate")
@handles_errors
def aggregate(
    ctx: typer.Context,
    plan: Annotated[str, typer.Option("--plan", help="The plan version.", metavar="ID")],
    wait: WaitOption = False,
    json_output: JsonOption = False,
) -> None:
    """Queue an aggregate job: the KPIs of a plan's succeeded runs, in one table."""
    with yard_from(ctx) as yard:
        _queue(yard, service.enqueue_aggregate(yard, plan), "aggregate", wait, json_output)


def plan_run(
    ctx: typer.Context,
    plan_version_id: Annotated[str, typer.Argument(help="Plan version id.", metavar="ID")],
    wait: WaitOption = False,
    json_output: JsonOption = False,
) -> None:
    """Queue a planning job for a plan version (refused for a locked scenario)."""
    client = client_from(ctx)
    if client is not None:
        answer = client.post(f"plans/{_seg(plan_version_id)}/run")
        job = _models.Job.model_validate(answer)
        if wait:  # the server's worker runs it: wait for its end
            while job.status in (JobStatus.queued, JobStatus.running):
                time.sleep(WAIT_POLL_SECONDS)
                job = _remote_job(client, job.job_id)
            finish_waiting(job, json_output)
            return
        show_job(job, "Queued planning job", json_output)
        if not json_output:
            console().print("The server's worker runs it (`runyard job show` tells).")
        return
    with yard_from(ctx) as yard:
        _queue(yard, service.enqueue_planning(yard, plan_version_id), "planning", wait, json_output)


WAIT_POLL_SECONDS = 0.5


def _seg(value: str) -> str:
    return quote(value, safe="")


def _remote_job(client: Client, job_id: str) -> _models.Job:
    return _models.Job.model_validate(client.get(f"jobs/{_seg(job_id)}"))


def _queue(yard: _yard.Yard, job: _models.Job, kind: str, wait: bool, json_output: bool) -> None:
    """After enqueueing: run or wait for it with --wait, else show it queued."""
    if wait:
        finish_waiting(service.run_or_wait(yard, job.job_id), json_output)
        return
    show_job(job, f"Queued {kind} job", json_output)
    if not json_output:
        console().print("A worker runs it (`runyard worker`); or add --wait to run it here.")


@handles_errors
def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="Jobs run at once.", metavar="N")
    ] = 1,
    exit_when_idle: Annotated[
        bool,
        typer.Option("--exit-when-idle", help="Stop once no job is queued (scripts, CI)."),
    ] = False,
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            help="Seconds running jobs get to finish after SIGTERM/SIGINT before they are "
            "cancelled.",
            metavar="SECONDS",
        ),
    ] = 30.0,
    json_output: JsonOption = False,
) -> None:
    """Run jobs until stopped. SIGTERM or Ctrl-C: claim no more, let running jobs finish
    (up to --grace seconds), then cancel the rest; a second signal cancels at once."""
    check_range(concurrency, "--concurrency", 1, _worker_jobs.MAX_CONCURRENCY)
    check_seconds(grace, "--grace", MAX_SECONDS)
    with yard_from(ctx) as yard:
        runner = _worker_jobs.Worker(yard, concurrency, exit_when_idle=exit_when_idle)
        signals = {"count": 0}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            signals["count"] += 1
            runner.stop(cancel=signals["count"] > 1)
            if not json_output:
                what = "cancelling running jobs" if signals["count"] > 1 else "finishing"
                err_console().print(f"worker: {signal.Signals(signum).name}, {what}…")

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        if not json_output:
            err_console().print(
                f"worker {runner.worker_id}: {concurrency} at a time"
                + (", until no job is queued" if exit_when_idle else "; Ctrl-C to stop")
            )
        try:
            stats = runner.run(grace_seconds=grace)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if json_output:
        print_json(
            {"worker_id": stats.worker_id, "finished": stats.finished, "reaped": stats.reaped}
        )
    else:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(stats.finished.items())) or "no jobs"
        console().print(f"worker {stats.worker_id} stopped: {counts}.")


def register(root: typer.Typer, plan_app: typer.Typer) -> None:
    root.add_typer(app, name="job")
    root.command("worker")(worker)
    plan_app.command("run")(handles_errors(plan_run))
