"""The web benchmark: how fast ``runyard serve`` answers pages of runs, and its memory.

Usage::

    .venv/bin/python bench/web.py               # 1,000,000 runs, 200 requests a row
    .venv/bin/python bench/web.py --quick       # 100,000 runs, 50 requests a row
    .venv/bin/python bench/web.py --dir /mnt/fast --keep-yard

A fresh SQLite yard in a temporary folder (``--dir`` chooses where) is seeded with rows
the way bench/registry.py seeds them (bulk inserts, a hundred plan versions, the busiest
holding about a fifth of the runs). Then a real server process is started,
``runyard --yard Y serve --no-worker --port P``, and timed over HTTP on loopback through
one keep-alive connection, the rows taken in turn after a warm-up: the first page of
``/api/v1/runs``, the first page and a deep page of the busiest plan version's runs (the
deep page's cursor found by following ``next_cursor`` once beforehand), and the same two
pages of ``/ui/runs`` (shown as "not available" while the server does not answer them).
Last, the server's resident memory (``VmRSS``, ``VmHWM``), its child processes included.
The server and the temporary folder are removed at the end, also on failure, Ctrl-C or
SIGTERM. bench/README.md says what each figure means.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select, text

import runyard
from runyard.db.tables import run_kpis, runs
from runyard.registry import plans
from runyard.registry.runs import RunFilter

sys.path.insert(0, str(Path(__file__).parent))
# The environment line, the verdict cell, the temporary folder and SIGTERM unwinding
# come from the lifecycle bench; the environment without RUNYARD_* from the jobs bench;
# the plans, the seeding and the in-process page timing from the registry bench.
from jobs import clean_environ
from lifecycle import environment, exit_on_sigterm, filesystem_of, temporary_folder, verdict
from registry import PAGE_SIZE, explain, make_plans, seed, time_page

API_TARGET_MS = 20.0  # p50 of a page of /api/v1/runs
UI_TARGET_MS = 50.0  # p50 of a page of /ui/runs
MEMORY_TARGET_MB = 150.0  # the server's resident memory, children included
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Sizes:
    runs: int
    requests: int  # timed requests per row
    warmup: int  # untimed requests per row first
    deep_page: int
    seed_chunk: int


FULL = Sizes(runs=1_000_000, requests=200, warmup=20, deep_page=1_000, seed_chunk=50_000)
QUICK = Sizes(runs=100_000, requests=50, warmup=10, deep_page=100, seed_chunk=25_000)


@dataclass
class Row:
    what: str
    path: str
    target_ms: float
    samples_ms: list[float]
    status: int = 200
    body_bytes: int = 0
    in_process_ms: float | None = None  # p50 of the same list_runs call without HTTP
    reconnects: int = 0  # connections opened while timing (0 when keep-alive held)
    first_run: str | None = None  # the page's first run id (API rows: read from the page)
    missing_first_run: bool = False  # a UI page without the first run of its API twin

    @property
    def available(self) -> bool:
        return self.status == 200 and bool(self.samples_ms)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Seeded:
    yard_path: Path
    plan: str  # the busiest plan version
    plan_runs: int
    seconds: float
    db_bytes: int


# --- the yard ---------------------------------------------------------------------------


def seed_yard(folder: Path, sizes: Sizes, rng: random.Random) -> Seeded:
    """A fresh yard in ``folder`` with ``sizes.runs`` rows, as bench/registry.py seeds."""
    runyard.init_yard(folder, preset="planning", environ=clean_environ())
    with runyard.open_yard(folder, environ=clean_environ()) as yard:
        plan_ids = make_plans(yard)
        with yard.read() as conn:
            lineage = {
                p.plan_version_id: (p.config_version_id, p.scenario_id)
                for p in (plans.get_plan(conn, pid) for pid in plan_ids)
            }
        now = datetime.now(UTC).replace(tzinfo=None)
        base = now - timedelta(days=1, seconds=3 * sizes.runs)
        seconds = seed(yard, plan_ids, lineage, sizes.runs, sizes.seed_chunk, rng, base)
        began = time.perf_counter()
        index_kpis(yard)
        seconds += time.perf_counter() - began
        with yard.read() as conn:
            plan, count = conn.execute(
                select(runs.c.plan_version_id, func.count())
                .group_by(runs.c.plan_version_id)
                .order_by(func.count().desc())
                .limit(1)
            ).one()
        db = yard.engine.url.database
    db_bytes = sum(
        Path(f"{db}{suffix}").stat().st_size
        for suffix in ("", "-wal")
        if db and Path(f"{db}{suffix}").exists()
    )
    return Seeded(folder, str(plan), int(count), seconds, db_bytes)


KPI_COLUMNS = ("fill_rate", "total_cost", "average_inventory", "stockout_periods")
KPI_QUERY = "kpi.fill_rate >= 0.9"


def index_kpis(yard: runyard.Yard) -> None:
    """The query index of the seeded runs (their four KPIs), in bulk: what ``run finish``
    writes row by row, made here with one INSERT … SELECT per KPI (SQLite's JSON)."""
    with yard.write() as conn:
        conn.execute(text("DROP INDEX IF EXISTS ix_run_kpis_value"))
        conn.execute(text("DROP INDEX IF EXISTS ix_run_kpis_plan"))
        for name in KPI_COLUMNS:
            conn.execute(
                text(
                    "INSERT INTO run_kpis (run_id, name, value, started_at, plan_version_id) "
                    "SELECT run_id, :name, json_extract(summary, '$.' || :name), started_at, "
                    "plan_version_id FROM runs"
                ),
                {"name": name},
            )
        for table in (run_kpis,):
            for index in table.indexes:
                index.create(conn)


# --- the server -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def runyard_command() -> list[str]:
    """The ``runyard`` script beside this Python (the venv's), else ``python -m runyard``."""
    script = Path(sys.executable).parent / "runyard"
    return [str(script)] if script.exists() else [sys.executable, "-m", "runyard"]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    argv: list[str]
    port: int
    log: Path
    ready_s: float


def launch(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` with a clean environment, its output in ``log``, in a session of its
    own (so that a Ctrl-C reaches this script only, which then stops it)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            argv,
            env=clean_environ(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextmanager
def running_server(yard_path: Path, log: Path) -> Iterator[Server]:
    """``runyard serve`` on a free loopback port, stopped (terminate, then kill) at the end."""
    port = free_port()
    argv = [*runyard_command(), "--yard", str(yard_path), "serve", "--no-worker"]
    argv += ["--port", str(port)]
    began = time.perf_counter()
    process = launch(argv, log)
    try:
        wait_until_ready(process, port, log)
        yield Server(process, argv, port, log, time.perf_counter() - began)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# The floor for "server ready": a one-route FastAPI app on Uvicorn, in the same Python.
BARE_APP = """
import sys
import uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def bare_app_ready_s(log: Path) -> float:
    """Seconds from launch to the first answer of a bare FastAPI app on Uvicorn."""
    port = free_port()
    began = time.perf_counter()
    process = launch([sys.executable, "-c", BARE_APP, str(port)], log)
    try:
        wait_until_ready(process, port, log)
        return time.perf_counter() - began
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_until_ready(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the server exited with code {process.returncode}:\n{log.read_text()[-2000:]}"
            )
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.05)
    raise RuntimeError(
        f"the server did not answer /healthz within {READY_TIMEOUT_S:.0f} s:\n"
        f"{log.read_text()[-2000:]}"
    )


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc; just ``pid`` elsewhere)."""
    parent_of: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent_of[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree = [pid]
    for p in tree:  # grows while it is walked
        tree += [child for child, parent in parent_of.items() if parent == p]
    return tree


def memory_mb(pid: int) -> tuple[float, float, int]:
    """(VmRSS, VmHWM) in MB summed over ``pid`` and its descendants, and how many."""
    totals = {"VmRSS": 0, "VmHWM": 0}
    tree = process_tree(pid)
    for p in tree:
        try:
            lines = Path(f"/proc/{p}/status").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, value = line.partition(":")
            if key in totals:
                totals[key] += int(value.split()[0]) * 1024  # reported in kB
    return totals["VmRSS"] / 1e6, totals["VmHWM"] / 1e6, len(tree)


# --- requests ---------------------------------------------------------------------------


class Client:
    """GET over one keep-alive HTTP/1.1 connection, reopened only if the server closed it."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.connections = 0

    def get(self, path: str) -> tuple[int, bytes, float]:
        """(status, body, ms from sending the request to the body's last byte)."""
        for attempt in (1, 2):
            if self.conn.sock is None:
                self.conn.connect()
                self.connections += 1
            try:
                began = time.perf_counter()
                self.conn.request("GET", path)
                response = self.conn.getresponse()
                body = response.read()
                return response.status, body, (time.perf_counter() - began) * 1000
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()  # idle past the server's keep-alive timeout
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def runs_path(prefix: str, plan: str | None = None, after: str | None = None) -> str:
    query = {k: v for k, v in (("plan_version_id", plan), ("after", after)) if v}
    return f"{prefix}?{urlencode(query)}" if query else prefix


def walk_to_page(client: Client, plan: str, page: int) -> tuple[str, float]:
    """The cursor that fetches ``page`` of the plan's runs, found by following
    ``next_cursor`` from the first page; and the seconds the walk took."""
    began = time.perf_counter()
    cursor: str | None = None
    for k in range(1, page):
        status, body, _ = client.get(runs_path("/api/v1/runs", plan, cursor))
        if status != 200:
            raise RuntimeError(f"page {k} of the plan's runs: HTTP {status}: {body[:300]!r}")
        cursor = json.loads(body)["next_cursor"]
        if cursor is None:
            raise RuntimeError(f"the plan has only {k} pages, not {page}")
    assert cursor is not None
    return cursor, time.perf_counter() - began


def warm_up(client: Client, row: Row, warmup: int, optional: bool) -> None:
    """Untimed requests of ``row.path``, and checks of what they answer. An ``optional``
    row that does not answer 200 is left without samples (not available); any other
    raises."""
    for _ in range(warmup):
        status, body, _ = client.get(row.path)
        row.status, row.body_bytes = status, len(body)
        if status != 200:
            if optional:
                return
            raise RuntimeError(f"{row.path}: HTTP {status}: {body[:300]!r}")
    if row.path.startswith("/api/"):
        items = json.loads(body)["items"]
        if len(items) != PAGE_SIZE:
            raise RuntimeError(f"{row.path}: {len(items)} runs, not a full page of {PAGE_SIZE}")
        row.first_run = items[0]["run_id"]
    elif row.first_run is not None:
        row.missing_first_run = row.first_run.encode() not in body


def time_rows(client: Client, rows: list[Row], requests: int) -> None:
    """``requests`` timed GETs of each row, taking the rows in turn, so that a change in
    the machine's load meanwhile weighs on every row alike."""
    for _ in range(requests):
        for row in rows:
            before = client.connections
            status, _, ms = client.get(row.path)
            if status != 200:
                raise RuntimeError(f"{row.path}: HTTP {status} while timing")
            row.samples_ms.append(ms)
            row.reconnects += client.connections - before


def in_process(yard_path: Path, seeded: Seeded, cursor: str, rows: list[Row], n: int) -> list[str]:
    """The same ``list_runs`` calls in this process, without HTTP: their p50 goes into the
    API rows; the EXPLAIN QUERY PLAN of each listing query is returned."""
    explained = []
    with runyard.open_yard(yard_path, environ=clean_environ()) as yard:
        cases = [
            (RunFilter(), None, "no filter, page 1"),
            (RunFilter(plan_version_id=seeded.plan), None, "plan, page 1"),
            (RunFilter(plan_version_id=seeded.plan), cursor, "plan, deep page"),
        ]
        for row, (filters, after, name) in zip(rows, cases, strict=True):
            samples, statements = time_page(yard, filters, after, n)
            row.in_process_ms = statistics.median(samples)
            listing = [s for s in statements if "FROM runs" in s[0] and "LIMIT" in s[0]]
            if listing:
                explained.append(f"  {name}: " + " | ".join(explain(yard, *listing[-1])))
    return explained


# --- output -----------------------------------------------------------------------------


def print_results(
    console: Console,
    sizes: Sizes,
    seeded: Seeded,
    server: Server,
    rows: list[Row],
    memory: tuple[float, float, int],
    client: Client,
    explained: list[str],
    quick: bool,
) -> None:
    table = Table(
        title=f"runyard serve, {seeded.plan_runs:,} of {sizes.runs:,} runs in the plan "
        f"(SQLite; {sizes.requests} requests a row in turn, one keep-alive connection)"
    )
    table.add_column("request")
    table.add_column("KB", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p95 ms", justify="right")
    table.add_column("max ms", justify="right")
    table.add_column("list_runs ms", justify="right")
    table.add_column("target", justify="right")
    table.add_column("meets", justify="center")
    for row in rows:
        target = f"p50 < {row.target_ms:.0f}"
        if not row.available:
            why = "not available" + (f" (HTTP {row.status})" if row.status != 200 else "")
            table.add_row(row.what, "", why, "", "", "", target, "—")
            continue
        p50 = row.percentile(0.5)
        table.add_row(
            row.what,
            f"{row.body_bytes / 1000:.1f}",
            f"{p50:.2f}",
            f"{row.percentile(0.95):.2f}",
            f"{max(row.samples_ms):.2f}",
            "" if row.in_process_ms is None else f"{row.in_process_ms:.2f}",
            target,
            verdict(p50 < row.target_ms),
        )
    console.print(table)
    console.print(
        "[dim]ms: request sent → last byte of the body read. list_runs ms: p50 of the "
        "same registry call in this process, without HTTP (the rest is the web layer).[/dim]"
    )

    rss, hwm, processes = memory
    table = Table(title=f"Server memory ({processes} process{'es' if processes > 1 else ''})")
    table.add_column("measure")
    table.add_column("MB", justify="right")
    table.add_column("target", justify="right")
    table.add_column("meets", justify="center")
    for what, mb in (("VmRSS after the timings", rss), ("VmHWM (peak)", hwm)):
        target = f"< {MEMORY_TARGET_MB:.0f}"
        table.add_row(what, f"{mb:.1f}", target, verdict(mb < MEMORY_TARGET_MB))
    console.print(table)

    console.print(
        f"seeded {sizes.runs:,} runs in {seeded.seconds:.1f} s (rows only, no folders; "
        f"database {seeded.db_bytes / 1e6:,.0f} MB); server ready in {server.ready_s:.2f} s; "
        f"{client.connections} connection(s) opened for all requests"
    )
    for row in rows:
        if row.reconnects:
            console.print(
                f"[yellow]{row.what}: {row.reconnects} reconnection(s) while timing "
                "(the server closed the keep-alive connection)[/yellow]"
            )
        if row.available and row.missing_first_run:
            console.print(
                f"[yellow]{row.what}: the page does not show run {row.first_run}, the first "
                "run of the same API page (is the cursor honoured?)[/yellow]"
            )
    if any(row.status >= 500 for row in rows):
        tail = server.log.read_text(errors="replace").strip().splitlines()[-3:]
        console.print("\nThe server answered 5xx; the end of its log:")
        console.print("\n".join("  " + line for line in tail), markup=False, highlight=False)
    console.print("\nEXPLAIN QUERY PLAN of each list_runs query:")
    for line in explained:
        console.print(line, markup=False, highlight=False)
    console.print("\nCommands:")
    commands = [shlex.join(server.argv)] + [
        "curl -s " + shlex.quote(f"http://127.0.0.1:{server.port}{row.path}") for row in rows
    ]
    for command in commands:
        console.print("  " + command, markup=False, highlight=False, soft_wrap=True)
    if quick:
        console.print(
            f"\n[yellow]--quick: {sizes.runs:,} runs and page {sizes.deep_page:,}, "
            "not the 1,000,000 runs and page 1,000 the targets are set for[/yellow]"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="100,000 runs and 50 requests a row, not 1,000,000"
    )
    parser.add_argument("--requests", type=int, default=None, help="timed requests per row")
    parser.add_argument(
        "--dir", default=None, help="where to make the temporary yard (default: the system's)"
    )
    parser.add_argument(
        "--keep-yard", action="store_true", help="keep the seeded yard (its path is printed)"
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed for the seeded runs")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.requests is not None:
        if args.requests < 1:
            parser.error("--requests must be at least 1")
        sizes = Sizes(sizes.runs, args.requests, sizes.warmup, sizes.deep_page, sizes.seed_chunk)
    console = Console(width=None if sys.stdout.isatty() else 120)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    console.print(environment())

    with ExitStack() as stack:
        if args.keep_yard:
            work = Path(tempfile.mkdtemp(prefix="runyard-bench-web-", dir=args.dir))
        else:
            work = stack.enter_context(temporary_folder(args.dir, "runyard-bench-web-"))
        console.print(f"temporary folder: {work} on {filesystem_of(work)}")
        seeded = seed_yard(work / "yard", sizes, random.Random(args.seed))
        console.print(
            f"  seeded {sizes.runs:,} runs in {seeded.seconds:.1f} s; "
            f"busiest plan {seeded.plan}: {seeded.plan_runs:,} runs"
        )
        server = stack.enter_context(running_server(seeded.yard_path, work / "serve.log"))
        bare_s = bare_app_ready_s(work / "bare.log")
        console.print(
            f"  server pid {server.process.pid} ready in {server.ready_s:.2f} s "
            f"(a bare one-route FastAPI app on Uvicorn: {bare_s:.2f} s)"
        )
        client = Client(server.port)
        stack.callback(client.close)

        cursor, walk_s = walk_to_page(client, seeded.plan, sizes.deep_page)
        console.print(
            f"  walked to page {sizes.deep_page:,} of the plan's runs in {walk_s:.1f} s "
            f"({1000 * walk_s / (sizes.deep_page - 1):.1f} ms a page)"
        )
        deep = f"page {sizes.deep_page:,}"
        plan = seeded.plan
        api = [
            Row("API, no filter, page 1", runs_path("/api/v1/runs"), API_TARGET_MS, []),
            Row("API, plan, page 1", runs_path("/api/v1/runs", plan), API_TARGET_MS, []),
            Row(f"API, plan, {deep}", runs_path("/api/v1/runs", plan, cursor), API_TARGET_MS, []),
        ]
        ui = [
            Row("UI, plan, page 1", runs_path("/ui/runs", plan), UI_TARGET_MS, []),
            Row(f"UI, plan, {deep}", runs_path("/ui/runs", plan, cursor), UI_TARGET_MS, []),
        ]
        kpi_query = [("where", KPI_QUERY), *(("columns", c) for c in KPI_COLUMNS)]
        query_rows = [
            Row(
                f"UI, {KPI_QUERY}, 4 KPI columns",
                "/ui/runs?" + urlencode(kpi_query),
                UI_TARGET_MS,
                [],
            ),
            Row(
                "UI, order by kpi.total_cost, 4 KPI columns",
                "/ui/runs?" + urlencode([("order_by", "kpi.total_cost asc"), *kpi_query[1:]]),
                UI_TARGET_MS,
                [],
            ),
        ]
        for row in api:
            warm_up(client, row, sizes.warmup, optional=False)
        for row, twin in zip(ui, api[1:], strict=True):
            row.first_run = twin.first_run  # the HTML page should list the same runs
            warm_up(client, row, sizes.warmup, optional=True)
        for row in query_rows:
            warm_up(client, row, sizes.warmup, optional=False)
        ui += query_rows
        timed = [row for row in api + ui if row.status == 200]
        time_rows(client, timed, sizes.requests)
        for row in api + ui:
            shown = f"p50 {row.percentile(0.5):.2f} ms" if row.available else "not available"
            console.print(f"  {row.what}: {shown}")
        memory = memory_mb(server.process.pid)
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        console.print(f"  load average after the timings: {load}")

        explained = in_process(seeded.yard_path, seeded, cursor, api, sizes.requests)
        console.print()
        print_results(
            console, sizes, seeded, server, api + ui, memory, client, explained, args.quick
        )
        if args.keep_yard:
            console.print(f"\nyard kept: {seeded.yard_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
