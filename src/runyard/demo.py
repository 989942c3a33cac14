"""``runyard demo``: a planning yard built from the PSI example, to look around in.

``build_demo(path)`` makes a fresh SQLite yard and fills it the way a planner would,
through the same calls the commands use: two scenarios with data (the shipped
``small.json`` and ``large.json``), three named config versions, four labelled plan
versions, three planning jobs per plan run by an in-process ``Worker`` (two at a
time), one aggregate job, and an archive dry run whose report lands in ``logs/``.
It returns a ``DemoResult`` with what it made, the KPIs per plan, and the commands
to browse the yard with.

It only ever writes into a new or empty folder; anything else is refused before a
file is made. ``RUNYARD_DB`` is ignored (the demo yard keeps its registry inside it,
never in a shared database); ``RUNYARD_SKIP_SIMULATION=1`` is honoured: the runs end
``skipped`` and the aggregate, having no succeeded run to read, is left out with a note.
If a job fails, the yard is left as it is for inspection and ``JobFailed`` names the
job and the command that shows its log.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from runyard.config import CONFIG_FILENAME
from runyard.errors import JobFailed, Refused
from runyard.examples.psi import example_path
from runyard.jobs import service
from runyard.jobs.worker import Worker
from runyard.lifecycle.archive import ArchiveOptions, plan_archive, write_dry_run
from runyard.lifecycle.guards import Scope
from runyard.models import Job, JobStatus, Run, RunStatus
from runyard.registry import jobs as job_registry
from runyard.registry.configs import add_config
from runyard.registry.plans import create_plan_in_yard
from runyard.registry.runs import RunFilter, list_runs
from runyard.registry.scenarios import add_scenario
from runyard.yard import Yard, init_yard, open_yard

DEFAULT_PATH = "demo-yard"
JOBS_PER_PLAN = 3
CONCURRENCY = 2
POLL_SECONDS = 0.2
IGNORED_ENV = ("RUNYARD_DB", "RUNYARD_YARD")

SCENARIOS = (
    ("small", "small.json", "A coffee roaster's 3 SKUs over 12 weeks (hand-written)"),
    ("large", "large.json", "1,000 SKUs × 104 weeks of seasonal demand (generated)"),
)
CONFIGS = (
    ("config-base", "config-base.json"),  # 1 period of safety stock
    ("config-lean", "config-lean.json"),  # a quarter of a period
    ("config-safe", "config-safe.json"),  # two and a half periods
)
PLANS = (  # label, scenario, config
    ("small-base", "small", "config-base"),
    ("small-lean", "small", "config-lean"),
    ("small-safe", "small", "config-safe"),
    ("large-base", "large", "config-base"),
)
AGGREGATED_PLAN = "small-base"

Progress = Callable[[str], None]


class DemoScenario(BaseModel):
    scenario_id: str
    name: str
    skus: int
    periods: int


class DemoConfig(BaseModel):
    config_version_id: str
    name: str


class DemoPlan(BaseModel):
    plan_version_id: str
    label: str
    scenario: str
    config_name: str
    config_version_id: str
    job_ids: list[str]
    runs: int
    runs_by_status: dict[str, int]
    mean_fill_rate: float | None = Field(description="over its succeeded runs")
    mean_total_cost: float | None = Field(description="over its succeeded runs")


class DemoAggregate(BaseModel):
    job_id: str
    aggregate_id: str
    plan_version_id: str
    label: str
    runs: int
    path: str = Field(description="the folder of aggregate.csv and aggregate.json, absolute")


class DemoDryRun(BaseModel):
    report_path: str
    candidates: int
    to_archive: int
    skipped: int
    skip_reasons: dict[str, int] = Field(description="reason code → runs it kept")


class DemoResult(BaseModel):
    yard_path: str
    yard_id: str
    simulation_skipped: bool
    scenarios: list[DemoScenario]
    configs: list[DemoConfig]
    plans: list[DemoPlan]
    jobs_by_status: dict[str, int]
    runs_by_status: dict[str, int]
    aggregate: DemoAggregate | None
    archive_dry_run: DemoDryRun
    notes: list[str]
    browse: list[str] = Field(description="commands to look around with, in order")
    seconds: dict[str, float] = Field(description="wall time of each step, and the total")


DEMO_KPIS = """
# The KPIs the PSI example writes: which way is better, a label and a unit. The runs
# list shows them as columns and the comparison marks best and worst by them.
[kpis.fill_rate]
better = "higher"
label = "Fill rate"

[kpis.total_cost]
better = "lower"
label = "Total cost"

[kpis.average_inventory]
better = "lower"
label = "Avg inventory"
unit = "units"

[kpis.stockout_periods]
better = "lower"
label = "Stockouts"
unit = "periods"
"""

DEMO_QUERY = ("kpi.fill_rate >= 0.95", "kpi.total_cost asc")
"""The question the demo ends with: which plans' runs met the fill-rate target, cheapest
first (docs/query.md)."""


def check_target(path: Path) -> None:
    """Refuse a ``path`` that exists and is not an empty folder (nothing is touched)."""
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir():
        raise Refused(
            f"{path} exists and is not a folder: the demo builds its yard in a new or empty folder",
            hint="choose another PATH",
        )
    if any(path.iterdir()):
        raise Refused(
            f"{path} is not empty: the demo builds its yard in a new or empty folder and never "
            "touches an existing one",
            hint="choose another PATH (e.g. `runyard demo demo-yard-2`), or remove that folder",
        )


@dataclass(frozen=True)
class _Plan:
    label: str
    plan_version_id: str
    scenario: str
    config_name: str


def build_demo(
    path: str | Path = DEFAULT_PATH,
    *,
    progress: Progress | None = None,
    environ: Mapping[str, str] | None = None,
) -> DemoResult:
    """Build the demo yard at ``path``; what it made, with the KPIs of each plan.

    Args:
        progress: called with a line saying what the demo is doing; while the worker
            runs, also each time the count of finished jobs changes (from another thread).
        environ: the environment to read ``RUNYARD_*`` from (default: the process's).

    Raises:
        Refused: ``path`` exists and is not an empty folder.
        JobFailed: a job did not succeed (the yard is left for inspection).
    """
    say = progress or (lambda _line: None)
    began = time.perf_counter()
    seconds: dict[str, float] = {}
    target = Path(path).expanduser().absolute()
    check_target(target)
    env = dict(os.environ if environ is None else environ)
    notes = [
        f"{name} is set in this environment and was ignored: the demo yard keeps its own "
        f"registry; unset {name} before browsing it"
        for name in IGNORED_ENV
        if env.pop(name, None)
    ]

    say(f"Creating the yard at {target}…")
    init_yard(target, preset="planning", environ=env)
    with (target / CONFIG_FILENAME).open("a", encoding="utf-8") as config_file:
        config_file.write(DEMO_KPIS)
    with open_yard(target, environ=env) as yard:
        say("Adding 2 scenarios, 3 config versions and 4 plan versions…")
        scenarios, configs, plans = _add_lineage(yard)
        seconds["setup"] = time.perf_counter() - began

        step = time.perf_counter()
        job_ids = _run_planning_jobs(yard, plans, say)
        seconds["planning_jobs"] = time.perf_counter() - step
        results = [_plan_result(yard, plan, configs, job_ids[plan.label]) for plan in plans]

        step = time.perf_counter()
        aggregated = next(r for r in results if r.label == AGGREGATED_PLAN)
        aggregate = _aggregate(yard, aggregated, say, notes)
        seconds["aggregate"] = time.perf_counter() - step

        step = time.perf_counter()
        say("Archive dry run (nothing moves)…")
        dry_run = _archive_dry_run(yard, target)
        seconds["archive_dry_run"] = time.perf_counter() - step

        with yard.read() as conn:
            jobs_by_status = dict(sorted(job_registry.counts_by_status(conn).items()))
        runs_by_status: Counter[str] = Counter()
        for plan_result in results:
            runs_by_status.update(plan_result.runs_by_status)
        seconds["total"] = time.perf_counter() - began
        return DemoResult(
            yard_path=str(target),
            yard_id=yard.settings.yard_id,
            simulation_skipped=yard.settings.skip_simulation,
            scenarios=scenarios,
            configs=[DemoConfig(config_version_id=cid, name=name) for name, cid in configs.items()],
            plans=results,
            jobs_by_status=jobs_by_status,
            runs_by_status=dict(sorted(runs_by_status.items())),
            aggregate=aggregate,
            archive_dry_run=dry_run,
            notes=notes,
            browse=_browse(target, results, configs),
            seconds={k: round(v, 3) for k, v in seconds.items()},
        )


# --- the steps ------------------------------------------------------------------------------


def _add_lineage(yard: Yard) -> tuple[list[DemoScenario], dict[str, str], list[_Plan]]:
    """The scenarios, config name → config version id, and the plans, as made."""
    scenarios: list[DemoScenario] = []
    configs: dict[str, str] = {}
    with yard.write() as conn:
        for name, file, description in SCENARIOS:
            text = example_path(file).read_text(encoding="utf-8")
            data = json.loads(text)
            added = add_scenario(conn, name, description, data_text=text)
            scenarios.append(
                DemoScenario(
                    scenario_id=added.scenario_id,
                    name=name,
                    skus=len(data["skus"]),
                    periods=len(data["periods"]),
                )
            )
        for name, file in CONFIGS:
            text = example_path(file).read_text(encoding="utf-8")
            configs[name] = add_config(conn, text, name=name, source=file).config_version_id
    plans = []
    for label, scenario, config_name in PLANS:
        made = create_plan_in_yard(yard, scenario, configs[config_name], label=label)
        plans.append(_Plan(label, made.plan_version_id, scenario, config_name))
    return scenarios, configs, plans


def _run_planning_jobs(yard: Yard, plans: list[_Plan], say: Progress) -> dict[str, list[str]]:
    """Queue JOBS_PER_PLAN planning jobs per plan and run them all; job ids by plan label."""
    job_ids: dict[str, list[str]] = {plan.label: [] for plan in plans}
    # Round-robin, the large plan (last) first: its long jobs start early and spread out,
    # and the first jobs the two threads claim are of different scenarios. That matters:
    # the first job of a scenario writes its data file (jobs.execute._data_file), and two
    # threads writing the same file at once collide on write_atomic's per-process
    # temporary name; later jobs find the file written.
    for _ in range(JOBS_PER_PLAN):
        for plan in reversed(plans):
            job_ids[plan.label].append(service.enqueue_planning(yard, plan.plan_version_id).job_id)
    total = sum(len(ids) for ids in job_ids.values())
    say(_jobs_line(0, total))
    with _watch_jobs(yard, total, say):
        Worker(yard, concurrency=CONCURRENCY, exit_when_idle=True).run()
    for ids in job_ids.values():
        for job_id in ids:
            _require_success(yard, service.get_job(yard, job_id), "planning")
    return job_ids


def _jobs_line(finished: int, total: int) -> str:
    return f"Running {total} planning jobs, {CONCURRENCY} at a time: {finished} of {total} finished"


@contextmanager
def _watch_jobs(yard: Yard, total: int, say: Progress) -> Iterator[None]:
    """While the body runs, say how many jobs have finished each time that changes."""
    done = threading.Event()

    def watch() -> None:
        shown = 0
        while not done.wait(POLL_SECONDS):
            try:
                with yard.read() as conn:
                    counts = job_registry.counts_by_status(conn)
            except Exception:  # progress is only shown: never let it stop the demo
                continue
            finished = sum(counts.get(status.value, 0) for status in service.FINISHED)
            if finished != shown:
                shown = finished
                say(_jobs_line(finished, total))

    watcher = threading.Thread(target=watch, name="runyard-demo-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join(timeout=5)


def _require_success(yard: Yard, job: Job, what: str) -> None:
    if job.status == JobStatus.succeeded:
        return
    raise JobFailed(
        f"the demo's {what} job {job.job_id} {job.status.value}: "
        f"{job.error or 'no error recorded'} (the yard is left at {yard.path} as it is)",
        hint=f"`runyard --yard {shlex.quote(str(yard.path))} job log {job.job_id}` shows its log",
    )


def _runs_of(yard: Yard, plan_version_id: str) -> list[Run]:
    found: list[Run] = []
    cursor: str | None = None
    while True:
        page = list_runs(yard, RunFilter(plan_version_id=plan_version_id), 1000, cursor)
        found += page.items
        cursor = page.next_cursor
        if cursor is None:
            return found


def _mean(runs: list[Run], key: str) -> float | None:
    """The mean of a numeric KPI over the succeeded runs that have it; None if none do."""
    values = [
        float(run.summary[key])
        for run in runs
        if run.status == RunStatus.succeeded
        and isinstance(run.summary.get(key), int | float)
        and not isinstance(run.summary.get(key), bool)
    ]
    return round(statistics.fmean(values), 4) if values else None


def _plan_result(
    yard: Yard, plan: _Plan, configs: Mapping[str, str], job_ids: list[str]
) -> DemoPlan:
    runs = _runs_of(yard, plan.plan_version_id)
    return DemoPlan(
        plan_version_id=plan.plan_version_id,
        label=plan.label,
        scenario=plan.scenario,
        config_name=plan.config_name,
        config_version_id=configs[plan.config_name],
        job_ids=job_ids,
        runs=len(runs),
        runs_by_status=dict(sorted(Counter(run.status.value for run in runs).items())),
        mean_fill_rate=_mean(runs, "fill_rate"),
        mean_total_cost=_mean(runs, "total_cost"),
    )


def _aggregate(yard: Yard, plan: DemoPlan, say: Progress, notes: list[str]) -> DemoAggregate | None:
    """Run one aggregate job over the plan's succeeded runs; None (and a note) if it has none."""
    if not plan.runs_by_status.get(RunStatus.succeeded.value):
        notes.append(
            f"no aggregate: plan {plan.label} has no succeeded runs to aggregate (its runs are "
            f"{', '.join(plan.runs_by_status) or 'missing'}"
            + (", as RUNYARD_SKIP_SIMULATION=1 asks)" if yard.settings.skip_simulation else ")")
        )
        return None
    say(f"Aggregating the runs of plan {plan.label}…")
    queued = service.enqueue_aggregate(yard, plan.plan_version_id)
    job = service.run_or_wait(yard, queued.job_id)
    _require_success(yard, job, "aggregate")
    result = job.result or {}
    return DemoAggregate(
        job_id=job.job_id,
        aggregate_id=str(result["aggregate_id"]),
        plan_version_id=plan.plan_version_id,
        label=plan.label,
        runs=int(result["runs"]),
        path=str(yard.path / str(result["path"])),
    )


def _archive_dry_run(yard: Yard, target: Path) -> DemoDryRun:
    """What ``runyard archive --all`` would do, with the yard's own guards; its report."""
    options = ArchiveOptions(
        scope=Scope(all=True),
        reason="runyard demo: what archiving every run would do",
        command=["runyard", "demo", str(target)],
    )
    plan = plan_archive(yard, options)
    report_path = write_dry_run(yard, plan)
    summary = plan.report.summary
    reasons = Counter(reason.code for skip in plan.report.skips for reason in skip.reasons)
    return DemoDryRun(
        report_path=str(report_path),
        candidates=summary.candidates,
        to_archive=summary.to_archive,
        skipped=summary.skipped,
        skip_reasons=dict(sorted(reasons.items())),
    )


def _browse(target: Path, plans: list[DemoPlan], configs: Mapping[str, str]) -> list[str]:
    """Commands to look around the new yard with; each one exists (a test checks)."""
    first = plans[0]
    return [
        f"cd {shlex.quote(str(target))}",
        "runyard scenario list",
        "runyard plan list",
        f"runyard plan show {first.plan_version_id}",
        f"runyard run list --plan {first.plan_version_id}",
        f'runyard run list --where "{DEMO_QUERY[0]}" --order-by "{DEMO_QUERY[1]}"',
        f"runyard config diff {configs['config-lean']} {configs['config-safe']}",
        "runyard job list",
        f"runyard job log {first.job_ids[0]}",
        "runyard archive --all",
        "runyard serve",
    ]
