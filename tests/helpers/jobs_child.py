"""A runner child for the job tests: ``python jobs_child.py MODE [ARGS…]``, run in the run dir.

Modes:
    record      write argv, the executable and the environment to ``record.json``, and a
                summary ``{"ok": 1}``.
    fail        print eight numbered lines, then exit 3.
    sleep       write ``child.pid``, start a grandchild (same process group) and write
                its ``grandchild.pid``, then sleep ``ARGS[0]`` seconds (default 30) and
                succeed; ``ARGS[1]`` (child, grandchild or both) ignores SIGTERM.
    count       a summary whose ``cost`` is the number of run folders beside this one
                (1, 2, 3 … when runs are made one after another).
    once        the first attempt (no file at ``$JOBS_MARKER``) creates the marker, writes
                ``child.pid`` and sleeps 30 s; any later one writes a summary and succeeds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

GRANDCHILD = (
    "import signal, sys, time\n"
    "if sys.argv[2] == 'ignore':\n"
    "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "open('grandchild.ready', 'w').close()\n"
    "time.sleep(float(sys.argv[1]))\n"
)


def _write(name: str, value: object) -> None:
    """Write atomically: the tests poll for these files while the child runs."""
    tmp = Path(name + ".tmp")
    tmp.write_text(json.dumps(value), encoding="utf-8")
    os.replace(tmp, name)


def _sleep(seconds: float, stubborn: str = "none") -> None:
    """Sleep with a grandchild; ``stubborn`` (none, child, grandchild, both) says which of
    the two ignore SIGTERM (the grandchild is ready when ``grandchild.pid`` appears)."""
    if stubborn in ("child", "both"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _write("child.pid", os.getpid())
    ignore = "ignore" if stubborn in ("grandchild", "both") else "default"
    grandchild = subprocess.Popen([sys.executable, "-c", GRANDCHILD, str(seconds), ignore])
    deadline = time.monotonic() + 20
    while ignore == "ignore" and not Path("grandchild.ready").exists():
        if time.monotonic() > deadline:
            return  # never announced: the test waiting for it fails
        time.sleep(0.01)  # it ignores SIGTERM before it is announced
    _write("grandchild.pid", grandchild.pid)
    print(f"child {os.getpid()} sleeping {seconds} s", flush=True)
    time.sleep(seconds)


def main(argv: list[str]) -> int:
    mode, args = argv[0], argv[1:]
    if mode == "record":
        _write(
            "record.json",
            {
                "argv": argv,
                "executable": sys.executable,
                "cwd": os.getcwd(),
                "env": dict(os.environ),
            },
        )
        _write("summary.json", {"ok": 1})
        return 0
    if mode == "fail":
        for i in range(1, 9):
            print(f"line {i}", flush=True)
        return 3
    if mode == "sleep":
        _sleep(float(args[0]) if args else 30.0, *args[1:2])
        _write("summary.json", {"slept": 1})
        return 0
    if mode == "count":
        runs = [p for p in Path.cwd().parent.iterdir() if p.is_dir()]
        _write("summary.json", {"cost": len(runs), "label": "not a metric", "flag": True})
        return 0
    if mode == "once":
        marker = Path(os.environ["JOBS_MARKER"])
        if not marker.exists():
            marker.write_text(os.environ["RUNYARD_RUN_ID"], encoding="utf-8")
            _sleep(30.0)
            return 0
        _write("summary.json", {"attempt": 2})
        return 0
    print(f"unknown mode {mode!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
