"""Shared pieces of the job tests: runner tables in runyard.toml, plans, polling, processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from runyard.examples.psi import example_path

REPO_ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).resolve().parent / "jobs_child.py"

T = TypeVar("T")


def toml_str(value: str) -> str:
    """A TOML basic string (JSON's escapes are a subset TOML accepts)."""
    return json.dumps(value)


def toml_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(toml_str(v) for v in values) + "]"


def child_argv(mode: str, *args: str) -> list[str]:
    """argv of a command runner that runs ``jobs_child.py MODE ARGS`` with runyard's Python."""
    return ["{python}", str(CHILD), mode, *args]


def add_config(yard_path: Path, text: str) -> None:
    """Append tables (``[runners.x]``, ``[jobs]``) to the yard's runyard.toml."""
    with open(yard_path / "runyard.toml", "a", encoding="utf-8") as out:
        out.write("\n" + text.strip() + "\n")


def command_runner(
    name: str,
    argv: Sequence[str],
    env: dict[str, str] | None = None,
    timeout_seconds: int | None = None,
) -> str:
    lines = [f"[runners.{name}]", 'kind = "command"', f"argv = {toml_list(argv)}"]
    if timeout_seconds is not None:
        lines.append(f"timeout_seconds = {timeout_seconds}")
    if env:
        pairs = ", ".join(f"{k} = {toml_str(v)}" for k, v in env.items())
        lines.append(f"env = {{ {pairs} }}")
    return "\n".join(lines)


def set_jobs(yard_path: Path, **values: int) -> None:
    """Set keys of the ``[jobs]`` table of runyard.toml, whether ``runyard init`` wrote
    one or not."""
    toml = yard_path / "runyard.toml"
    lines = toml.read_text(encoding="utf-8").splitlines()
    settings = [f"{k} = {v}" for k, v in values.items()]
    if "[jobs]" not in lines:
        toml.write_text("\n".join([*lines, "", "[jobs]", *settings]) + "\n", encoding="utf-8")
        return
    start = lines.index("[jobs]") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
    kept = [line for line in lines[start:end] if line.split("=", 1)[0].strip() not in values]
    lines[start:end] = [*settings, *kept]
    toml.write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_plan(
    cli: Any,
    tmp_path: Path,
    runner: str = "default",
    *,
    data: bool = True,
    scenario: str = "base",
    params: Sequence[str] = ("horizon=12",),
) -> dict[str, str]:
    """A scenario (with the PSI example's small data unless ``data=False``), the example's
    base config and a plan version using ``runner``; their ids."""
    found = cli("scenario", "show", scenario, "--json")
    if found.exit_code == 0:
        scenario_doc = found.json
    elif data:
        scenario_doc = cli.ok(
            "scenario", "add", scenario, "--data", str(example_path("small.json"))
        )
    else:
        scenario_doc = cli.ok("scenario", "add", scenario)
    config = cli.ok("config", "add", str(example_path("config-base.json")), "--name", "base")
    plan_args: list[str] = []
    for param in params:
        plan_args += ["--param", param]
    plan = cli.ok(
        "plan",
        "create",
        "--scenario",
        scenario_doc["scenario_id"],
        "--config",
        config["config_version_id"],
        "--runner",
        runner,
        *plan_args,
    )
    return {
        "scenario_id": scenario_doc["scenario_id"],
        "config_version_id": config["config_version_id"],
        "plan_version_id": plan["plan_version_id"],
    }


def wait_until(check: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def kill_quietly(pid: int | None) -> None:
    """Clean up a process this test started (directly or through a runner)."""
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def start_runyard(
    yard_path: Path, out_dir: Path, *args: str, ctrl_c: bool = False
) -> subprocess.Popen[bytes]:
    """``python -m runyard --yard Y ARGS`` as a child process (the env is ours, so
    RUNYARD_DB points it at the test's PostgreSQL schema); its stdout and stderr go to
    ``out_dir/<n>.out`` and ``<n>.err``, n counting from 0.

    ``ctrl_c``: the child takes SIGINT as from a terminal even when the suite itself was
    started in the background by a shell without job control, which ignores SIGINT for
    it and so, through exec, for every process it starts (Python then never raises
    KeyboardInterrupt)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(list(out_dir.glob("*.out")))
    with open(out_dir / f"{n}.out", "wb") as out, open(out_dir / f"{n}.err", "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "runyard", "--yard", str(yard_path), *args],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            preexec_fn=_default_sigint if ctrl_c else None,
        )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_worker(yard_path: Path, out_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    """``runyard worker ARGS`` in a child process (see ``start_runyard``)."""
    return start_runyard(yard_path, out_dir, "worker", *args)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Kill a worker process the test started, if it still runs."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
