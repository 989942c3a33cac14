"""The durability benchmark: how fast ``check`` and ``rebuild`` go over many runs.

Usage::

    .venv/bin/python bench/durability.py            # 20,000 small runs
    .venv/bin/python bench/durability.py --quick    # 2,000
    .venv/bin/python bench/durability.py --runs 100000

A fresh SQLite yard in a temporary folder (removed at the end) gets N finished runs
(folder, ``run.json``, two small files each) through ``record_runs``. Then: ``check``
on the consistent yard; ``rebuild`` after every registry row was deleted (the lineage
files and run folders stay, as after losing the database); ``rebuild`` again (nothing
to do); ``check`` once more, which must find nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import text

import runyard
from runyard.durability.check import check_yard
from runyard.durability.rebuild import rebuild

sys.path.insert(0, str(Path(__file__).parent))
from lifecycle import make_plan, make_yard, register_runs, small_files

# Child tables first; the registry's meta rows stay, as after `runyard db upgrade`.
TABLES = (
    "aggregates",
    "jobs",
    "executions",
    "runs",
    "plan_versions",
    "config_versions",
    "scenarios",
    "scenario_data",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2,000 runs")
    parser.add_argument("--runs", type=int, default=None, help="how many runs")
    parser.add_argument("--dir", default=None, help="where the temporary yard goes")
    args = parser.parse_args(argv)
    n = args.runs if args.runs is not None else (2_000 if args.quick else 20_000)
    if n < 1:
        parser.error("--runs must be at least 1")
    console = Console(width=None if sys.stdout.isatty() else 100)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    console.print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, load average {load}"
    )
    work = Path(tempfile.mkdtemp(prefix="runyard-bench-durability-", dir=args.dir))
    rows: list[tuple[str, float, str]] = []
    try:
        with runyard.open_yard(make_yard(work / "yard")) as yard:
            began = time.perf_counter()
            register_runs(yard, make_plan(yard), n, small_files)
            console.print(f"set up {n:,} runs in {time.perf_counter() - began:.1f} s")
            began = time.perf_counter()
            report = check_yard(yard)
            rows.append(("check (consistent yard)", time.perf_counter() - began, f"ok={report.ok}"))
            with yard.write() as conn:
                for table in TABLES:
                    conn.execute(text(f"DELETE FROM {table}"))
            began = time.perf_counter()
            first = rebuild(yard)
            rows.append(
                (
                    "rebuild (empty registry)",
                    time.perf_counter() - began,
                    f"{first.inserted['runs']:,} runs added",
                )
            )
            began = time.perf_counter()
            second = rebuild(yard)
            rows.append(("rebuild again", time.perf_counter() - began, f"changed={second.changed}"))
            began = time.perf_counter()
            after = check_yard(yard)
            rows.append(("check after rebuild", time.perf_counter() - began, f"ok={after.ok}"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = Table(title=f"check and rebuild over {n:,} runs (SQLite)")
    for column in ("step", "seconds", "runs/s", "result"):
        table.add_column(column, justify="left" if column in ("step", "result") else "right")
    for step, seconds, result in rows:
        table.add_row(step, f"{seconds:.2f}", f"{n / seconds:,.0f}", result)
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
