"""The query index: what ``--where`` and ``--order-by`` read instead of parsing JSON.

A run's KPIs (every finite number of its summary, nested keys joined with dots, bools
excluded) go to ``run_kpis``; its tags to ``run_tags``; a plan version's params and a
config version's content to ``plan_params`` and ``config_values`` (scalar leaves by dotted
path). Every writer of a summary, tags, params or content calls the function here in the
same transaction, so what a run records is queryable the moment it is committed; the
migration that made these tables and ``rebuild`` fill them the same way.

The Python evaluation of a query (``runyard.query.evaluate``) reads runs through the same
flattening functions, so both agree on what a value is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select

from runyard.config import KPI_NAME_MAX
from runyard.db.tables import config_values, plan_params, run_kpis, run_tags, runs
from runyard.registry.common import load_json_object

RunItem = tuple[str, datetime, str | None, Mapping[str, Any], Mapping[str, str]]
"""What a run's index rows are made from: run_id, started_at, plan, summary, tags."""

TAG_VALUE_KEY = 200  # run_tags.value_key: the indexed prefix of a tag's value
PATH_MAX = 500  # a longer dotted path of params or config is not queryable
_CHUNK = 500


def storable(text: str) -> bool:
    """Whether a name or text can be an index row on both engines: PostgreSQL refuses a
    NUL character and text that is not UTF-8 (a lone surrogate). Such a name or value is
    left out of the index; the query language cannot name it either (it refuses NUL)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None


def kpi_values(summary: Mapping[str, Any]) -> dict[str, float]:
    """A summary's KPIs: each finite number by its dotted name (the first one wins when a
    dotted key and a nested one name the same KPI); names over 200 characters are left
    out."""
    found: dict[str, float] = {}

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping):
                walk(value, f"{name}.")
                continue
            number = _finite(value)
            if number is not None and len(name) <= KPI_NAME_MAX and storable(name):
                found.setdefault(name, number)

    walk(summary, "")
    return found


def leaf_values(content: Mapping[str, Any]) -> dict[str, tuple[float | None, str | None]]:
    """The scalar leaves of params or a config, by dotted path, as (number, text): a number
    or bool (as 1/0) gives a number, a string a text, a list its JSON text; null gives
    neither and is not stored (``is null`` holds for it, as for a missing path)."""
    found: dict[str, tuple[float | None, str | None]] = {}

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, Mapping):
                walk(value, f"{path}.")
                continue
            if len(path) > PATH_MAX or path in found or not storable(path):
                continue
            if isinstance(value, bool):
                found[path] = (1.0 if value else 0.0, None)
            elif isinstance(value, int | float):
                number = _finite(value)
                if number is not None:
                    found[path] = (number, None)
            elif isinstance(value, str):
                if storable(value):
                    found[path] = (None, value)
            elif isinstance(value, list):
                text = json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False)
                if storable(text):
                    found[path] = (None, text)

    walk(content, "")
    return found


def _insert(conn: Connection, table: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    for start in range(0, len(rows), _CHUNK):
        conn.execute(table.insert(), rows[start : start + _CHUNK])


def index_runs(
    conn: Connection,
    items: Iterable[RunItem],
    replace: bool = False,
) -> None:
    """Index runs given as (run_id, started_at, plan_version_id, summary, tags);
    ``replace`` drops what was indexed for them before (a finish, a rebuild)."""
    kpi_rows: list[dict[str, Any]] = []
    tag_rows: list[dict[str, Any]] = []
    run_ids: list[str] = []
    for run_id, started_at, plan_version_id, summary, tags in items:
        run_ids.append(run_id)
        for name, value in kpi_values(summary).items():
            kpi_rows.append(
                {
                    "run_id": run_id,
                    "name": name,
                    "value": value,
                    "started_at": started_at,
                    "plan_version_id": plan_version_id,
                }
            )
        for key, text in tags.items():
            if not (storable(key) and storable(text)):
                continue
            tag_rows.append(
                {
                    "run_id": run_id,
                    "key": key,
                    "value": text,
                    "value_key": text[:TAG_VALUE_KEY],
                    "started_at": started_at,
                }
            )
    if replace:
        for start in range(0, len(run_ids), _CHUNK):
            chunk = run_ids[start : start + _CHUNK]
            conn.execute(delete(run_kpis).where(run_kpis.c.run_id.in_(chunk)))
            conn.execute(delete(run_tags).where(run_tags.c.run_id.in_(chunk)))
    _insert(conn, run_kpis, kpi_rows)
    _insert(conn, run_tags, tag_rows)


def index_plan(conn: Connection, plan_version_id: str, params: Mapping[str, Any]) -> None:
    conn.execute(delete(plan_params).where(plan_params.c.plan_version_id == plan_version_id))
    rows = [
        {"plan_version_id": plan_version_id, "name": path, "num": num, "text": text}
        for path, (num, text) in leaf_values(params).items()
    ]
    _insert(conn, plan_params, rows)


def index_config(conn: Connection, config_version_id: str, content: Mapping[str, Any]) -> None:
    conn.execute(
        delete(config_values).where(config_values.c.config_version_id == config_version_id)
    )
    rows = [
        {"config_version_id": config_version_id, "path": path, "num": num, "text": text}
        for path, (num, text) in leaf_values(content).items()
    ]
    _insert(conn, config_values, rows)


def _run_items(rows: Iterable[Any]) -> Iterator[RunItem]:
    return (
        (
            r.run_id,
            r.started_at,
            r.plan_version_id,
            load_json_object(r.summary),
            load_json_object(r.tags),
        )
        for r in rows
    )


def reindex_all(conn: Connection) -> int:
    """Fill the whole index from the registry's own rows (the migration's backfill);
    returns how many runs were indexed."""
    from runyard.db.tables import config_versions, plan_versions

    conn.execute(delete(run_kpis))
    conn.execute(delete(run_tags))
    conn.execute(delete(plan_params))
    conn.execute(delete(config_values))
    for plan in conn.execute(select(plan_versions.c.plan_version_id, plan_versions.c.params)):
        index_plan(conn, plan.plan_version_id, load_json_object(plan.params))
    for config in conn.execute(
        select(config_versions.c.config_version_id, config_versions.c.content)
    ):
        index_config(conn, config.config_version_id, load_json_object(config.content))
    count = 0
    last: str | None = None
    while True:
        query = select(
            runs.c.run_id,
            runs.c.started_at,
            runs.c.plan_version_id,
            runs.c.summary,
            runs.c.tags,
        )
        if last is not None:
            query = query.where(runs.c.run_id > last)
        rows = conn.execute(query.order_by(runs.c.run_id).limit(5000)).all()
        if not rows:
            return count
        index_runs(conn, _run_items(rows))
        count += len(rows)
        last = rows[-1].run_id


def index_inserted(conn: Connection, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Index rows just inserted into ``runs``, ``plan_versions`` or ``config_versions``
    (as the dicts given to the insert: JSON columns as text), replacing whatever a lost
    registry left of their index."""
    if table == "runs":
        index_runs(
            conn,
            (
                (
                    r["run_id"],
                    r["started_at"],
                    r["plan_version_id"],
                    load_json_object(r["summary"]),
                    load_json_object(r["tags"]),
                )
                for r in rows
            ),
            replace=True,
        )
    elif table == "plan_versions":
        for r in rows:
            index_plan(conn, r["plan_version_id"], load_json_object(r["params"]))
    elif table == "config_versions":
        for r in rows:
            index_config(conn, r["config_version_id"], load_json_object(r["content"]))
