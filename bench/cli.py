"""The CLI's start-up: how long a pipeline waits each time it shells out to ``runyard``.

Usage::

    .venv/bin/python bench/cli.py            # 30 runs of each command
    .venv/bin/python bench/cli.py --runs 100

Each command runs as a fresh process (as a pipeline calls it), its wall time from spawn
to exit, p50 and p95, beside ``python -c pass`` in the same run (the interpreter's own
start-up). ``run list --json`` runs in a small fresh yard with a few runs. Targets:
``runyard --help`` ≤ 150 ms and local ``runyard run list --json`` ≤ 350 ms p50.
``runyard --server URL run start --json`` ≤ 250 ms p50, against a real ``runyard serve``
of that yard started here (the remote path loads httpx, never SQLAlchemy or pydantic).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
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
REMOTE_START_TARGET_MS = 250.0


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


def make_plan(runyard: list[str], yard: Path, work: Path, env: dict[str, str]) -> str:
    """A config and a plan of scenario ``s`` in ``yard``: the plan's id."""
    config = work / "config.json"
    config.write_text('{"seed": 1}')

    def call(*args: str) -> dict[str, str]:
        done = subprocess.run(
            [*runyard, "--yard", str(yard), *args, "--json"],
            env=env,
            check=True,
            capture_output=True,
        )
        answer: dict[str, str] = json.loads(done.stdout)
        return answer

    config_id = call("config", "add", str(config))["config_version_id"]
    return call("plan", "create", "--scenario", "s", "--config", config_id)["plan_version_id"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"runyard serve did not listen on port {port}")


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
        plan_id = make_plan(runyard, yard, work, env)
        port = free_port()
        server = subprocess.Popen(
            [*runyard, "--yard", str(yard), "serve", "--port", str(port), "--no-worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        wait_for(port)
        rows = [
            ("python -c pass", [sys.executable, "-c", "pass"], None),
            ("runyard --help", [*runyard, "--help"], HELP_TARGET_MS),
            ("runyard run list --help", [*runyard, "run", "list", "--help"], None),
            (
                "runyard run list --json (local)",
                [*runyard, "--yard", str(yard), "run", "list", "--json"],
                LIST_TARGET_MS,
            ),
            (
                "runyard --server URL run start --json",
                [*runyard, "--server", url, "run", "start", "--plan", plan_id, "--json"],
                REMOTE_START_TARGET_MS,
            ),
        ]
        results = []
        try:
            for name, command, target in rows:
                samples = timed(command, args.runs, env, work)
                results.append((name, samples, target))
        finally:
            server.terminate()
            server.wait(timeout=10)
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
