"""The yard lock: one archive, restore, recover, retention or purge at a time.

An advisory ``flock`` on ``<yard>/.runyard.lock``; the kernel drops it when the
holder dies, so a crashed process never leaves the yard locked.
"""

from __future__ import annotations

import fcntl
import os
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
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise Refused(
                f"the yard is busy: {holder} holds {path}",
                hint="wait for it to finish, then run this again",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({what})".encode(), 0)
        yield
    finally:
        os.close(fd)
