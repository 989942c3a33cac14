"""The execution log: every executed archive, restore, recover, retention and purge.

Kept twice, for two readers: a table (``runyard log``, the web UI) and a Markdown
file, ``<logs_dir>/EXECUTION_LOG.md``, that people read and diff (the seed's
``OPS_CLEANUP_EXECUTION_LOG.md``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from runyard.registry import lifecycle as registry
from runyard.registry.common import to_utc_naive
from runyard.registry.lifecycle import Execution

if TYPE_CHECKING:
    from runyard.yard import Yard

LOG_NAME = "EXECUTION_LOG.md"
_HEADER = (
    "# runyard execution log\n\n"
    "| finished (UTC) | kind | status | batch | moved | skipped | failed | bytes | reason "
    "| report |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
)


def _cell(value: object) -> str:
    return str(value if value is not None else "").replace("|", "\\|").replace("\n", " ")


def log_execution(
    yard: Yard,
    kind: str,
    status: str,
    command: Sequence[str],
    started_at: datetime,
    batch_id: str | None = None,
    reason: str | None = None,
    moved: int = 0,
    skipped: int = 0,
    failed: int = 0,
    size: int = 0,
    report_path: str | None = None,
) -> Execution:
    """Record one execution in the table and append it to the Markdown log."""
    with yard.write() as conn:
        execution = registry.record_execution(
            conn,
            kind,
            status,
            command,
            to_utc_naive(started_at),
            batch_id=batch_id,
            reason=reason,
            moved=moved,
            skipped=skipped,
            failed=failed,
            size=size,
            report_path=report_path,
        )
    path = yard.settings.logs_dir / LOG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    finished = execution.finished_at.strftime("%Y-%m-%d %H:%M:%S") if execution.finished_at else ""
    line = (
        "| "
        + " | ".join(
            _cell(v)
            for v in (
                finished,
                kind,
                status,
                batch_id,
                moved,
                skipped,
                failed,
                size,
                reason,
                report_path,
            )
        )
        + " |\n"
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        if os.fstat(fd).st_size == 0:
            os.write(fd, _HEADER.encode())
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return execution
