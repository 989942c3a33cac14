"""Test-only crash switch: kill this process at the N-th step boundary.

Lifecycle code calls ``crashpoint("label")`` between every two steps that must be
recoverable (before and after each rename, after each copied file, after each report
write). When ``RUNYARD_TEST_CRASH_AT=N`` is set, the N-th call sends SIGKILL to the
process itself: no cleanup, no ``finally``, exactly like a power cut for the
process. ``RUNYARD_TEST_CRASH_LOG=FILE`` appends each label reached, so a test can
count the points a run passes through. Unset (always, outside tests) it costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import threading

_counter = 0
_lock = threading.Lock()  # moves run in several threads (``movers``): count each point once


def crashpoint(label: str) -> None:
    global _counter
    target = os.environ.get("RUNYARD_TEST_CRASH_AT")
    log = os.environ.get("RUNYARD_TEST_CRASH_LOG")
    if target is None and log is None:
        return
    with _lock:
        _counter += 1
        if log:
            with open(log, "a", encoding="utf-8") as out:
                out.write(f"{_counter} {label}\n")
        if target is not None and _counter == int(target):
            os.kill(os.getpid(), signal.SIGKILL)
