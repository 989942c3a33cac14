"""Bytes this process sent to and fetched from object stores, for ``/metrics``.

Module-level because a process may open several ``ObjectStore`` objects (one per
command, per job) and the metric is the process's total; a lock makes ``add`` safe
from the threads of a server or a worker.
"""

from __future__ import annotations

import threading


class ByteCounter:
    """A monotonically increasing count of bytes, safe to add to from any thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._value = 0

    def add(self, count: int) -> None:
        if count > 0:
            with self._lock:
                self._value += count

    @property
    def value(self) -> int:
        with self._lock:
            return self._value

    def __repr__(self) -> str:
        return f"ByteCounter({self.name!r}, {self.value})"


bytes_sent = ByteCounter("bytes_sent")
"""Bytes of object bodies uploaded (PutObject and UploadPart calls that succeeded)."""

bytes_fetched = ByteCounter("bytes_fetched")
"""Bytes of object bodies downloaded (GetObject bodies as they are read)."""
