"""Saved views of the runs list: ``runyard view save NAME --where … --order-by …
--columns …``, the UI's "save this view", listed in both. Saving checks the query the
way running it does, so a saved view always opens."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, select

from runyard.config import KPI_NAME_MAX
from runyard.db.tables import saved_views
from runyard.errors import Invalid, NotFound
from runyard.ids import validate_label
from runyard.models import SavedView
from runyard.query import parse_query
from runyard.registry.common import as_aware, utcnow
from runyard.registry.run_query import check_names

MAX_VIEWS = 1000
MAX_COLUMNS = 24


def _to_model(row: Any) -> SavedView:
    return SavedView(
        name=row.name,
        where=row.where_text,
        order_by=json.loads(row.order_by),
        columns=json.loads(row.columns),
        created_at=as_aware(row.created_at),
        updated_at=as_aware(row.updated_at),
    )


def clean_columns(columns: Sequence[str]) -> list[str]:
    """KPI names for columns: split on commas, stripped, each once, in order."""
    out: list[str] = []
    for item in columns:
        for name in item.split(","):
            name = name.strip()
            if not name:
                continue
            if len(name) > KPI_NAME_MAX or not name.isprintable():
                raise Invalid(f"invalid KPI column {name[:80]!r}")
            if name not in out:
                out.append(name)
    if len(out) > MAX_COLUMNS:
        raise Invalid(f"at most {MAX_COLUMNS} KPI columns (got {len(out)})")
    return out


def save_view(
    conn: Connection,
    name: str,
    where: str | None,
    order_by: Sequence[str],
    columns: Sequence[str],
    known_kpis: Sequence[str] = (),
) -> SavedView:
    """Create or replace the view ``name``; a bad query or an unknown field is refused
    (``QueryError``) and nothing is saved."""
    validate_label(name, "view name")
    query = parse_query(where, list(order_by))
    check_names(conn, query, known_kpis)
    kept_order = [k.text for k in query.order_by]
    kept_columns = clean_columns(columns)
    now = utcnow()
    existing = conn.execute(select(saved_views.c.name).where(saved_views.c.name == name)).first()
    values = {
        "where_text": (where or "").strip(),
        "order_by": json.dumps(kept_order),
        "columns": json.dumps(kept_columns),
        "updated_at": now,
    }
    if existing is None:
        count = len(conn.execute(select(saved_views.c.name).limit(MAX_VIEWS + 1)).all())
        if count >= MAX_VIEWS:
            raise Invalid(f"a yard keeps at most {MAX_VIEWS} views; delete one first")
        conn.execute(saved_views.insert().values(name=name, created_at=now, **values))
    else:
        conn.execute(saved_views.update().where(saved_views.c.name == name).values(**values))
    return get_view(conn, name)


def get_view(conn: Connection, name: str) -> SavedView:
    row = conn.execute(select(saved_views).where(saved_views.c.name == name)).first()
    if row is None:
        raise NotFound(f"no saved view {name!r}", hint="`runyard view list` shows them")
    return _to_model(row)


def list_views(conn: Connection) -> list[SavedView]:
    rows = conn.execute(select(saved_views).order_by(saved_views.c.name).limit(MAX_VIEWS))
    return [_to_model(r) for r in rows]


def delete_view(conn: Connection, name: str) -> None:
    if conn.execute(delete(saved_views).where(saved_views.c.name == name)).rowcount == 0:
        raise NotFound(f"no saved view {name!r}", hint="`runyard view list` shows them")
