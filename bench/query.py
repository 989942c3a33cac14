"""The query benchmark: "which runs were best?" at 100,000 and 1,000,000 runs.

Usage::

    .venv/bin/python bench/query.py              # SQLite at 100k and 1M, PostgreSQL at 100k
    .venv/bin/python bench/query.py --quick      # SQLite at 100k only (about a minute)
    .venv/bin/python bench/query.py --sizes 1000000 --keep /var/tmp/qbench   # reuse a seed

Each yard is seeded in bulk (rows straight into the tables, indexes built afterwards):
every run has 15 KPIs, its plan's 3 params and 3 tags. Then each query is timed through
``list_runs`` (parse, SQL, models) on its first page and on page 100 (50 runs a page,
reached by following ``next_cursor``), p50 and p95 over ``--repetitions``; beside each,
the same SQL statements replayed raw on the driver, so the Python share is visible. The
plain newest-first page is timed too. PostgreSQL needs ``RUNYARD_BENCH_PG`` (a URL; by
default postgresql+psycopg://postgres@127.0.0.1:5432/postgres) and is skipped, saying so,
when it is not reachable.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, event, text

import runyard
from runyard.db.tables import metadata, runs
from runyard.query import parse_query
from runyard.registry import configs, plans, scenarios
from runyard.registry.runs import list_runs

PAGE_SIZE = 50
DEEP_PAGE = 100
TARGET_MS = 20.0  # p50 of every query row at 1,000,000 runs on SQLite
PLAIN_TARGET_MS = 1.0  # the plain newest-first page, in-process
N_PLANS = 20
N_KPIS = 15
OWNERS = [f"user{i}" for i in range(10)]
STAGES = ["dev", "staging", "prod"]
MLFLOW = {  # MLflow search_runs on a machine like this one (the figures)
    "a": "156 ms at 100k",
    "c": "323 ms at 100k",
}


@dataclass
class Case:
    key: str
    what: str
    where: str | None
    order_by: list[str]


def cases(plan_id: str) -> list[Case]:
    return [
        Case("a", "KPI range, 1% match", "kpi.fill_rate < 0.01", []),
        Case("b", "KPI range, 50% match", "kpi.fill_rate < 0.5", []),
        Case("c", "tag = X and KPI < Y", "tag.owner = 'user3' and kpi.total_cost < 2000", []),
        Case("d", "param = X", "param.method = 'm1'", []),
        Case("e", "order by KPI, no filter", None, ["kpi.total_cost desc"]),
        Case("f", "order by KPI, plan filter", f"plan = '{plan_id}'", ["kpi.total_cost asc"]),
    ]


# --- seeding -----------------------------------------------------------------------------


def make_lineage(yard: runyard.Yard) -> list[tuple[str, str, str]]:
    """Plans (id, config id, scenario id) with 3 params each: method, horizon, seed."""
    out = []
    with yard.write() as conn:
        scenario = scenarios.add_scenario(conn, "bench")
        config = configs.add_config(conn, '{"policy": {"lot": 50}}', name="bench")
        for i in range(N_PLANS):
            plan = plans.create_plan(
                conn,
                scenario.scenario_id,
                config.config_version_id,
                {"method": f"m{i % 4}", "horizon": 4 + i % 3, "seed": i},
                label=f"plan-{i:02d}",
            )
            out.append((plan.plan_version_id, config.config_version_id, scenario.scenario_id))
    return out


_INDEXES = (
    "ix_run_kpis_value",
    "ix_run_kpis_plan",
    "ix_run_tags_value",
    *(str(ix.name) for ix in runs.indexes if ix.name),
)


def seed(yard: runyard.Yard, total: int, rng: random.Random, chunk: int = 20_000) -> float:
    """Rows straight into runs, run_kpis and run_tags (indexes dropped, then rebuilt)."""
    lineage = make_lineage(yard)
    weights = [1.0 / (k + 1) for k in range(len(lineage))]
    base = datetime(2025, 1, 1)
    began = time.perf_counter()
    pg = yard.engine.dialect.name == "postgresql"
    with yard.write() as conn:
        for name in _INDEXES:
            conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
    kpi_names = ["fill_rate", "total_cost", *(f"k{i:02d}" for i in range(N_KPIS - 2))]
    made = 0
    while made < total:
        size = min(chunk, total - made)
        chosen = rng.choices(lineage, weights=weights, k=size)
        run_rows, kpi_rows, tag_rows = [], [], []
        for j in range(size):
            k = made + j
            started = base + timedelta(seconds=3 * k)
            plan_id, config_id, scenario_id = chosen[j]
            run_id = f"{started:%Y%m%dT%H%M%S}Z-q{k:07x}"
            values = [rng.random(), round(rng.uniform(1000, 5000), 2)]
            values += [round(rng.gauss(100, 30), 3) for _ in range(N_KPIS - 2)]
            summary = (
                "{" + ", ".join(f'"{n}": {v}' for n, v in zip(kpi_names, values, strict=True)) + "}"
            )
            tags = {
                "owner": OWNERS[k % len(OWNERS)],
                "stage": STAGES[k % 3],
                "batch": f"b{k % 100}",
            }
            tags_text = "{" + ", ".join(f'"{a}": "{b}"' for a, b in tags.items()) + "}"
            run_rows.append(
                (
                    run_id,
                    plan_id,
                    config_id,
                    scenario_id,
                    f"CH{k % 12:02d}",
                    "succeeded",
                    False,
                    "active",
                    False,
                    started,
                    started,
                    started + timedelta(minutes=2),
                    summary,
                    tags_text,
                    4096,
                )
            )
            pairs = zip(kpi_names, values, strict=True)
            kpi_rows += [(run_id, n, v, started, plan_id) for n, v in pairs]
            tag_rows += [(run_id, a, b, b, started) for a, b in tags.items()]
        raw = yard.engine.raw_connection()
        try:
            cur = raw.cursor()
            mark = "%s" if pg else "?"
            cur.executemany(
                "INSERT INTO runs (run_id, plan_version_id, config_version_id, scenario_id, "
                "group_name, status, legacy, location, pinned, created_at, started_at, "
                f"finished_at, summary, tags, size_bytes) VALUES ({', '.join([mark] * 15)})",
                run_rows,
            )
            cur.executemany(
                f"INSERT INTO run_kpis (run_id, name, value, started_at, plan_version_id) "
                f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark})",
                kpi_rows,
            )
            cur.executemany(
                f"INSERT INTO run_tags (run_id, key, value, value_key, started_at) VALUES "
                f"({mark}, {mark}, {mark}, {mark}, {mark})",
                tag_rows,
            )
            raw.commit()
        finally:
            raw.close()
        made += size
        print(f"\r  seeded {made:,} / {total:,}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    with yard.write() as conn:
        for table in metadata.sorted_tables:
            for index in table.indexes:
                if index.name in _INDEXES:
                    index.create(conn)
        conn.execute(text("ANALYZE"))
    return time.perf_counter() - began


# --- timing ------------------------------------------------------------------------------


@contextmanager
def capture_sql(yard: runyard.Yard) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def listener(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: Any) -> None:
        seen.append((statement, params))

    event.listen(yard.engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        event.remove(yard.engine, "before_cursor_execute", listener)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Timing:
    size: int
    engine: str
    case: Case
    page: int
    matching: int
    p50: float
    p95: float
    raw_p50: float


def cursor_of_page(yard: runyard.Yard, case: Case, page: int) -> str | None:
    query = parse_query(case.where, case.order_by)
    after = None
    for _ in range(page - 1):
        found = list_runs(yard, limit=PAGE_SIZE, after=after, query=query)
        after = found.next_cursor
        if after is None:
            return None
    return after


def time_case(yard: runyard.Yard, case: Case, page: int, repetitions: int) -> Timing | None:
    after = cursor_of_page(yard, case, page)
    if page > 1 and after is None:
        return None
    query = parse_query(case.where, case.order_by)
    with capture_sql(yard) as statements:
        list_runs(yard, limit=PAGE_SIZE, after=after, query=query)
    samples = []
    for _ in range(repetitions):
        began = time.perf_counter()
        list_runs(yard, limit=PAGE_SIZE, after=after, query=query)
        samples.append((time.perf_counter() - began) * 1000)
    raw_samples = []
    connection = yard.engine.raw_connection()
    try:
        for _ in range(repetitions):
            began = time.perf_counter()
            cur = connection.cursor()
            for statement, params in statements:
                if statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
                    continue
                cur.execute(statement, params)
                cur.fetchall()
            raw_samples.append((time.perf_counter() - began) * 1000)
        connection.rollback()
    finally:
        connection.close()
    return Timing(
        size=0,
        engine=yard.engine.dialect.name,
        case=case,
        page=page,
        matching=0,
        p50=percentile(samples, 0.5),
        p95=percentile(samples, 0.95),
        raw_p50=percentile(raw_samples, 0.5),
    )


def plain_page(yard: runyard.Yard, repetitions: int) -> tuple[float, float]:
    samples = []
    list_runs(yard, limit=PAGE_SIZE)
    for _ in range(repetitions):
        began = time.perf_counter()
        list_runs(yard, limit=PAGE_SIZE)
        samples.append((time.perf_counter() - began) * 1000)
    return percentile(samples, 0.5), percentile(samples, 0.95)


def matching(yard: runyard.Yard, case: Case) -> int:
    """How many runs the case's condition keeps (counted once, by paging 1000 at a time)."""
    query = parse_query(case.where, [])
    count, after = 0, None
    while True:
        page = list_runs(yard, limit=1000, after=after, query=query)
        count += len(page.items)
        after = page.next_cursor
        if after is None:
            return count


@contextmanager
def bench_yard(folder: Path, db_url: str | None) -> Iterator[tuple[runyard.Yard, bool]]:
    """A yard in ``folder`` (reused when it is there already); True when it is new."""
    fresh = not (folder / "runyard.toml").exists()
    if db_url is not None:
        os.environ["RUNYARD_DB"] = db_url
    try:
        if fresh:
            runyard.init_yard(folder)
        with runyard.open_yard(folder) as yard:
            yield yard, fresh
    finally:
        os.environ.pop("RUNYARD_DB", None)


def pg_schema_url(base: str) -> str | None:
    """A fresh schema on the PostgreSQL server at ``base``, or None when unreachable."""
    try:
        engine = create_engine(base)
        schema = "bench_" + uuid.uuid4().hex[:8]
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
    except Exception as exc:
        print(f"PostgreSQL at {base} is not reachable ({exc}); skipped", file=sys.stderr)
        return None
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}options=-csearch_path%3D{schema}"


def drop_pg_schema(base: str, url: str) -> None:
    schema = url.rsplit("%3D", 1)[-1]
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def run_size(
    console: Console,
    size: int,
    engine_name: str,
    folder: Path,
    db_url: str | None,
    repetitions: int,
    rng: random.Random,
) -> tuple[list[Timing], tuple[float, float], float]:
    console.print(f"[bold]{engine_name} at {size:,} runs[/bold] in {folder}")
    with bench_yard(folder, db_url) as (yard, fresh):
        seconds = seed(yard, size, rng) if fresh else 0.0
        plan_id = yard.list_runs(limit=1).items[0].plan_version_id or ""
        # The plan with the fewest runs but at least 100 pages' worth, for case (f).
        with yard.read() as conn:
            counts = conn.execute(
                text(
                    "SELECT plan_version_id, count(*) FROM runs GROUP BY plan_version_id "
                    "ORDER BY count(*)"
                )
            ).all()
        deep = [p for p, n in counts if n >= PAGE_SIZE * DEEP_PAGE]
        plan_id = deep[0] if deep else plan_id
        timings = []
        for case in cases(plan_id):
            count = matching(yard, case) if case.where else size
            for page in (1, DEEP_PAGE):
                found = time_case(yard, case, page, repetitions)
                if found is None:
                    continue
                found.size, found.matching = size, count
                timings.append(found)
                console.print(
                    f"  ({case.key}) {case.what}, page {page}: p50 {found.p50:.2f} ms "
                    f"(raw SQL {found.raw_p50:.2f} ms)"
                )
        plain = plain_page(yard, repetitions * 10)
        console.print(f"  plain newest-first page: p50 {plain[0]:.3f} ms")
    return timings, plain, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="SQLite at 100,000 runs only")
    parser.add_argument("--sizes", default=None, help="SQLite sizes, comma-separated")
    parser.add_argument("--no-pg", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--repetitions", type=int, default=30)
    parser.add_argument("--keep", default=None, help="keep (and reuse) the seeded yards here")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    console = Console(highlight=False, width=200)
    sizes = [100_000] if args.quick else [100_000, 1_000_000]
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="runyard-qbench-"))
    rng = random.Random(args.seed)
    results: list[Timing] = []
    plains: list[tuple[str, int, tuple[float, float]]] = []
    seeding: list[tuple[str, int, float]] = []
    try:
        for size in sizes:
            found, plain, seconds = run_size(
                console, size, "sqlite", root / f"sqlite-{size}", None, args.repetitions, rng
            )
            results += found
            plains.append(("sqlite", size, plain))
            seeding.append(("sqlite", size, seconds))
        pg_base = os.environ.get(
            "RUNYARD_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        )
        if not args.quick and not args.no_pg:
            url = pg_schema_url(pg_base)
            if url is not None:
                try:
                    found, plain, seconds = run_size(
                        console,
                        100_000,
                        "postgresql",
                        Path(tempfile.mkdtemp(prefix="runyard-qbench-pg-")),
                        url,
                        args.repetitions,
                        rng,
                    )
                    results += found
                    plains.append(("postgresql", 100_000, plain))
                    seeding.append(("postgresql", 100_000, seconds))
                finally:
                    drop_pg_schema(pg_base, url)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print_results(console, results, plains, seeding, max(sizes))
    return 0


def print_results(
    console: Console,
    results: list[Timing],
    plains: list[tuple[str, int, tuple[float, float]]],
    seeding: list[tuple[str, int, float]],
    largest: int,
) -> None:
    table = Table(title=f"Queries through list_runs, {PAGE_SIZE} runs a page")
    for name, justify in [
        ("engine", "left"),
        ("runs", "right"),
        ("case", "left"),
        ("matching", "right"),
        ("page", "right"),
        ("p50 ms", "right"),
        ("p95 ms", "right"),
        ("raw SQL p50", "right"),
        ("target", "right"),
        ("meets", "center"),
        ("MLflow", "left"),
    ]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for t in results:
        judged = t.engine == "sqlite" and t.size == largest and largest >= 1_000_000
        table.add_row(
            t.engine,
            f"{t.size:,}",
            f"({t.case.key}) {t.case.what}",
            f"{t.matching:,}",
            str(t.page),
            f"{t.p50:.2f}",
            f"{t.p95:.2f}",
            f"{t.raw_p50:.2f}",
            f"≤ {TARGET_MS:.0f}" if judged else "",
            ("[green]yes[/green]" if t.p50 <= TARGET_MS else "[red]NO[/red]") if judged else "",
            MLFLOW.get(t.case.key, "") if t.page == 1 else "",
        )
    console.print(table)
    table = Table(title="The plain newest-first page, in-process")
    for name in ("engine", "runs", "p50 ms", "p95 ms", "target", "meets"):
        table.add_column(name)
    for engine_name, size, (p50, p95) in plains:
        table.add_row(
            engine_name,
            f"{size:,}",
            f"{p50:.3f}",
            f"{p95:.3f}",
            f"≤ {PLAIN_TARGET_MS}",
            "[green]yes[/green]" if p50 <= PLAIN_TARGET_MS else "[red]NO[/red]",
        )
    console.print(table)
    for engine_name, size, seconds in seeding:
        if seconds:
            console.print(f"seeded {engine_name} to {size:,} runs in {seconds:.0f} s")
    console.print(
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cpus"
    )


if __name__ == "__main__":
    sys.exit(main())
