"""The job queue under load and under failure: many worker processes on one database,
and workers killed with SIGKILL while they hold a job (the heartbeat reaper settles it).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import runyard
from runyard.jobs import service
from runyard.jobs.worker import Worker, reap_lost_jobs
from runyard.models import Job, Run
from runyard.registry import jobs as job_registry
from runyard.registry.runs import RunFilter, list_runs
from tests.conftest import Cli
from tests.helpers.jobs_util import (
    add_config,
    child_argv,
    command_runner,
    kill_quietly,
    make_plan,
    read_pid,
    set_jobs,
    start_worker,
    stop_process,
    wait_until,
)

JOBS = 200
WORKERS = 3
# A runner that costs almost nothing: sh writes a summary naming the run.
FAST_ARGV = [
    "/bin/sh",
    "-c",
    'printf \'{{"run": "%s", "n": 1}}\' "$RUNYARD_RUN_ID" > summary.json',
]


def all_jobs(yard: runyard.Yard) -> list[Job]:
    found: list[Job] = []
    cursor = None
    while True:
        with yard.read() as conn:
            page = job_registry.list_jobs(conn, limit=100, after=cursor)
        found += page.items
        cursor = page.next_cursor
        if cursor is None:
            return found


def all_runs(yard: runyard.Yard) -> list[Run]:
    found: list[Run] = []
    cursor = None
    while True:
        page = list_runs(yard, RunFilter(), 100, cursor)
        found += page.items
        cursor = page.next_cursor
        if cursor is None:
            return found


@pytest.mark.slow
def test_worker_processes_run_every_job_exactly_once(cli, tmp_path, yard_path):
    add_config(yard_path, command_runner("fast", FAST_ARGV))
    pv = make_plan(cli, tmp_path, "fast", data=False)["plan_version_id"]
    with runyard.open_yard(yard_path) as yard:
        queued = {service.enqueue_planning(yard, pv).job_id for _ in range(JOBS)}
    assert len(queued) == JOBS

    out = tmp_path / "workers"
    procs = [
        start_worker(yard_path, out, "--concurrency", "2", "--exit-when-idle", "--json")
        for _ in range(WORKERS)
    ]
    try:
        deadline = time.monotonic() + 120
        for proc in procs:
            assert proc.wait(timeout=max(1.0, deadline - time.monotonic())) == 0
    finally:
        for proc in procs:
            stop_process(proc)
    stats = [json.loads((out / f"{i}.out").read_text()) for i in range(WORKERS)]
    errors = "".join((out / f"{i}.err").read_text() for i in range(WORKERS))
    assert "Traceback" not in errors, errors
    # Each job was executed by exactly one worker thread: the counts add up to JOBS.
    assert sum(s["finished"].get("succeeded", 0) for s in stats) == JOBS, stats
    assert sum(sum(s["finished"].values()) for s in stats) == JOBS, stats

    with runyard.open_yard(yard_path) as yard:
        jobs = all_jobs(yard)
        runs = all_runs(yard)
        with yard.read() as conn:
            counts = job_registry.counts_by_status(conn)
    assert counts == {"succeeded": JOBS}
    assert {j.job_id for j in jobs} == queued
    assert all(j.attempts == 1 and j.error is None for j in jobs)
    assert len({j.run_id for j in jobs}) == JOBS and None not in {j.run_id for j in jobs}
    assert len(runs) == JOBS
    assert {r.status.value for r in runs} == {"succeeded"}
    # Every run names its job, and every job has exactly one run.
    assert sorted(r.tags["job_id"] for r in runs) == sorted(queued)
    assert {r.run_id: r.tags["job_id"] for r in runs} == {j.run_id: j.job_id for j in jobs}
    assert all(r.summary == {"run": r.run_id, "n": 1} for r in runs)
    # The worker ids recorded on the jobs are those of the workers that ran them.
    assert {j.worker_id for j in jobs} <= {s["worker_id"] for s in stats}
    assert len({j.worker_id for j in jobs}) >= 2  # the processes really shared the queue


def _claimed_child(cli: Cli, job_id: str) -> tuple[dict[str, Any], int, int]:
    """Wait until the job runs and its runner (jobs_child sleep/once) wrote its pids."""

    def ready() -> tuple[dict[str, Any], int, int] | None:
        job = cli.ok("job", "show", job_id)
        if job["status"] != "running" or not job["run_id"]:
            return None
        folder = Path(cli.ok("run", "show", job["run_id"])["path"])
        child, grandchild = read_pid(folder / "child.pid"), read_pid(folder / "grandchild.pid")
        return (job, child, grandchild) if child and grandchild else None

    return wait_until(ready, 30, f"the runner of {job_id} to start")


@pytest.mark.slow
def test_sigkilled_worker_job_fails_as_worker_lost(cli, tmp_path, yard_path):
    set_jobs(yard_path, heartbeat_seconds=1, lost_after_seconds=2, max_attempts=1)
    add_config(yard_path, command_runner("slow", child_argv("sleep", "30")))
    pv = make_plan(cli, tmp_path, "slow", data=False)["plan_version_id"]
    job_id = cli.ok("plan", "run", pv)["job_id"]
    proc = start_worker(yard_path, tmp_path / "out")
    pids: list[int] = []
    try:
        held, child, grandchild = _claimed_child(cli, job_id)
        pids = [child, grandchild]
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        assert cli.ok("job", "show", job_id)["status"] == "running"  # nobody said otherwise

        with runyard.open_yard(yard_path) as yard:
            settled = wait_until(lambda: reap_lost_jobs(yard), 20, "the lost job to be reaped")
            assert settled == 1
            assert reap_lost_jobs(yard) == 0  # settled once
        job = cli.ok("job", "show", job_id)
        assert job["status"] == "failed"
        assert job["error"] == f"worker lost ({held['worker_id']} stopped sending heartbeats)"
        assert job["finished_at"] is not None and job["attempts"] == 1
        assert job["run_id"] == held["run_id"]
        run = cli.ok("run", "show", held["run_id"])
        assert run["status"] == "failed" and "worker lost" in run["error"]
        assert cli.ok("job", "list", "--status", "running")["items"] == []
        log = cli("job", "log", job_id).stdout
        assert f"worker {held['worker_id']} lost; failed: worker lost" in log
    finally:
        stop_process(proc)
        for pid in pids:
            kill_quietly(pid)


@pytest.mark.slow
def test_sigkilled_worker_job_is_queued_again_and_succeeds(cli, tmp_path, yard_path):
    set_jobs(yard_path, heartbeat_seconds=1, lost_after_seconds=2, max_attempts=2)
    marker = tmp_path / "marker"
    add_config(
        yard_path, command_runner("once", child_argv("once"), env={"JOBS_MARKER": str(marker)})
    )
    pv = make_plan(cli, tmp_path, "once", data=False)["plan_version_id"]
    queued = cli.ok("plan", "run", pv)
    assert queued["max_attempts"] == 2
    job_id = queued["job_id"]
    first = start_worker(yard_path, tmp_path / "out")
    pids: list[int] = []
    try:
        held, child, grandchild = _claimed_child(cli, job_id)
        pids = [child, grandchild]
        assert marker.read_text() == held["run_id"]
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)

        with runyard.open_yard(yard_path) as yard:
            second = Worker(yard, 1)
            thread = threading.Thread(target=second.run, daemon=True)
            thread.start()
            try:
                job = wait_until(
                    lambda: (j := service.get_job(yard, job_id)).status.value == "succeeded" and j,
                    30,
                    "the second worker to reap and rerun the job",
                )
            finally:
                second.stop()
                thread.join(timeout=15)
            assert not thread.is_alive()
        assert second.stats.reaped == 1
        assert second.stats.finished == {"succeeded": 1}
        assert job.attempts == 2 and job.worker_id == second.worker_id and job.error is None
        assert job.run_id is not None and job.run_id != held["run_id"]
        lost_run = cli.ok("run", "show", held["run_id"])
        assert lost_run["status"] == "failed" and "worker lost" in lost_run["error"]
        rerun = cli.ok("run", "show", job.run_id)
        assert rerun["status"] == "succeeded" and rerun["summary"] == {"attempt": 2}
        log = cli("job", "log", job_id).stdout
        assert f"worker {held['worker_id']} lost; queued again" in log
        assert "(attempt 1 of 2)" in log and "(attempt 2 of 2)" in log
        assert cli.ok("job", "list", "--status", "running")["items"] == []
    finally:
        stop_process(first)
        for pid in pids:
            kill_quietly(pid)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"])  # the reaper's rule, not the database's
def test_cancel_requested_on_a_lost_job_is_not_run_again(cli, tmp_path, yard_path):
    set_jobs(yard_path, heartbeat_seconds=1, lost_after_seconds=2, max_attempts=2)
    marker = tmp_path / "marker"
    add_config(
        yard_path, command_runner("once", child_argv("once"), env={"JOBS_MARKER": str(marker)})
    )
    pv = make_plan(cli, tmp_path, "once", data=False)["plan_version_id"]
    job_id = cli.ok("plan", "run", pv)["job_id"]
    first = start_worker(yard_path, tmp_path / "out")
    pids: list[int] = []
    try:
        held, child, grandchild = _claimed_child(cli, job_id)
        pids = [child, grandchild]
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        asked = cli.ok("job", "cancel", job_id)  # its worker is gone, nobody will see it…
        assert asked["status"] == "running" and asked["cancel_requested"] is True

        with runyard.open_yard(yard_path) as yard:
            second = Worker(yard, 1)
            thread = threading.Thread(target=second.run, daemon=True)
            thread.start()
            try:
                job = wait_until(
                    lambda: (
                        (j := service.get_job(yard, job_id)).status.value
                        in ("succeeded", "failed", "cancelled")
                        and j
                    ),
                    30,
                    "the lost job to be settled",
                )
            finally:
                second.stop()
                thread.join(timeout=15)
        runs = cli.ok("run", "list", "--plan", pv)["items"]
        assert [r["run_id"] for r in runs] == [held["run_id"]], (
            f"the job was run again and ended {job.status.value}"
        )
        assert job.status.value == "cancelled"
    finally:
        stop_process(first)
        for pid in pids:
            kill_quietly(pid)
