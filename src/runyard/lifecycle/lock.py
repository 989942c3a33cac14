"""The yard lock: one archive, restore, recover, retention or purge at a time.

An advisory ``flock`` on ``<yard>/.runyard.lock``; the kernel drops it when the
holder dies, so a crashed process never leaves the yard locked.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runyard.errors import Refused

LOCK_NAME = ".runyard.lock"


@contextmanager
def yard_lock(yard_path: Path, what: str) -> Iterator[None]:
    """Hold the yard's lock for ``what``; Refused at once when another process holds it."""
    path = yard_path / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Refused(
                f"the yard is busy: {_holder(fd)} holds {path}",
                hint="wait for it to finish, then run this again",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({what})".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # still locked: nobody reads a half-cleared name
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    """Who holds the lock, as the holder wrote it; "another process" when the text is
    gone or names a process that no longer exists (a runyard killed before it could
    clear it, while something else, e.g. ``flock(1)``, holds the lock now)."""
    text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    match = re.fullmatch(r"pid (\d+) \(.*\)", text)
    if match is None or not _alive(int(match.group(1))):
        return "another process"
    return text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
