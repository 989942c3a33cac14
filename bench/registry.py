"""The registry benchmark: how fast runs are registered, and how fast a page of runs lists.

Usage::

    .venv/bin/python bench/registry.py            # the full run (a few minutes)
    .venv/bin/python bench/registry.py --quick    # smaller numbers, well under a minute
    .venv/bin/python bench/registry.py --flush    # only: os.sync() against parallel fsync

Everything happens in a fresh SQLite yard in a temporary folder (``--dir`` chooses where;
the system's temporary folder by default), removed at the end. bench/README.md says what
each figure means.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import event, func, select

import runyard
from runyard.db.tables import runs
from runyard.models import RunStatus
from runyard.registry import configs, plans, scenarios
from runyard.registry.run_query import encode_cursor
from runyard.registry.runs import RunFilter, list_runs

REGISTRATION_TARGET = 2_000  # runs/s, through the Python API, manifests included
PAGE_TARGET_MS = 10.0  # p50 of any page at 1,000,000 runs
PAGE_SIZE = 50
DEEP_PAGE = 1_000

# How seeded runs end, roughly as a planning yard's history looks.
STATUS_MIX = [("succeeded", 0.88), ("failed", 0.07), ("cancelled", 0.03), ("running", 0.02)]
N_SCENARIOS = 10
N_PLANS = 100


@dataclass(frozen=True)
class Sizes:
    serial_runs: int
    threaded_runs: int
    threads: int
    bulk_runs: int
    bulk_batch: int
    registry_sizes: tuple[int, ...]
    repetitions: int
    seed_chunk: int


FULL = Sizes(
    serial_runs=2_000,
    threaded_runs=2_000,
    threads=4,
    bulk_runs=20_000,
    bulk_batch=1_000,
    registry_sizes=(100_000, 1_000_000),
    repetitions=200,
    seed_chunk=50_000,
)
QUICK = Sizes(
    serial_runs=300,
    threaded_runs=300,
    threads=4,
    bulk_runs=3_000,
    bulk_batch=1_000,
    registry_sizes=(20_000, 100_000),
    repetitions=50,
    seed_chunk=25_000,
)


@dataclass
class Rate:
    what: str
    runs: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.runs / self.seconds


@dataclass
class Latency:
    registry_size: int
    filter_name: str
    page: int
    matching: int
    samples_ms: list[float]

    def percentile(self, q: float) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- the yard -------------------------------------------------------------------------


@contextmanager
def temporary_yard(parent: str | None) -> Iterator[runyard.Yard]:
    folder = Path(tempfile.mkdtemp(prefix="runyard-bench-", dir=parent))
    try:
        runyard.init_yard(folder / "yard", preset="planning")
        with runyard.open_yard(folder / "yard") as yard:
            yield yard
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def make_plans(yard: runyard.Yard) -> list[str]:
    """Ten scenarios, two config versions, a hundred plan versions spread over them."""
    with yard.write() as conn:
        scenario_ids = [
            scenarios.add_scenario(conn, f"bench-{k:02d}").scenario_id for k in range(N_SCENARIOS)
        ]
        config_ids = [
            configs.add_config(conn, f'{{"safety_stock_periods": {k}}}').config_version_id
            for k in (2, 3)
        ]
        return [
            plans.create_plan(
                conn,
                scenario_ids[k % N_SCENARIOS],
                config_ids[k % 2],
                params={"horizon": 52, "variant": k},
            ).plan_version_id
            for k in range(N_PLANS)
        ]


# --- registration ---------------------------------------------------------------------


def bench_serial(yard: runyard.Yard, plan: str, n: int) -> Rate:
    start = time.perf_counter()
    for i in range(n):
        with yard.start_run(plan_version_id=plan) as run:
            run.log_summary({"i": i, "fill_rate": 0.97})
    return Rate("yard.start_run, serial", n, time.perf_counter() - start)


def bench_threaded(yard: runyard.Yard, plan: str, n: int, threads: int) -> Rate:
    def worker(count: int) -> None:
        for i in range(count):
            with yard.start_run(plan_version_id=plan) as run:
                run.log_summary({"i": i, "fill_rate": 0.97})

    shares = [n // threads + (1 if k < n % threads else 0) for k in range(threads)]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(worker, shares):
            pass
    return Rate(f"yard.start_run, {threads} threads", n, time.perf_counter() - start)


def bench_bulk(yard: runyard.Yard, plan: str, n: int, batch: int) -> Rate:
    batches = [
        [
            {
                "plan_version_id": plan,
                "summary": {"i": i, "fill_rate": 0.97},
                "status": "failed" if i % 20 == 0 else "succeeded",
            }
            for i in range(first, min(n, first + batch))
        ]
        for first in range(0, n, batch)
    ]
    start = time.perf_counter()
    for records in batches:
        yard.record_runs(records)
    return Rate(f"yard.record_runs, batches of {batch:,}", n, time.perf_counter() - start)


# --- seeding and page latency ---------------------------------------------------------


def count_runs(yard: runyard.Yard) -> int:
    with yard.read() as conn:
        return int(conn.execute(select(func.count()).select_from(runs)).scalar_one())


def seed(
    yard: runyard.Yard,
    plan_ids: list[str],
    lineage: dict[str, Any],
    total: int,
    chunk: int,
    rng: random.Random,
    base: datetime,
) -> float:
    """Insert rows straight into the runs table until it holds ``total``; the seconds taken.

    Rows only (no folders): this measures listing, not registration. Plans follow a
    Zipf-like spread (a few plans hold most runs, as a busy plan does). The k-th seeded run
    starts 3k seconds after ``base``, so start times increase as rows are added.
    """
    have = count_runs(yard)
    need = total - have
    if need <= 0:
        return 0.0
    weights = [1.0 / (k + 1) for k in range(len(plan_ids))]
    statuses = [s for s, _ in STATUS_MIX]
    status_weights = [w for _, w in STATUS_MIX]
    with yard.read() as conn:
        seeded = int(
            conn.execute(
                select(func.count()).select_from(runs).where(runs.c.run_id.like("%Z-s%"))
            ).scalar_one()
        )
    began = time.perf_counter()
    made = 0
    while made < need:
        size = min(chunk, need - made)
        plans_of = rng.choices(plan_ids, weights=weights, k=size)
        status_of = rng.choices(statuses, weights=status_weights, k=size)
        rows = []
        for j in range(size):
            k = seeded + made + j
            started = base + timedelta(seconds=3 * k)
            status = status_of[j]
            plan = plans_of[j]
            rows.append(
                {
                    "run_id": f"{started:%Y%m%dT%H%M%S}.{started.microsecond:06d}Z-s{k:07x}",
                    "plan_version_id": plan,
                    "config_version_id": lineage[plan][0],
                    "scenario_id": lineage[plan][1],
                    "group_name": f"CH{k % 12:02d}/{k % 400:03d}",
                    "status": status,
                    "legacy": False,
                    "location": "active",
                    "pinned": False,
                    "created_at": started,
                    "started_at": started,
                    "finished_at": None if status == "running" else started + timedelta(minutes=3),
                    "summary": (
                        f'{{"average_inventory": {50 + k % 97}, '
                        f'"fill_rate": {0.8 + (k % 200) / 1000:.3f}, '
                        f'"stockout_periods": {k % 5}, "total_cost": {1000 + k % 1013}.5}}'
                    ),
                    "tags": "{}",
                    "error": "RuntimeError: solver did not converge"
                    if status == "failed"
                    else None,
                }
            )
        with yard.write() as conn:
            conn.execute(runs.insert(), rows)
        made += size
    return time.perf_counter() - began


@contextmanager
def capture_sql(yard: runyard.Yard) -> Iterator[list[tuple[str, Any]]]:
    """The statements the engine runs meanwhile (to EXPLAIN exactly what list_runs ran)."""
    seen: list[tuple[str, Any]] = []

    def listener(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        seen.append((statement, parameters))

    event.listen(yard.engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        event.remove(yard.engine, "before_cursor_execute", listener)


def cursor_before_page(yard: runyard.Yard, where: Any, page: int) -> str | None:
    """The cursor that fetches ``page`` (1-based): the keyset of the page before's last row.

    Computed with one OFFSET query instead of paging through ``page - 1`` pages.
    """
    if page == 1:
        return None
    with yard.read() as conn:
        query = (
            select(runs.c.started_at, runs.c.run_id)
            .order_by(runs.c.started_at.desc(), runs.c.run_id.desc())
            .offset((page - 1) * PAGE_SIZE - 1)
            .limit(1)
        )
        if where is not None:
            query = query.where(where)
        row = conn.execute(query).one()
    return encode_cursor((), "all", [row.started_at, row.run_id])


def time_page(
    yard: runyard.Yard, filters: RunFilter, after: str | None, repetitions: int
) -> tuple[list[float], list[tuple[str, Any]]]:
    with capture_sql(yard) as statements:
        page = list_runs(yard, filters, limit=PAGE_SIZE, after=after)
    assert len(page.items) == PAGE_SIZE, "the page measured should be full"
    samples = []
    for _ in range(repetitions):
        t = time.perf_counter()
        list_runs(yard, filters, limit=PAGE_SIZE, after=after)
        samples.append((time.perf_counter() - t) * 1000)
    return samples, statements


def explain(yard: runyard.Yard, statement: str, parameters: Any) -> list[str]:
    with yard.read() as conn:
        raw = conn.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        rows = raw.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
    return [str(r[-1]) for r in rows]


def bench_pages(
    yard: runyard.Yard,
    size: int,
    head_plan: str,
    repetitions: int,
    plans_explained: dict[str, list[str]],
) -> list[Latency]:
    cases = [
        (
            "plan (busiest)",
            RunFilter(plan_version_id=head_plan),
            runs.c.plan_version_id == head_plan,
        ),
        ("status=failed", RunFilter(status=RunStatus.failed), runs.c.status == "failed"),
        ("none", RunFilter(), None),
    ]
    out = []
    for name, filters, where in cases:
        with yard.read() as conn:
            query = select(func.count()).select_from(runs)
            if where is not None:
                query = query.where(where)
            matching = int(conn.execute(query).scalar_one())
        last_page = max(1, matching // PAGE_SIZE)
        for page in (1, min(DEEP_PAGE, last_page)):
            after = cursor_before_page(yard, where, page)
            samples, statements = time_page(yard, filters, after, repetitions)
            out.append(Latency(size, name, page, matching, samples))
            listing = [s for s in statements if "FROM runs" in s[0] and "LIMIT" in s[0]]
            key = f"{name}, {'first page' if page == 1 else 'deep page'}"
            if listing:
                plans_explained[key] = explain(yard, *listing[-1])
    return out


# --- flush strategies (--flush) -------------------------------------------------------


def bench_flush(parent: str | None, repetitions: int = 5) -> list[tuple[str, int, float]]:
    """How long making 1,000 just-written manifests durable takes, three ways (median ms).

    What ``record_runs`` chose between: one ``os.sync()``, ``fsync`` from a pool of
    threads (its choice), or ``fsync`` one file after another; with and without unrelated
    dirty data (another program's output not yet written back), which ``os.sync()`` must
    write too. Only the flush is timed, not the writing.
    """
    from runyard.registry.bulk import _THREADS, _fsync, _fsync_slice, _write_file

    def parallel(files: list[tuple[Path, bytes]]) -> None:
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            for _ in pool.map(_fsync_slice, [files[i::_THREADS] for i in range(_THREADS)]):
                pass

    def serial(files: list[tuple[Path, bytes]]) -> None:
        for path, _ in files:
            _fsync(path)

    ways: list[tuple[str, Callable[[list[tuple[Path, bytes]]], None]]] = [
        ("os.sync()", lambda files: os.sync()),
        (f"fsync, {_THREADS} threads (record_runs)", parallel),
        ("fsync, one after another", serial),
    ]
    folder = Path(tempfile.mkdtemp(prefix="runyard-bench-flush-", dir=parent))
    samples: dict[tuple[str, int], list[float]] = {}
    blob = os.urandom(1 << 20)
    try:
        for rep in range(repetitions):
            for dirty_mb in (0, 512):
                for k, (name, way) in enumerate(ways):
                    os.sync()
                    root = folder / f"{rep}-{dirty_mb}-{k}"
                    root.mkdir()
                    files = []
                    for i in range(1_000):
                        (root / f"r{i}").mkdir()
                        files.append((root / f"r{i}" / ".run.json.tmp", b"x" * 700))
                        _write_file(*files[-1])
                    if dirty_mb:
                        with open(root / "unrelated.bin", "wb") as out:
                            for _ in range(dirty_mb):
                                out.write(blob)
                    began = time.perf_counter()
                    way(files)
                    samples.setdefault((name, dirty_mb), []).append(
                        (time.perf_counter() - began) * 1000
                    )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return [(name, mb, statistics.median(v)) for (name, mb), v in samples.items()]


# --- output ---------------------------------------------------------------------------


def environment() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, load average {load}, {platform.system()}"
    )


def filesystem_of(path: Path) -> str:
    """The mount point and type holding ``path`` (Linux; '?' elsewhere)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "?"
    best = ("", "?")
    resolved = str(path.resolve())
    for _dev, point, kind, *_ in mounts:
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best[0]):
            best = (point, kind)
    return f"{best[1]} (mounted at {best[0]})"


def verdict(ok: bool) -> str:
    return "[green]yes[/green]" if ok else "[red]NO[/red]"


def print_results(
    console: Console,
    rates: list[Rate],
    latencies: list[Latency],
    plans_explained: dict[str, list[str]],
    seeding: list[tuple[int, float]],
    quick: bool,
) -> None:
    table = Table(title="Registration (SQLite, manifests included)")
    table.add_column("path")
    table.add_column("runs", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("runs/s", justify="right")
    table.add_column("target", justify="right")
    table.add_column("meets", justify="center")
    for rate in rates:
        table.add_row(
            rate.what,
            f"{rate.runs:,}",
            f"{rate.seconds:.2f}",
            f"{rate.per_second:,.0f}",
            f"≥ {REGISTRATION_TARGET:,}",
            verdict(rate.per_second >= REGISTRATION_TARGET),
        )
    console.print(table)

    largest = max(lat.registry_size for lat in latencies)
    table = Table(title=f"list_runs, {PAGE_SIZE} a page (SQLite)")
    table.add_column("runs in registry", justify="right")
    table.add_column("filter")
    table.add_column("matching", justify="right")
    table.add_column("page", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p95 ms", justify="right")
    table.add_column("target", justify="right")
    table.add_column("meets", justify="center")
    for lat in latencies:
        p50 = lat.percentile(0.5)
        page = f"{lat.page:,}" + (" (last)" if lat.page not in (1, DEEP_PAGE) else "")
        judged = lat.registry_size == largest
        table.add_row(
            f"{lat.registry_size:,}",
            lat.filter_name,
            f"{lat.matching:,}",
            page,
            f"{p50:.2f}",
            f"{lat.percentile(0.95):.2f}",
            f"p50 < {PAGE_TARGET_MS:.0f}" if judged else "",
            verdict(p50 < PAGE_TARGET_MS) if judged else "",
        )
    console.print(table)
    for size, seconds in seeding:
        if seconds:
            console.print(f"seeded to {size:,} runs in {seconds:.1f} s (rows only, no folders)")
    console.print("\nEXPLAIN QUERY PLAN of each list_runs query, at the largest size:")
    for key, lines in plans_explained.items():
        console.print(f"  {key}: " + " | ".join(lines))
    if quick:
        console.print(
            "\n[yellow]--quick: smaller numbers; the 1,000,000-run targets are "
            "judged at the largest size measured[/yellow]"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller numbers, under a minute")
    parser.add_argument(
        "--dir", default=None, help="where to make the temporary yard (default: the system's)"
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed for the seeded runs")
    parser.add_argument(
        "--flush",
        action="store_true",
        help="only compare the ways of flushing manifests (os.sync vs fsync)",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    # Wide enough for the tables when the output goes to a file or a pipe.
    console = Console(width=None if sys.stdout.isatty() else 110)
    rng = random.Random(args.seed)
    console.print(environment())
    if args.flush:
        table = Table(title="Making 1,000 just-written manifests durable (median of 5)")
        table.add_column("way")
        table.add_column("unrelated dirty data", justify="right")
        table.add_column("ms", justify="right")
        for name, dirty_mb, ms in bench_flush(args.dir):
            table.add_row(name, f"{dirty_mb} MB", f"{ms:.1f}")
        console.print(table)
        return 0

    with temporary_yard(args.dir) as yard:
        console.print(f"temporary yard: {yard.path} on {filesystem_of(yard.path)}")
        plan_ids = make_plans(yard)
        with yard.read() as conn:
            lineage = {
                p.plan_version_id: (p.config_version_id, p.scenario_id)
                for p in (plans.get_plan(conn, pid) for pid in plan_ids)
            }
        plan = plan_ids[0]
        # record_runs first: it deletes nothing, while start_run replaces each run.json
        # when the run finishes; see bench/README.md for why that order matters.
        steps: list[Callable[[], Rate]] = [
            lambda: bench_bulk(yard, plan, sizes.bulk_runs, sizes.bulk_batch),
            lambda: bench_serial(yard, plan, sizes.serial_runs),
            lambda: bench_threaded(yard, plan, sizes.threaded_runs, sizes.threads),
        ]
        rates = []
        for step in steps:
            rates.append(step())
            console.print(f"  {rates[-1].what}: {rates[-1].per_second:,.0f} runs/s")
        rates = [rates[1], rates[2], rates[0]]

        latencies: list[Latency] = []
        seeding: list[tuple[int, float]] = []
        plans_explained: dict[str, list[str]] = {}
        # Seeded history: increasing start times that end a day before the runs above.
        now = datetime.now(UTC).replace(tzinfo=None)
        base = now - timedelta(days=1, seconds=3 * max(sizes.registry_sizes))
        for size in sizes.registry_sizes:
            seconds = seed(yard, plan_ids, lineage, size, sizes.seed_chunk, rng, base)
            seeding.append((size, seconds))
            console.print(f"  seeded to {size:,} runs ({seconds:.1f} s)")
            with yard.read() as conn:
                head = conn.execute(
                    select(runs.c.plan_version_id)
                    .group_by(runs.c.plan_version_id)
                    .order_by(func.count().desc())
                    .limit(1)
                ).scalar_one()
            plans_explained.clear()
            latencies += bench_pages(yard, size, head, sizes.repetitions, plans_explained)
        console.print()
        print_results(console, rates, latencies, plans_explained, seeding, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
