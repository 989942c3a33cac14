"""Run ``runyard`` commands in forked children of one process that imported it once.

The crash tests run over a thousand archive, restore, recover and list commands. As
separate ``python -m runyard`` processes each would spend most of its time importing
(about 0.6 s of CPU) and building the click command tree (about 45 ms); forked from
this server, which did both once, each starts at once. A child is a real process like
any other: it runs the command ``runyard.cli.main.main()`` runs, with its own argv,
environment and stdout/stderr files, and a crash point kills it with SIGKILL exactly
as it would kill ``python -m runyard``.

Protocol: one JSON request per line on stdin, one JSON reply per line on stdout.
Request keys: ``argv`` (after ``runyard``), ``env`` (variables to set, ``null`` to
unset), ``stdout``/``stderr`` (files the child writes), and optionally ``watch`` (a
file, e.g. the crash log: the reply says when it appeared), ``kill_after`` (seconds
from the start, or from the appearance of ``watch``: SIGKILL the child then, if it
still runs) or ``kill_when`` (``{"glob": G, "min": A, "max": B}``: SIGKILL it as soon
as a file matching G has a size in [A, B], i.e. while it is being written). Reply:
``returncode`` (negative: killed by that signal), ``killed_by_server``, ``seconds``,
``watch_seconds`` (or null) and ``cpu_seconds``.

This server never calls into runyard itself, so children inherit only imported
modules: no engine, no open file, and a crash-point counter of zero.

``--journal-every=N`` makes archive and restore flush their journal (registry and
report) after every N moves and never on a timer: the flush cadence is a tuning
constant, and with a timer the N-th crash point would be another step from one run to
the next (and a small batch would never flush before its end).
"""

from __future__ import annotations

import glob
import json
import math
import os
import select
import signal
import sys
import time
import traceback
from typing import Any

import pydantic.type_adapter  # noqa: F401  (imported on first use by every command)
import sqlalchemy.dialects.sqlite  # noqa: F401
import typer.main

import runyard.cli.main
from runyard.lifecycle import crashpoints

COMMAND = typer.main.get_command(runyard.cli.main.app)
"""What ``runyard.cli.main.main()`` builds and calls, built once for every child."""


def _child(request: dict[str, Any]) -> None:
    """In the forked child: become ``runyard ARGV``; never returns."""
    code = 70
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # stdin is the server's request pipe: never read it
        out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, 1)
        os.dup2(err, 2)
        for fd in (null, out, err):
            os.close(fd)
        for key, value in request.get("env", {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        sys.argv = ["runyard", *request["argv"]]
        try:
            COMMAND(prog_name="runyard")  # reads sys.argv, as main() does
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _kill_when(pid: int, pidfd: int, rule: dict[str, Any]) -> bool:
    """SIGKILL ``pid`` once a file matching the rule's glob has a size in its range."""
    while True:
        for path in glob.glob(rule["glob"]):
            try:
                size = os.lstat(path).st_size
            except FileNotFoundError:
                continue
            if rule["min"] <= size <= rule["max"]:
                os.kill(pid, signal.SIGKILL)
                return True
        if select.select([pidfd], [], [], 0.0002)[0]:
            return False  # it finished (or died) first


def _appeared(pidfd: int, path: str) -> bool:
    """Wait until ``path`` exists (True) or the child has exited (False)."""
    while not os.path.exists(path):
        if select.select([pidfd], [], [], 0.0002)[0]:
            return False
    return True


def _serve(request: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        _child(request)
    killed = False
    watch_seconds = None
    pidfd = os.pidfd_open(pid)
    try:
        running = True
        if request.get("watch") is not None:
            running = _appeared(pidfd, request["watch"])
            watch_seconds = time.monotonic() - started if running else None
        kill_after, kill_when = request.get("kill_after"), request.get("kill_when")
        if running and kill_after is not None:
            if not select.select([pidfd], [], [], float(kill_after))[0]:
                os.kill(pid, signal.SIGKILL)  # not reaped yet: the pid cannot have been reused
                killed = True
        elif running and kill_when is not None:
            killed = _kill_when(pid, pidfd, kill_when)
    finally:
        os.close(pidfd)
    _, status, usage = os.wait4(pid, 0)
    return {
        "returncode": os.waitstatus_to_exitcode(status),
        "killed_by_server": killed,
        "seconds": time.monotonic() - started,
        "watch_seconds": watch_seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }


def main() -> None:
    assert crashpoints._counter == 0, "the server must never pass a crash point itself"
    for arg in sys.argv[1:]:
        name, _, value = arg.partition("=")
        if name == "--journal-every":
            from runyard.lifecycle.journal import Journal

            assert hasattr(Journal, "EVERY") and hasattr(Journal, "INTERVAL"), "Journal changed"
            Journal.EVERY, Journal.INTERVAL = int(value), math.inf
        elif name == "--move-threads":
            from runyard.lifecycle import movers

            assert hasattr(movers, "THREADS"), "movers changed"
            movers.THREADS = int(value)
        else:
            raise SystemExit(f"unknown option {arg}")
    for line in sys.stdin:
        if not line.strip():
            continue
        reply = _serve(json.loads(line))
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
