"""Keeping a report and the registry current while runs move, without rewriting the
whole report after every run (which would make a batch quadratic in its size)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from runyard.lifecycle.crashpoints import crashpoint
from runyard.lifecycle.report import (
    ArchiveEntry,
    ArchiveReport,
    RestoreEntry,
    RestoreReport,
    write_report,
)
from runyard.models import RunLocation
from runyard.registry import lifecycle as registry

if TYPE_CHECKING:
    from runyard.yard import Yard


class Journal:
    """Keeps the report and the registry current while runs move, in batches.

    The report is rewritten (atomically) and the registry updated at most every
    ``INTERVAL`` seconds or ``EVERY`` moves, and at the end. Between two flushes a
    crash loses only *which* moves completed, and that is exactly what ``recover``
    reads back from the disk: each entry's source or destination exists, and its
    digest was in the report before the first move.
    """

    INTERVAL = 1.0
    EVERY = 1000

    def __init__(
        self,
        yard: Yard,
        report: ArchiveReport | RestoreReport,
        path: Path,
        location: RunLocation,
        batch_id: str | None,
    ) -> None:
        self.yard, self.report, self.path = yard, report, path
        self.location, self.batch_id = location, batch_id
        self.pending: list[str] = []
        self.last = time.monotonic()
        # Held by whoever changes an entry of the report or flushes it: moves may run in
        # several threads (``movers``), and a flush must never write a half-updated entry.
        self.lock = threading.RLock()

    def failed(self, entry: ArchiveEntry | RestoreEntry, message: str) -> None:
        """Mark an entry failed: its run stayed where it was (the next flush says so)."""
        with self.lock:
            entry.status, entry.error = "failed", message

    def moved(self, run_id: str) -> None:
        with self.lock:
            self.pending.append(run_id)
            if len(self.pending) >= self.EVERY or time.monotonic() - self.last >= self.INTERVAL:
                self.flush()

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def _sizes(self) -> dict[str, int]:
        """The bytes each pending run was measured at (an archive report's entries)."""
        pending = set(self.pending)
        return {
            e.run_id: e.bytes
            for e in self.report.entries
            if e.run_id in pending and isinstance(getattr(e, "bytes", None), int)
        }

    def _flush(self) -> None:
        if self.pending:
            with self.yard.write() as conn:
                registry.set_locations(
                    conn,
                    [(r, self.location, self.batch_id) for r in self.pending],
                    self._sizes(),
                )
            self.pending = []
            crashpoint("journal:registry-flushed")
        self.report.updated_at = datetime.now(UTC)
        write_report(self.path, self.report)
        crashpoint("journal:report-flushed")
        self.last = time.monotonic()
