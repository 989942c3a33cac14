"""Running the per-run steps of a batch: in order on one filesystem, a few at a time
where the time goes into copying and hashing.

A rename costs two directory fsyncs and little CPU, so moves on one filesystem run one
after another. A move across filesystems spends most of its time in calls that release
the GIL (``sendfile``, ``readv``, ``hashlib`` on buffers over 2 KiB, ``memcmp``
through ctypes, ``unlink``), so a few threads share the cores. Not perfectly: between
those calls each thread needs the GIL for its bookkeeping, and every system call hands
the GIL over, so two movers did about 1.5 times the work of one on the 2-vCPU VM this
was measured on. Each thread works on its own run; the journal serialises what they
share. Whatever the order, every run is always whole in one of its two places, so
``recover`` settles any mix of interrupted moves.
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


STORE_UPLOADS = 4
"""Runs uploaded to an object store at once: each waits on the network most of the
time, and each holds one multipart part (16 MiB) in memory, so four keep the link busy
and the memory of a batch of large runs under ~100 MB."""

STORE_DOWNLOADS = 4
"""Runs restored from an object store at once: each waits on the network and on the
fsyncs of what it unpacked, and holds only a read buffer. On 2 CPUs 4 did best
(300 × 1 MiB: 2 threads 129 runs/s, 4: 140, 8: 127, 16: 124)."""


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


REMOVERS = 4
"""Threads deleting copied originals once the copying is done (one while it goes on).

Deleting is mostly waiting on the disk: on a filesystem that discards freed blocks as
it frees them (ext4 mounted with ``discard`` and no journal, as on the VM this was
measured on) each unlink waits for its discard, and four at a time took a quarter of
the time of one at a time there. While runs are still being copied one remover is
enough, and more cost more than they save: each competes with the movers for the GIL
at every system call (a 1,000-run archive took 3.8 s with four, 3.4 s with one)."""

REMOVE_BATCH = 16
"""Tombstones one remover takes at most at once: their folder is fsynced twice for all
of them, rather than twice for each, while the other removers still have work."""


@contextmanager
def source_remover(threads: int) -> Iterator[fsops.Remover | None]:
    """Where copied originals are deleted: ``None`` (each move deletes its own) with one
    thread; else a thread that deletes them while the next runs are copied, up to
    ``REMOVE_BATCH`` at once (``fsops.remove_tombstones``), joined by ``REMOVERS - 1``
    more for what is left when the block ends. Leaving the block waits for every
    deletion, and raises the first that failed: its tombstone stays, and ``recover``
    removes it."""
    if threads <= 1:
        yield None
        return
    pending: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
    failures: list[BaseException] = []

    def work() -> None:
        while True:
            batch = [pending.get()]
            while len(batch) < REMOVE_BATCH and batch[-1] is not None:
                try:
                    batch.append(pending.get_nowait())
                except queue.Empty:
                    break
            tombs = [tomb for tomb in batch if tomb is not None]
            if tombs:
                try:
                    fsops.remove_tombstones(tombs)
                except BaseException as exc:  # reported by the caller, on its thread
                    failures.append(exc)
            if batch[-1] is None:  # one end mark for each remover, after every tombstone
                return

    def start(i: int) -> threading.Thread:
        worker = threading.Thread(target=work, name=f"runyard-remove-{i}", daemon=True)
        worker.start()
        return worker

    workers = [start(0)]
    try:
        yield pending.put
    finally:
        workers += [start(i) for i in range(1, REMOVERS) if not pending.empty()]
        for _ in workers:
            pending.put(None)
        for worker in workers:
            worker.join()
    if failures:
        raise failures[0]
