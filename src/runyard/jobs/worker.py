"""A worker: threads that claim jobs and run them, and one that keeps them alive.

Each of ``concurrency`` threads claims the oldest queued job (``registry.jobs.claim``)
and executes it (``jobs.execute``). A heartbeat thread marks every held job alive
every ``jobs.heartbeat_seconds``, learns which ones were asked to cancel, and reaps
jobs whose worker went silent for ``jobs.lost_after_seconds`` (any worker reaps any
other's: one that was SIGKILLed cannot say it stopped). A reaped job is queued again
while it has attempts left (``jobs.max_attempts``, default 1), else failed with
``worker lost``; the run it had started is failed either way, never left running.

Stopping (``stop``) first stops claiming and lets running jobs finish; ``stop(cancel=
True)``, or the end of the grace period, stops their runners, and they end
``cancelled``. Nothing is ever left ``running`` by a worker that was let to stop.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from runyard.errors import RunyardError
from runyard.ids import new_id
from runyard.jobs.execute import JobControl, JobEnd, execute
from runyard.models import Job, JobStatus, RunStatus
from runyard.registry import jobs as job_registry
from runyard.registry.common import utcnow
from runyard.registry.runs import finish_run, get_run

if TYPE_CHECKING:
    from runyard.yard import Yard

IDLE_POLL_SECONDS = 0.5


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{new_id('w')[-6:]}"


def job_log_path(yard: Yard, job_id: str) -> Path:
    return yard.settings.jobs_log_dir / f"{job_id}.log"


def append_job_log(yard: Yard, job_id: str, line: str) -> None:
    path = job_log_path(yard, job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%fZ")
    with open(path, "a", encoding="utf-8") as out:
        out.write(f"{stamp}  {line}\n")


MAX_CONCURRENCY = 256
"""Threads of one worker; more workers (processes, machines) share the queue beyond that."""


@dataclass
class WorkerStats:
    worker_id: str
    finished: dict[str, int] = field(default_factory=dict)  # status → jobs
    reaped: int = 0

    @property
    def total(self) -> int:
        return sum(self.finished.values())


class Worker:
    """Run jobs until stopped (or, with ``exit_when_idle``, until none is queued)."""

    def __init__(
        self,
        yard: Yard,
        concurrency: int = 1,
        *,
        exit_when_idle: bool = False,
        only_job: str | None = None,
        worker_id: str | None = None,
    ) -> None:
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be between 1 and {MAX_CONCURRENCY}")
        self.yard = yard
        self.concurrency = 1 if only_job else concurrency
        self.exit_when_idle = exit_when_idle or only_job is not None
        self.only_job = only_job
        self.worker_id = worker_id or new_worker_id()
        self.stats = WorkerStats(self.worker_id)
        self._postgres = yard.engine.dialect.name == "postgresql"
        self._stopping = threading.Event()
        self._cancelling = threading.Event()
        self._held: dict[str, bool] = {}  # job id → cancel requested
        self._lock = threading.Lock()
        self._settings = yard.settings.file.jobs
        self.last_error: str | None = None  # the last database trouble, for people

    # --- control ---------------------------------------------------------------------------

    def stop(self, cancel: bool = False) -> None:
        """Claim nothing more; with ``cancel``, also stop the runners of running jobs."""
        self._stopping.set()
        if cancel:
            self._cancelling.set()

    @property
    def running_jobs(self) -> list[str]:
        with self._lock:
            return list(self._held)

    def run(self, grace_seconds: float | None = None) -> WorkerStats:
        """Work until stopped; after ``stop()``, wait ``grace_seconds`` (None: forever)
        for running jobs, then cancel them."""
        beat = threading.Thread(target=self._heartbeat_loop, name="runyard-heartbeat", daemon=True)
        beat.start()
        threads = [
            threading.Thread(target=self._work_loop, name=f"runyard-job-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        for thread in threads:
            thread.start()
        deadline: float | None = None
        try:
            while any(t.is_alive() for t in threads):
                if self._stopping.is_set() and grace_seconds is not None and deadline is None:
                    deadline = time.monotonic() + grace_seconds
                if deadline is not None and time.monotonic() >= deadline:
                    self._cancelling.set()
                for thread in threads:
                    thread.join(timeout=0.1)
        except BaseException:
            self.stop(cancel=True)  # e.g. a second Ctrl-C: stop the runners, then record
            for thread in threads:
                thread.join()
            raise
        finally:
            self._stopping.set()
            beat.join(timeout=5)
        return self.stats

    # --- the job threads -------------------------------------------------------------------

    def _work_loop(self) -> None:
        while not self._stopping.is_set():
            failed = False
            try:
                with self.yard.write() as conn:
                    job = job_registry.claim(conn, self.worker_id, self._postgres, self.only_job)
            except Exception as exc:  # the database is away: wait and try again
                self.last_error = f"claiming a job failed: {type(exc).__name__}: {exc}"
                job, failed = None, True
            if job is None:
                if self.exit_when_idle and not failed:
                    return
                self._stopping.wait(IDLE_POLL_SECONDS)
                continue
            self._run_one(job)
            if self.only_job:
                return

    def _run_one(self, job: Job) -> None:
        with self._lock:
            self._held[job.job_id] = False
        log = self._logger(job.job_id)
        log(f"claimed by {self.worker_id} (attempt {job.attempts} of {job.max_attempts})")
        end = JobEnd(JobStatus.failed, "the worker stopped while the job ran")
        try:
            control = JobControl(self.worker_id, lambda: self._should_stop(job.job_id), log)
            end = execute(self.yard, job, control)
        except Exception as exc:  # a bug: recorded on the job rather than lost in a thread
            end = JobEnd(JobStatus.failed, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self._record(job, end)
            with self._lock:
                self._held.pop(job.job_id, None)

    def _record(self, job: Job, end: JobEnd) -> None:
        with self.yard.write() as conn:
            mine = job_registry.finish(
                conn, job.job_id, self.worker_id, end.status, end.error, end.result
            )
        self.stats.finished[end.status.value] = self.stats.finished.get(end.status.value, 0) + 1
        text = f"{end.status.value}" + (f": {end.error}" if end.error else "")
        append_job_log(
            self.yard,
            job.job_id,
            text if mine else f"{text} (not recorded: the job was taken from this worker)",
        )

    def _should_stop(self, job_id: str) -> bool:
        if self._cancelling.is_set():
            return True
        with self._lock:
            return self._held.get(job_id, False)

    def _logger(self, job_id: str) -> Callable[[str], None]:
        def log(line: str) -> None:
            append_job_log(self.yard, job_id, line)

        return log

    # --- heartbeat and reaping -------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        every = self._settings.heartbeat_seconds
        while True:
            held = self.running_jobs
            if held:
                try:
                    with self.yard.write() as conn:
                        cancel = job_registry.heartbeat(conn, self.worker_id, held)
                    with self._lock:
                        for job_id in cancel:
                            if job_id in self._held:
                                self._held[job_id] = True
                except Exception as exc:  # the next beat tries again: lost_after is many beats
                    self.last_error = f"heartbeat failed: {type(exc).__name__}: {exc}"
            try:
                self.stats.reaped += reap_lost_jobs(self.yard)
            except Exception as exc:
                self.last_error = f"reaping lost jobs failed: {type(exc).__name__}: {exc}"
            if self._stopping.is_set() and not self.running_jobs:
                return
            if self._stopping.is_set():
                time.sleep(0.2)  # jobs still finishing: keep beating for them
            else:
                self._stopping.wait(every)


def reap_lost_jobs(yard: Yard) -> int:
    """Settle jobs whose worker went silent; how many were settled."""
    settings = yard.settings.file.jobs
    with yard.read() as conn:
        lost = job_registry.lost_jobs(conn, settings.lost_after_seconds)
    settled = 0
    for job in lost:
        stale_before = utcnow() - timedelta(seconds=settings.lost_after_seconds)
        with yard.write() as conn:
            outcome = job_registry.settle_lost(conn, job, stale_before)
        if outcome is None:
            continue
        settled += 1
        what = {
            JobStatus.queued: "queued again",
            JobStatus.cancelled: "cancelled (as asked)",
        }.get(outcome, "failed: worker lost")
        append_job_log(yard, job.job_id, f"worker {job.worker_id} lost; {what}")
        if job.run_id:
            _fail_lost_run(yard, job.run_id, job.worker_id)
    return settled


def _fail_lost_run(yard: Yard, run_id: str, worker_id: str | None) -> None:
    try:
        run = get_run(yard, run_id)
        if run.status in (RunStatus.queued, RunStatus.running):
            finish_run(
                yard, run_id, RunStatus.failed, error=f"worker lost ({worker_id})", known=run
            )
    except RunyardError:
        pass  # its folder is gone or it finished meanwhile: nothing is left running
