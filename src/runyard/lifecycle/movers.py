"""Running the per-run steps of a batch: in order on one filesystem, a few at a time
where the time goes into copying and hashing.

A rename costs two directory fsyncs and little CPU, so moves on one filesystem run one
after another. A move across filesystems copies, hashes and deletes, all of which
release the GIL (``hashlib`` on buffers over 2 KiB, ``sendfile``, ``unlink``), so a
few threads keep every core busy. Each thread works on its own run; the journal
serialises what they share. Whatever the order, every run is always whole in one of
its two places, so ``recover`` settles any mix of interrupted moves.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from runyard.lifecycle import fsops

T = TypeVar("T")
R = TypeVar("R")

THREADS = min(4, os.cpu_count() or 1)
"""Threads for copying and hashing; the crash tests pin 1 to count steps exactly."""


def move_threads(runs_root: Path, archive_root: Path) -> int:
    """1 when both roots share a filesystem (renames), else ``THREADS``."""
    return 1 if fsops.same_filesystem(runs_root, archive_root) else THREADS


def ordered_map(work: Callable[[T], R], items: Iterable[T], threads: int) -> Iterator[R]:
    """``work`` over ``items`` with up to ``threads`` at a time, results in input order.

    Stops at the first exception (which it raises): work not yet started is cancelled,
    work under way finishes first, so no step is abandoned half-way by this function.
    """
    if threads <= 1:
        yield from map(work, items)
        return
    pool = ThreadPoolExecutor(threads, thread_name_prefix="runyard-move")
    try:
        futures = [pool.submit(work, item) for item in items]
        for future in futures:
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def source_remover(threads: int) -> Iterator[fsops.Remover | None]:
    """Where copied originals are deleted: ``None`` (each move deletes its own) with one
    thread; else a thread that deletes them while the next runs are copied (deleting is
    mostly waiting on the disk). Leaving the block waits for every deletion, and raises
    the first that failed: its tombstone stays, and ``recover`` removes it."""
    if threads <= 1:
        yield None
        return
    pending: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
    failures: list[BaseException] = []

    def work() -> None:
        while (tomb := pending.get()) is not None:
            try:
                fsops.remove_tombstone(tomb)
            except BaseException as exc:  # reported by the caller, on its thread
                failures.append(exc)

    worker = threading.Thread(target=work, name="runyard-remove", daemon=True)
    worker.start()
    try:
        yield pending.put
    finally:
        pending.put(None)
        worker.join()
    if failures:
        raise failures[0]
