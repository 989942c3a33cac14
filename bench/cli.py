"""The CLI's start-up: how long a pipeline waits each time it shells out to ``runyard``.

Usage::

    .venv/bin/python bench/cli.py            # 30 runs of each command
    .venv/bin/python bench/cli.py --runs 100

Each command runs as a fresh process (as a pipeline calls it), its wall time from spawn
to exit, p50 and p95, beside ``python -c pass`` in the same run (the interpreter's own
start-up). ``run list --json`` runs in a small fresh yard with a few runs. Targets:
``runyard --help`` ≤ 150 ms and local ``runyard run list --json`` ≤ 350 ms p50.
``runyard --server URL run start`` (≤ 250 ms) waits for the HTTP write side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HELP_TARGET_MS = 150.0
LIST_TARGET_MS = 350.0


def runyard_argv() -> list[str]:
    found = Path(sys.executable).with_name("runyard")
    return [str(found)] if found.exists() else [sys.executable, "-m", "runyard"]


def timed(argv: list[str], runs: int, env: dict[str, str], cwd: Path) -> list[float]:
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True)
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    runyard = runyard_argv()
    with tempfile.TemporaryDirectory(prefix="runyard-bench-cli-") as tmp:
        work = Path(tmp)
        yard = work / "yard"
        subprocess.run([*runyard, "init", str(yard)], env=env, check=True, capture_output=True)
        subprocess.run(
            [*runyard, "--yard", str(yard), "scenario", "add", "s"],
            env=env,
            check=True,
            capture_output=True,
        )
        rows = [
            ("python -c pass", [sys.executable, "-c", "pass"], None),
            ("runyard --help", [*runyard, "--help"], HELP_TARGET_MS),
            ("runyard run list --help", [*runyard, "run", "list", "--help"], None),
            (
                "runyard run list --json (local)",
                [*runyard, "--yard", str(yard), "run", "list", "--json"],
                LIST_TARGET_MS,
            ),
        ]
        results = []
        for name, command, target in rows:
            samples = timed(command, args.runs, env, work)
            results.append((name, samples, target))
    table = Table(title=f"CLI start-up, {args.runs} fresh processes each")
    for column in ("command", "p50 ms", "p95 ms", "mean ms", "target", "meets"):
        table.add_column(column, justify="left" if column == "command" else "right")
    for name, samples, target in results:
        p50 = percentile(samples, 0.5)
        table.add_row(
            name,
            f"{p50:.0f}",
            f"{percentile(samples, 0.95):.0f}",
            f"{statistics.fmean(samples):.0f}",
            f"≤ {target:.0f}" if target else "",
            ("[green]yes[/green]" if p50 <= target else "[red]NO[/red]") if target else "",
        )
    Console(highlight=False).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
