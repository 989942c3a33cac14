"""Run ``runyard`` commands in forked children of one process that imported it once.

The crash tests run a few hundred archive, restore and recover commands. As separate
``python -m runyard`` processes each one would spend most of its time importing
(about 0.6 s of CPU); forked from this server each starts at once. A child is a real
process like any other: it runs ``runyard.cli.main.main()`` with its own argv,
environment and stdout/stderr files, and a crash point kills it with SIGKILL exactly
as it would kill ``python -m runyard``.

Protocol: one JSON request per line on stdin, one JSON reply per line on stdout.
Request keys: ``argv`` (after ``runyard``), ``env`` (variables to set, ``null`` to
unset), ``stdout``/``stderr`` (files the child writes), and optionally
``kill_after`` (seconds: SIGKILL the child then, if it still runs) or ``kill_when``
(``{"glob": G, "min": A, "max": B}``: SIGKILL it as soon as a file matching G has a
size in [A, B], i.e. while it is being written). Reply: ``returncode`` (negative:
killed by that signal), ``killed_by_server`` and ``seconds``.

This server never calls into runyard itself, so children inherit only imported
modules: no engine, no open file, and a crash-point counter of zero.
"""

from __future__ import annotations

import glob
import json
import os
import select
import signal
import sys
import time
import traceback
from typing import Any

import runyard.cli.main
from runyard.lifecycle import crashpoints


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
            runyard.cli.main.main()
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


def _serve(request: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        _child(request)
    killed = False
    pidfd = os.pidfd_open(pid)
    try:
        if request.get("kill_after") is not None:
            if not select.select([pidfd], [], [], float(request["kill_after"]))[0]:
                os.kill(pid, signal.SIGKILL)  # not reaped yet: the pid cannot have been reused
                killed = True
        elif request.get("kill_when") is not None:
            killed = _kill_when(pid, pidfd, request["kill_when"])
    finally:
        os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    return {
        "returncode": os.waitstatus_to_exitcode(status),
        "killed_by_server": killed,
        "seconds": time.monotonic() - started,
    }


def main() -> None:
    assert crashpoints._counter == 0, "the server must never pass a crash point itself"
    for line in sys.stdin:
        if not line.strip():
            continue
        reply = _serve(json.loads(line))
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
