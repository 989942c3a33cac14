"""The execution log: every executed archive, restore, recover, retention and purge.

Kept twice, for two readers: a table (``runyard log``, the web UI) and a Markdown
file, ``<logs_dir>/CLEANUP_LOG.md``, that people read and diff (the seed's
``OPS_CLEANUP_EXECUTION_LOG.md``): when, who, the command, the reason, the counts
and the report's path.
"""

from __future__ import annotations

import getpass
import os
import shlex
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING

from runyard import fsnames
from runyard.registry import lifecycle as registry
from runyard.registry.common import to_utc_naive
from runyard.registry.lifecycle import Execution

if TYPE_CHECKING:
    from runyard.yard import Yard

LOG_NAME = "CLEANUP_LOG.md"
_HEADER = (
    "# runyard execution log\n\n"
    "| finished (UTC) | who | kind | status | batch | moved | skipped | failed | bytes "
    "| reason | command | report |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
)


# Who acts, when it is not this process's user: ``runyard serve`` sets it around a
# lifecycle action of a request ("<token name> via runyard serve"). A context variable,
# set in the route's own thread (FastAPI copies the context into each worker thread, so
# it must be set where the action runs, not in a dependency).
_acting: ContextVar[str | None] = ContextVar("runyard_acting", default=None)


@contextmanager
def acting_as(name: str) -> Iterator[None]:
    """Executions logged inside this block are logged as done by ``name``."""
    reset = _acting.set(name)
    try:
        yield
    finally:
        _acting.reset(reset)


def who() -> str:
    """Who acts, for the log: the name ``acting_as`` set, else user@host of this process."""
    acting = _acting.get()
    if acting is not None:
        return acting
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


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
    skip_reasons: Mapping[str, int] | None = None,
) -> Execution:
    """Record one execution in the table and append it to the Markdown log.

    Text that is not UTF-8 (an argument naming an odd path, an alarm quoting a name)
    is kept in display form (``runyard.fsnames``): no database or Markdown file can
    hold it as it is, and the log must never be what stops a finished batch.
    """
    command = [fsnames.shown(part) for part in command]
    reason = fsnames.shown(reason) if reason is not None else None
    report_path = fsnames.shown(report_path) if report_path is not None else None
    actor = who()
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
            skip_reasons=skip_reasons,
            who=actor,
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
                actor,
                kind,
                status,
                batch_id,
                moved,
                skipped,
                failed,
                size,
                reason,
                "`" + shlex.join(command) + "`" if command else "",
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
