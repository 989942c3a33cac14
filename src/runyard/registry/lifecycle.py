"""Registry queries of the lifecycle: which runs are active, where runs are, the execution log."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import BigInteger, Connection, bindparam, func, select

from runyard.db.tables import executions, runs
from runyard.ids import new_id
from runyard.models import Page, RunLocation
from runyard.registry.common import as_aware, newest_first_page, utcnow


@dataclass(frozen=True)
class ActiveRun:
    run_id: str
    group: str | None
    status: str
    pinned: bool
    legacy: bool
    started_at: datetime  # aware


def active_runs(conn: Connection) -> list[ActiveRun]:
    """Every active run, with what the guards need (one query)."""
    query = select(
        runs.c.run_id,
        runs.c.group_name,
        runs.c.status,
        runs.c.pinned,
        runs.c.legacy,
        runs.c.started_at,
    ).where(runs.c.location == RunLocation.active.value)
    return [
        ActiveRun(
            r.run_id, r.group_name, r.status, r.pinned, r.legacy, r.started_at.replace(tzinfo=UTC)
        )
        for r in conn.execute(query)
    ]


def locations(conn: Connection, run_ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    """(location, archive_batch_id) of each of ``run_ids`` that the registry knows."""
    out: dict[str, tuple[str, str | None]] = {}
    for start in range(0, len(run_ids), 500):
        chunk = list(run_ids[start : start + 500])
        query = select(runs.c.run_id, runs.c.location, runs.c.archive_batch_id).where(
            runs.c.run_id.in_(chunk)
        )
        for row in conn.execute(query):
            out[row.run_id] = (row.location, row.archive_batch_id)
    return out


def pinned_runs(conn: Connection, run_ids: Sequence[str]) -> set[str]:
    """Which of ``run_ids`` are pinned."""
    out: set[str] = set()
    for start in range(0, len(run_ids), 500):
        chunk = list(run_ids[start : start + 500])
        query = select(runs.c.run_id).where(runs.c.run_id.in_(chunk), runs.c.pinned.is_(True))
        out.update(conn.execute(query).scalars())
    return out


_SET_LOCATION = (
    runs.update()
    .where(runs.c.run_id == bindparam("b_run_id"))
    .values(
        location=bindparam("b_location"),
        archive_batch_id=bindparam("b_batch"),
        size_bytes=func.coalesce(bindparam("b_size", type_=BigInteger), runs.c.size_bytes),
    )
)


def set_locations(
    conn: Connection,
    changes: Iterable[tuple[str, RunLocation, str | None]],
    sizes: Mapping[str, int] | None = None,
) -> None:
    """Set (run_id, location, archive batch) in one executemany; ``sizes`` records the
    bytes of the runs that were measured on the way (a move scans each tree)."""
    sizes = sizes or {}
    params = [
        {
            "b_run_id": run_id,
            "b_location": location.value,
            "b_batch": batch,
            "b_size": sizes.get(run_id),
        }
        for run_id, location, batch in changes
    ]
    if params:
        conn.execute(_SET_LOCATION, params)


class Execution(BaseModel):
    execution_id: str
    kind: str
    batch_id: str | None
    status: str
    reason: str | None
    command: list[str]
    started_at: datetime
    finished_at: datetime | None
    moved: int
    skipped: int
    failed: int
    bytes: int
    report_path: str | None
    who: str | None = Field(default=None, description="user@host that ran it")
    skip_reasons: dict[str, int] = Field(
        default_factory=dict, description="runs each guard kept (archive, retention)"
    )


def _to_execution(row: Any) -> Execution:
    return Execution(
        execution_id=row.execution_id,
        kind=row.kind,
        batch_id=row.batch_id,
        status=row.status,
        reason=row.reason,
        command=json.loads(row.command),
        started_at=as_aware(row.started_at),
        finished_at=as_aware(row.finished_at),
        moved=row.moved,
        skipped=row.skipped,
        failed=row.failed,
        bytes=row.bytes,
        report_path=row.report_path,
        skip_reasons=json.loads(row.skip_reasons) if row.skip_reasons else {},
        who=row.who,
    )


def record_execution(
    conn: Connection,
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
    who: str | None = None,
) -> Execution:
    """Append one executed archive/restore/recover/retention/purge to the log table."""
    execution_id = new_id("ex")
    conn.execute(
        executions.insert().values(
            execution_id=execution_id,
            kind=kind,
            batch_id=batch_id,
            status=status,
            reason=reason,
            command=json.dumps(list(command)),
            started_at=started_at,
            finished_at=utcnow(),
            moved=moved,
            skipped=skipped,
            failed=failed,
            bytes=size,
            report_path=report_path,
            skip_reasons=json.dumps(dict(skip_reasons), sort_keys=True) if skip_reasons else None,
            who=who[:200] if who else None,
        )
    )
    row = conn.execute(select(executions).where(executions.c.execution_id == execution_id)).one()
    return _to_execution(row)


def skipped_by_reason(conn: Connection) -> dict[str, int]:
    """Runs kept by each guard, summed over every executed archive and retention pass."""
    totals: dict[str, int] = {}
    query = select(executions.c.skip_reasons).where(executions.c.skip_reasons.is_not(None))
    for (text,) in conn.execute(query):
        for reason, count in json.loads(text).items():
            totals[reason] = totals.get(reason, 0) + int(count)
    return totals


def list_executions(conn: Connection, limit: int = 50, after: str | None = None) -> Page[Execution]:
    rows, cursor = newest_first_page(
        conn,
        select(executions),
        executions.c.started_at,
        executions.c.execution_id,
        limit,
        after,
    )
    return Page[Execution](items=[_to_execution(r) for r in rows], next_cursor=cursor)
