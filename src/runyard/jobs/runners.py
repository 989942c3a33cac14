"""Runners: how a planning job executes a plan, always as a child process.

A ``command`` runner is an argv template (no shell) with ``{placeholders}``; a
``python`` runner is ``module:function``, called in a child Python
(``python -m runyard.jobs.entry``) with a small context. Either way the child gets
its own process group (so cancelling or timing out stops it and everything it
started), an environment built explicitly (below), and one file, ``runner.log`` in
the run folder, for its standard output and error.

The environment is not the worker's: only ``PATH``, ``HOME``, ``LANG``, ``LC_ALL``,
``TZ``, ``TMPDIR``, ``PYTHONPATH`` and ``VIRTUAL_ENV`` are passed on (when set), then
the runner's ``env`` table, then ``RUNYARD_RUN_DIR``, ``RUNYARD_RUN_ID``,
``RUNYARD_JOB_ID``, ``RUNYARD_PLAN_VERSION_ID``, ``RUNYARD_CONFIG_FILE``,
``RUNYARD_PARAMS_FILE`` and ``RUNYARD_SCENARIO_DATA_FILE``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from runyard.config import RunnerSection

PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
RUNNER_LOG = "runner.log"
KILL_GRACE_SECONDS = 5.0
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class RunnerFiles:
    """What a runner is given: the run folder and the input files in it."""

    run_dir: Path
    run_id: str
    job_id: str
    plan_version_id: str
    config: Path
    params: Path
    plan: Path
    scenario_data: Path | None


@dataclass(frozen=True)
class RunnerOutcome:
    returncode: int | None  # None: stopped (timeout or cancel)
    seconds: float
    timed_out: bool
    cancelled: bool
    argv: list[str]

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not (self.timed_out or self.cancelled)


def argv_for(runner: RunnerSection, files: RunnerFiles) -> list[str]:
    """The child's argv: the template filled in, or the Python entry point."""
    if runner.kind == "python":
        assert runner.entry is not None
        return [sys.executable, "-m", "runyard.jobs.entry", runner.entry, str(files.run_dir)]
    assert runner.argv is not None
    values = {
        "run_dir": str(files.run_dir),
        "run_id": files.run_id,
        "config": str(files.config),
        "params": str(files.params),
        "plan": str(files.plan),
        "scenario_data": str(files.scenario_data or ""),
        "python": sys.executable,
    }
    return [part.format(**values) for part in runner.argv]


def environment_for(runner: RunnerSection, files: RunnerFiles) -> dict[str, str]:
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env.update(runner.env)
    env.update(
        {
            "RUNYARD_RUN_DIR": str(files.run_dir),
            "RUNYARD_RUN_ID": files.run_id,
            "RUNYARD_JOB_ID": files.job_id,
            "RUNYARD_PLAN_VERSION_ID": files.plan_version_id,
            "RUNYARD_CONFIG_FILE": str(files.config),
            "RUNYARD_PARAMS_FILE": str(files.params),
            "RUNYARD_SCENARIO_DATA_FILE": str(files.scenario_data or ""),
        }
    )
    return env


def run_runner(
    runner: RunnerSection,
    files: RunnerFiles,
    should_stop: Callable[[], bool],
    log: Callable[[str], None],
    environ: Mapping[str, str] | None = None,
) -> RunnerOutcome:
    """Run the child to its end, its timeout, or until ``should_stop()`` says cancel.

    Raises:
        OSError: the program cannot be started (missing, not executable); the caller
            fails the job with that message.
    """
    argv = argv_for(runner, files)
    env = dict(environ) if environ is not None else environment_for(runner, files)
    log(f"runner: {' '.join(argv)}")
    began = time.monotonic()
    with open(files.run_dir / RUNNER_LOG, "ab") as out:
        child = subprocess.Popen(
            argv,
            cwd=files.run_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )
    deadline = began + runner.timeout_seconds
    timed_out = cancelled = False
    while True:
        try:
            child.wait(timeout=POLL_SECONDS)  # returns the moment it exits
            break
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() >= deadline:
            timed_out = True
        elif should_stop():
            cancelled = True
        if timed_out or cancelled:
            _stop_group(child)
            break
    seconds = time.monotonic() - began
    code = None if (timed_out or cancelled) else child.returncode
    log(
        f"runner ended after {seconds:.2f} s: "
        + ("timed out" if timed_out else "cancelled" if cancelled else f"exit code {code}")
    )
    return RunnerOutcome(code, seconds, timed_out, cancelled, argv)


def _stop_group(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the child's process group; after the child has ended (or a grace
    period), SIGKILL to whatever is left of the group, which a child that exited on
    SIGTERM may have left behind."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=KILL_GRACE_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()
