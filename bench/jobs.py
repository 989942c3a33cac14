"""The jobs benchmark: how many jobs a second workers get through, and how fast a PSI run is.

Usage::

    .venv/bin/python bench/jobs.py              # the full run: 500 jobs per measurement
    .venv/bin/python bench/jobs.py --quick      # 100 jobs per measurement, well under a minute
    .venv/bin/python bench/jobs.py --jobs 1000  # another number of jobs
    .venv/bin/python bench/jobs.py --skip-psi   # only the queue section

Queue. N planning jobs are queued, then run by one worker process and, separately, by
two started together (``python -m runyard --yard Y worker --concurrency 1
--exit-when-idle``), each time in a fresh SQLite yard, two ways: with a command runner
that does nothing (``argv = ["{python}", "-c", "pass"]``: a child Python per job), and
with ``RUNYARD_SKIP_SIMULATION=1`` (no child at all: the queue and registry alone).

PSI. The large example (1,000 SKUs × 104 weeks) with ``config-base``: ``simulate`` +
``kpis``, and ``write_outputs`` (psi.csv) on its own, median of 5.

Everything happens in a temporary folder that is removed at the end, also when the
script fails.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import runyard
from runyard.config import CONFIG_FILENAME
from runyard.examples.psi import example_path, kpis, load_policy, load_scenario, simulate
from runyard.examples.psi.outputs import write_outputs
from runyard.jobs import service

sys.path.insert(0, str(Path(__file__).parent))
# Shared with the lifecycle benchmark: the environment line, the verdict cell, the
# temporary folder removed at the end, and SIGTERM unwinding through it.
from lifecycle import environment, exit_on_sigterm, temporary_folder, verdict
from runyard.models import Job
from runyard.registry import configs, plans, scenarios
from runyard.registry import jobs as job_registry

PSI_TARGET_SECONDS = 1.0  # simulate + kpis, and write_outputs, of the large example
PSI_REPEATS = 5
SPAWN_REPEATS = 20
FULL_JOBS = 500
QUICK_JOBS = 100
WORKER_COUNTS = (1, 2)

NOOP_RUNNER = """
[runners.noop]
kind = "command"
argv = ["{python}", "-c", "pass"]
"""


@dataclass
class QueueTimed:
    runner: str  # "noop" or "skip"
    workers: int
    jobs: int
    enqueue_s: float
    wall_s: float  # worker processes started → all exited
    span_s: float  # first job started → last job finished (from the registry)

    @property
    def per_second(self) -> float:
        return self.jobs / self.wall_s

    @property
    def ms_per_job(self) -> float:
        """How long each job held a worker: the span, times the workers, over the jobs."""
        return 1000 * self.span_s * self.workers / self.jobs


@dataclass
class PsiTimed:
    what: str
    seconds: list[float]
    target: float | None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


# --- the queue --------------------------------------------------------------------------


def clean_environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    return {**env, **extra}


def make_yard(folder: Path) -> str:
    """A fresh SQLite yard with a ``noop`` runner and one plan that uses it; the plan id."""
    runyard.init_yard(folder, environ=clean_environ())
    with open(folder / CONFIG_FILENAME, "a", encoding="utf-8") as config:
        config.write(NOOP_RUNNER)
    with runyard.open_yard(folder, environ=clean_environ()) as yard:
        with yard.write() as conn:
            scenario = scenarios.add_scenario(conn, "bench-jobs").scenario_id
            config_id = configs.add_config(conn, "{}", name="empty").config_version_id
        plan = plans.create_plan_in_yard(yard, scenario, config_id, label="noop", runner="noop")
        return plan.plan_version_id


def all_jobs(yard: runyard.Yard) -> list[Job]:
    found: list[Job] = []
    cursor: str | None = None
    while True:
        with yard.read() as conn:
            page = job_registry.list_jobs(conn, limit=1000, after=cursor)
        found += page.items
        cursor = page.next_cursor
        if cursor is None:
            return found


def run_workers(folder: Path, workers: int, env: dict[str, str]) -> float:
    """Start ``workers`` worker processes together and wait for all; the seconds it took."""
    argv = [sys.executable, "-m", "runyard", "--yard", str(folder), "worker"]
    argv += ["--concurrency", "1", "--exit-when-idle"]
    children: list[tuple[subprocess.Popen[bytes], Path]] = []
    began = time.perf_counter()
    try:
        for i in range(workers):
            log = folder / f"worker-{i}.log"
            with open(log, "wb") as out:
                child = subprocess.Popen(
                    argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
                )
            children.append((child, log))
        for child, _ in children:
            child.wait()
        seconds = time.perf_counter() - began
    finally:
        for child, _ in children:  # only on failure: stop the workers this bench started
            if child.poll() is None:
                child.terminate()
                child.wait()
    for child, log in children:
        if child.returncode != 0:
            raise RuntimeError(
                f"a worker exited with code {child.returncode}:\n{log.read_text()[-2000:]}"
            )
    return seconds


def bench_queue(work: Path, runner: str, workers: int, n: int, console: Console) -> QueueTimed:
    folder = work / f"yard-{runner}-{workers}"
    plan_id = make_yard(folder)
    env = clean_environ(**({"RUNYARD_SKIP_SIMULATION": "1"} if runner == "skip" else {}))
    with runyard.open_yard(folder, environ=env) as yard:
        began = time.perf_counter()
        for _ in range(n):
            service.enqueue_planning(yard, plan_id)
        enqueue_s = time.perf_counter() - began
        os.sync()  # nothing of the set-up left to write back while timing
        wall_s = run_workers(folder, workers, env)
        jobs = all_jobs(yard)
    statuses = {job.status.value for job in jobs}
    if len(jobs) != n or statuses != {"succeeded"}:
        raise RuntimeError(f"{runner}, {workers} workers: {len(jobs)} jobs, statuses {statuses}")
    starts = [job.started_at for job in jobs if job.started_at]
    ends = [job.finished_at for job in jobs if job.finished_at]
    span_s = (max(ends) - min(starts)).total_seconds()
    timed = QueueTimed(runner, workers, n, enqueue_s, wall_s, span_s)
    console.print(
        f"  {runner:>4}, {workers} worker{'s' if workers > 1 else ' '}: "
        f"{timed.per_second:,.1f} jobs/s, {timed.ms_per_job:.1f} ms a job "
        f"(queued {n:,} in {enqueue_s:.2f} s)"
    )
    return timed


def child_startup_ms() -> float:
    """Median ms to start and reap ``python -c pass``: the noop runner's own cost."""
    times = []
    for _ in range(SPAWN_REPEATS):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True, env=clean_environ())
        times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times)


# --- PSI --------------------------------------------------------------------------------


def repeat(call: Callable[[], Any], n: int) -> list[float]:
    times = []
    for _ in range(n):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return times


def bench_psi(work: Path, console: Console) -> list[PsiTimed]:
    data = json.loads(example_path("large.json").read_text(encoding="utf-8"))
    policy = load_policy(json.loads(example_path("config-base.json").read_text(encoding="utf-8")))
    load_times = repeat(lambda: load_scenario(data), PSI_REPEATS)
    scenario = load_scenario(data)
    result = simulate(scenario, policy)
    sim_times = repeat(lambda: kpis(simulate(scenario, policy), policy), PSI_REPEATS)
    out = work / "psi"
    out.mkdir()
    write_times = repeat(lambda: write_outputs(result, scenario, out), PSI_REPEATS)
    size = (out / "psi.csv").stat().st_size
    shape = f"{len(scenario.skus):,} SKUs × {len(scenario.periods)} periods"
    console.print(f"  large example: {shape}; psi.csv {size / 1e6:.1f} MB")
    return [
        PsiTimed("load_scenario (validate the parsed JSON)", load_times, None),
        PsiTimed("simulate + kpis", sim_times, PSI_TARGET_SECONDS),
        PsiTimed("write_outputs (psi.csv)", write_times, PSI_TARGET_SECONDS),
    ]


# --- output -----------------------------------------------------------------------------


def print_results(
    console: Console, queue: list[QueueTimed], spawn_ms: float, psi: list[PsiTimed], quick: bool
) -> None:
    if queue:
        table = Table(title="Jobs through worker processes (SQLite yard, --concurrency 1 each)")
        table.add_column("runner")
        table.add_column("workers", justify="right")
        table.add_column("jobs", justify="right")
        table.add_column("wall s", justify="right")
        table.add_column("jobs/s", justify="right")
        table.add_column("ms a job", justify="right")
        table.add_column("child ms", justify="right")
        table.add_column("overhead ms", justify="right")
        for t in queue:
            child = spawn_ms if t.runner == "noop" else 0.0
            table.add_row(
                "noop command" if t.runner == "noop" else "RUNYARD_SKIP_SIMULATION=1",
                str(t.workers),
                f"{t.jobs:,}",
                f"{t.wall_s:.2f}",
                f"{t.per_second:,.1f}",
                f"{t.ms_per_job:.1f}",
                f"{child:.1f}",
                f"{t.ms_per_job - child:.1f}",
            )
        console.print(table)
        console.print(
            "[dim]wall: worker processes started → all exited (their start-up included). "
            "ms a job: how long each job held a worker (first job started → last finished, "
            "× workers ÷ jobs). child ms: median start of `python -c pass` alone. "
            "overhead: ms a job − child ms.[/dim]"
        )
    if psi:
        table = Table(title=f"PSI, large example (median of {PSI_REPEATS})")
        table.add_column("step")
        table.add_column("median s", justify="right")
        table.add_column("min s", justify="right")
        table.add_column("max s", justify="right")
        table.add_column("target", justify="right")
        table.add_column("meets", justify="center")
        for p in psi:
            table.add_row(
                p.what,
                f"{p.median:.3f}",
                f"{min(p.seconds):.3f}",
                f"{max(p.seconds):.3f}",
                "" if p.target is None else f"< {p.target:g} s",
                "" if p.target is None else verdict(p.median < p.target),
            )
        console.print(table)
    if quick:
        console.print("\n[yellow]--quick: fewer jobs than the full run[/yellow]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_JOBS} jobs, not {FULL_JOBS}")
    parser.add_argument("--jobs", type=int, default=None, help="jobs per measurement")
    parser.add_argument(
        "--dir", default=None, help="where to make the temporary yards (default: the system's)"
    )
    parser.add_argument("--skip-queue", action="store_true", help="only the PSI section")
    parser.add_argument("--skip-psi", action="store_true", help="only the queue section")
    args = parser.parse_args(argv)
    n = args.jobs if args.jobs is not None else QUICK_JOBS if args.quick else FULL_JOBS
    if n < 1:
        parser.error("--jobs must be at least 1")
    console = Console(width=None if sys.stdout.isatty() else 120)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    console.print(environment())

    queue: list[QueueTimed] = []
    psi: list[PsiTimed] = []
    spawn_ms = 0.0
    with temporary_folder(args.dir, "runyard-bench-jobs-") as work:
        console.print(f"temporary folder: {work}")
        if not args.skip_queue:
            spawn_ms = child_startup_ms()
            console.print(f"Queue: {n:,} jobs per measurement; `python -c pass`: {spawn_ms:.1f} ms")
            for runner in ("noop", "skip"):
                for workers in WORKER_COUNTS:
                    queue.append(bench_queue(work, runner, workers, n, console))
        if not args.skip_psi:
            console.print("PSI")
            psi = bench_psi(work, console)
    console.print()
    print_results(console, queue, spawn_ms, psi, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
