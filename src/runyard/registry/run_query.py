"""A run query (``runyard.query``) as SQL: the condition, the order, and keyset pages.

Conditions read the query index (``search_index``): a KPI comparison is an indexed range
of ``run_kpis`` by (name, value), a tag one of ``run_tags`` by (key, value), a param or
config one picks plan or config versions from their (small) value tables, and the runs
follow by their indexed columns. Every compiled comparison is true or false, never SQL's
unknown, so ``not`` means "every other run" on both engines (``runyard.query.ast``).

Orders page by keyset: the cursor holds the last row's sort values, and the next page
is the rows after them, so page 100 is one index seek like page 1. Runs without the
value sorted on come last in either direction. When the first key is a KPI, the page is
read in two phases: the runs with that KPI straight off the (name, value) index, then
those without it, newest first; any other order sorts what the condition leaves.

Text compares by code point on both engines (PostgreSQL with the "C" collation) and
``like`` is case-sensitive with ``\\`` as its escape (SQLite's ``case_sensitive_like``
is set on every connection), as ``runyard.query.evaluate`` does in Python.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Connection,
    Float,
    Text,
    and_,
    cast,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    tuple_,
)

from runyard.db.tables import (
    config_values,
    plan_params,
    plan_versions,
    run_kpis,
    run_tags,
    runs,
    scenarios,
)
from runyard.errors import Invalid
from runyard.query.ast import (
    And,
    Compare,
    Condition,
    Field,
    Not,
    Or,
    OrderKey,
    Query,
    fields_of,
)
from runyard.query.evaluate import SCENARIO_ID_PREFIX
from runyard.query.parser import QueryError

_CMP = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


@dataclass(frozen=True)
class _SortColumn:
    expr: Any
    descending: bool
    nullable: bool


class _Compiler:
    def __init__(self, conn: Connection) -> None:
        self.pg = conn.dialect.name == "postgresql"

    # --- values -----------------------------------------------------------------------

    def text(self, expr: Any) -> Any:
        """A text expression that compares and sorts by code point on both engines."""
        return expr.collate("C") if self.pg else expr

    def duration(self) -> Any:
        """Seconds from start to finish, to the millisecond (SQLite's julianday arithmetic
        is a float: without rounding, equal durations would differ in the last bits)."""
        if self.pg:
            seconds = func.extract("epoch", runs.c.finished_at - runs.c.started_at)
            return cast(func.round(seconds, 3), Float)
        days = func.julianday(runs.c.finished_at) - func.julianday(runs.c.started_at)
        return func.round(days * 86400.0, 3)

    def _apply(self, expr: Any, op: str, value: Any, is_text: bool) -> ColumnElement[bool]:
        if is_text:
            expr = self.text(expr)
        found: ColumnElement[bool]
        if op in ("like", "not like"):
            found = expr.like(value, escape="\\")
            return found if op == "like" else not_(found)
        found = _CMP[op](expr, value)
        return found

    # --- conditions -------------------------------------------------------------------

    def condition(self, cond: Condition) -> ColumnElement[bool]:
        if isinstance(cond, Compare):
            return self.compare(cond)
        if isinstance(cond, And):
            return and_(*(self.condition(c) for c in cond.items))
        if isinstance(cond, Or):
            return or_(*(self.condition(c) for c in cond.items))
        if isinstance(cond, Not):
            return not_(self.condition(cond.item))
        raise TypeError(cond)

    def compare(self, c: Compare) -> ColumnElement[bool]:
        f = c.field
        if f.kind == "kpi":
            return self._indexed_runs(c, run_kpis, run_kpis.c.name, run_kpis.c.value, False)
        if f.kind == "tag":
            return self._indexed_runs(c, run_tags, run_tags.c.key, run_tags.c.value, True)
        if f.kind == "param":
            return self._leaves(
                c,
                plan_params,
                plan_params.c.plan_version_id,
                runs.c.plan_version_id,
                plan_params.c.name,
            )
        if f.kind == "config":
            return self._leaves(
                c,
                config_values,
                config_values.c.config_version_id,
                runs.c.config_version_id,
                config_values.c.path,
            )
        return self._attribute(c)

    def _indexed_runs(
        self, c: Compare, table: Any, name_col: Any, value_col: Any, is_text: bool
    ) -> ColumnElement[bool]:
        """A KPI or tag condition: does the run have a matching index row? One seek of the
        (run_id, name) key per run, so a page costs what its runs cost to find."""
        name = c.field.name

        def has(*where: Any) -> ColumnElement[bool]:
            return exists().where(table.c.run_id == runs.c.run_id, name_col == name, *where)

        if c.op == "is null":
            return not_(has())
        if c.op == "is not null":
            return has()
        if c.op in ("in", "not in"):
            values = list(c.values)
            if c.op == "in":
                return has(value_col.in_(values))
            return has(not_(value_col.in_(values)))
        value = c.values[0]
        return has(self._apply(value_col, c.op, value, is_text))

    def _leaves(
        self, c: Compare, table: Any, owner: Any, run_col: Any, name_col: Any
    ) -> ColumnElement[bool]:
        """A param or config condition: the runs of the versions whose leaves match."""
        name = c.field.name

        def versions(*where: Any) -> ColumnElement[bool]:
            picked = select(owner).where(name_col == name, *where)
            return and_(run_col.is_not(None), run_col.in_(picked))

        present = versions()
        if c.op == "is null":
            return not_(present)
        if c.op == "is not null":
            return present
        if c.op in ("in", "not in"):
            numbers = [v for v in c.values if isinstance(v, float)]
            texts = [v for v in c.values if isinstance(v, str)]
            parts = []
            if numbers:
                parts.append(table.c.num.in_(numbers))
            if texts:
                parts.append(table.c.text.in_(texts))
            hit = versions(or_(*parts))
            return hit if c.op == "in" else and_(present, not_(hit))
        value = c.values[0]
        if isinstance(value, float):
            return versions(self._apply(table.c.num, c.op, value, False))
        return versions(table.c.text.is_not(None), self._apply(table.c.text, c.op, value, True))

    def _attribute(self, c: Compare) -> ColumnElement[bool]:
        name = c.field.name
        if name == "plan_label":
            return self._through(
                c, plan_versions.c.plan_version_id, plan_versions.c.label, runs.c.plan_version_id
            )
        if name == "scenario":
            by_id = [v for v in c.values if str(v).startswith(SCENARIO_ID_PREFIX)]
            if c.op in ("is null", "is not null"):
                has = runs.c.scenario_id.is_not(None)
                return has if c.op == "is not null" else not_(has)
            if c.op in ("in", "not in"):
                names = [v for v in c.values if v not in by_id]
                parts = []
                if by_id:
                    parts.append(runs.c.scenario_id.in_(by_id))
                if names:
                    picked = select(scenarios.c.scenario_id).where(scenarios.c.name.in_(names))
                    parts.append(runs.c.scenario_id.in_(picked))
                hit = and_(runs.c.scenario_id.is_not(None), or_(*parts))
                if c.op == "in":
                    return hit
                return and_(runs.c.scenario_id.is_not(None), not_(hit))
            if by_id:
                return and_(
                    runs.c.scenario_id.is_not(None),
                    self._apply(runs.c.scenario_id, c.op, c.values[0], True),
                )
            return self._through(c, scenarios.c.scenario_id, scenarios.c.name, runs.c.scenario_id)
        column, is_text = self._attribute_column(name)
        present: ColumnElement[bool] = column.is_not(None) if name in _NULLABLE else true()
        if c.op == "is null":
            return not_(present) if name in _NULLABLE else false()
        if c.op == "is not null":
            return present
        if c.op in ("in", "not in"):
            hit = column.in_(list(c.values))
            return and_(present, hit if c.op == "in" else not_(hit))
        return and_(present, self._apply(column, c.op, c.values[0], is_text))

    def _through(self, c: Compare, key: Any, value: Any, run_col: Any) -> ColumnElement[bool]:
        """A condition on a value of the run's plan or scenario (its label, its name)."""
        if c.op in ("is null", "is not null"):
            has = and_(run_col.is_not(None), run_col.in_(select(key).where(value.is_not(None))))
            return has if c.op == "is not null" else not_(has)
        if c.op in ("in", "not in"):
            hit = run_col.in_(select(key).where(value.in_(list(c.values))))
            has = run_col.in_(select(key).where(value.is_not(None)))
            if c.op == "in":
                return and_(run_col.is_not(None), hit)
            return and_(run_col.is_not(None), has, not_(hit))
        inner = self._apply(value, c.op, c.values[0], True)
        return and_(
            run_col.is_not(None),
            run_col.in_(select(key).where(value.is_not(None), inner)),
        )

    def _attribute_column(self, name: str) -> tuple[Any, bool]:
        if name == "duration":
            return self.duration(), False
        column = {
            "status": runs.c.status,
            "group": runs.c.group_name,
            "location": runs.c.location,
            "legacy": runs.c.legacy,
            "pinned": runs.c.pinned,
            "plan": runs.c.plan_version_id,
            "config": runs.c.config_version_id,
            "run_id": runs.c.run_id,
            "started_at": runs.c.started_at,
            "finished_at": runs.c.finished_at,
        }[name]
        return column, name in _TEXT_ATTRIBUTES

    # --- order --------------------------------------------------------------------------

    def sort_columns(self, key: OrderKey) -> list[_SortColumn]:
        f, desc = key.field, key.descending
        if f.kind == "kpi":
            value = (
                select(run_kpis.c.value)
                .where(run_kpis.c.run_id == runs.c.run_id, run_kpis.c.name == f.name)
                .scalar_subquery()
            )
            return [_SortColumn(value, desc, True)]
        if f.kind == "tag":
            value = (
                select(run_tags.c.value)
                .where(run_tags.c.run_id == runs.c.run_id, run_tags.c.key == f.name)
                .scalar_subquery()
            )
            return [_SortColumn(self.text(value), desc, True)]
        if f.kind in ("param", "config"):
            table, owner, run_col, name_col = (
                (
                    plan_params,
                    plan_params.c.plan_version_id,
                    runs.c.plan_version_id,
                    plan_params.c.name,
                )
                if f.kind == "param"
                else (
                    config_values,
                    config_values.c.config_version_id,
                    runs.c.config_version_id,
                    config_values.c.path,
                )
            )
            num = select(table.c.num).where(owner == run_col, name_col == f.name).scalar_subquery()
            text = (
                select(table.c.text).where(owner == run_col, name_col == f.name).scalar_subquery()
            )
            return [_SortColumn(num, desc, True), _SortColumn(self.text(text), desc, True)]
        if f.name == "plan_label":
            label = (
                select(plan_versions.c.label)
                .where(plan_versions.c.plan_version_id == runs.c.plan_version_id)
                .scalar_subquery()
            )
            return [_SortColumn(self.text(label), desc, True)]
        if f.name == "scenario":
            name = (
                select(scenarios.c.name)
                .where(scenarios.c.scenario_id == runs.c.scenario_id)
                .scalar_subquery()
            )
            return [_SortColumn(self.text(name), desc, True)]
        column, is_text = self._attribute_column(f.name)
        return [_SortColumn(self.text(column) if is_text else column, desc, f.name in _NULLABLE)]


_NULLABLE = frozenset({"group", "plan", "config", "finished_at", "duration"})
_TEXT_ATTRIBUTES = frozenset({"status", "group", "location", "plan", "config", "run_id"})


# --- cursors ------------------------------------------------------------------------------


def _fingerprint(keys: Sequence[OrderKey]) -> str:
    text = "|".join(k.text for k in keys) or "newest"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _encode(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return ["b", value]
    if isinstance(value, datetime):
        return ["d", value.isoformat()]
    if isinstance(value, int | float):
        return ["n", float(value)]
    return ["s", str(value)]


def _decode(part: Any) -> Any:
    if part is None:
        return None
    kind, value = part
    if kind == "b" and isinstance(value, bool):
        return value
    if kind == "d" and isinstance(value, str):
        return datetime.fromisoformat(value)
    if kind == "n" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind == "s" and isinstance(value, str):
        return value
    raise ValueError("bad part")


def encode_cursor(keys: Sequence[OrderKey], phase: str, values: Sequence[Any]) -> str:
    raw = json.dumps([_fingerprint(keys), phase, [_encode(v) for v in values]])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(
    cursor: str, keys: Sequence[OrderKey], width: dict[str, int]
) -> tuple[str, list[Any]]:
    def invalid() -> Invalid:
        return Invalid(
            f"invalid cursor {cursor[:80]!r}: pass the next_cursor value of a previous page"
        )

    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        fingerprint, phase, parts = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise invalid() from None
    if fingerprint != _fingerprint(keys):
        raise Invalid(
            "this cursor belongs to a list in another order; start again without it",
            hint="a cursor only continues the order it came from",
        )
    try:
        if not isinstance(parts, list) or phase not in width or len(parts) != width[phase]:
            raise ValueError("wrong shape")
        values = [_decode(p) for p in parts]
    except (ValueError, TypeError):
        raise invalid() from None
    return phase, values


def _after(columns: Sequence[_SortColumn], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows after ``values`` in the order of ``columns`` (each nullable one puts its
    missing values last)."""
    alternatives: list[ColumnElement[bool]] = []
    equal: list[ColumnElement[bool]] = []
    for col, raw in zip(columns, values, strict=True):
        # True and False as bound values: SQLAlchemy takes Python's own for "IS".
        value = literal(raw, Boolean) if isinstance(raw, bool) else raw
        if raw is None:
            later: ColumnElement[bool] = false()
            same = col.expr.is_(None)
        else:
            later = col.expr < value if col.descending else col.expr > value
            if col.nullable:
                later = or_(later, col.expr.is_(None))
            same = col.expr == value
        alternatives.append(and_(*equal, later))
        equal.append(same)
    return or_(*alternatives)


def _order_clauses(columns: Sequence[_SortColumn]) -> list[Any]:
    out: list[Any] = []
    for col in columns:
        if col.nullable:
            out.append(col.expr.is_(None))
        out.append(col.expr.desc() if col.descending else col.expr.asc())
    return out


# --- the page -----------------------------------------------------------------------------


def query_page(
    conn: Connection,
    query: Query,
    extra: Sequence[ColumnElement[bool]],
    limit: int,
    after: str | None,
    plan_version_id: str | None = None,
) -> tuple[list[Any], str | None]:
    """One page of runs matching ``query`` and the ``extra`` conditions, in the query's
    order: the rows (``runs`` columns) and the cursor of the next page (None at the end).
    ``plan_version_id`` is a plan ``extra`` already requires, for the index to know it."""
    compiler = _Compiler(conn)
    conditions = list(extra)
    if query.where is not None:
        conditions.append(compiler.condition(query.where))
    keys = query.order_by
    tie = [
        _SortColumn(runs.c.started_at, True, False),
        _SortColumn(runs.c.run_id, True, False),
    ]
    if not keys:
        return _newest_first(conn, conditions, keys, limit, after)
    first = keys[0]
    rest = [c for k in keys[1:] for c in compiler.sort_columns(k)]
    if first.field.kind == "kpi":
        plans = _plans_required(query.where, plan_version_id)
        return _kpi_first(conn, conditions, keys, rest, tie, limit, after, plans)
    columns = [*compiler.sort_columns(first), *rest, *tie]
    values = None
    if after:
        _, values = decode_cursor(after, keys, {"all": len(columns)})
    rows = _read(conn, conditions, columns, values, limit + 1)
    return _finish(rows, keys, "all", len(columns), limit)


def _read(
    conn: Connection,
    conditions: Sequence[ColumnElement[bool]],
    columns: Sequence[_SortColumn],
    values: Sequence[Any] | None,
    count: int,
    source: Any = None,
    seek: ColumnElement[bool] | None = None,
) -> list[Any]:
    labelled = [c.expr.label(f"_k{i}") for i, c in enumerate(columns)]
    stmt = select(runs, *labelled)
    if source is not None:
        stmt = stmt.select_from(source)
    where = list(conditions)
    if values is not None:
        where.append(_after(columns, values))
        if seek is not None:
            where.append(seek)
    stmt = stmt.where(and_(true(), *where)).order_by(*_order_clauses(columns)).limit(count)
    return list(conn.execute(stmt).all())


def _finish(
    rows: list[Any], keys: Sequence[OrderKey], phase: str, width: int, limit: int
) -> tuple[list[Any], str | None]:
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]._mapping
    values = [last[f"_k{i}"] for i in range(width)]
    return rows[:limit], encode_cursor(keys, phase, values)


def _newest_first(
    conn: Connection,
    conditions: Sequence[ColumnElement[bool]],
    keys: Sequence[OrderKey],
    limit: int,
    after: str | None,
) -> tuple[list[Any], str | None]:
    where = list(conditions)
    if after:
        _, (stamp, last_id) = decode_cursor(after, keys, {"all": 2})
        where.append(tuple_(runs.c.started_at, runs.c.run_id) < tuple_(stamp, last_id))
    stmt = (
        select(runs, runs.c.started_at.label("_k0"), runs.c.run_id.label("_k1"))
        .where(and_(true(), *where))
        .order_by(runs.c.started_at.desc(), runs.c.run_id.desc())
        .limit(limit + 1)
    )
    rows = list(conn.execute(stmt).all())
    return _finish(rows, keys, "all", 2, limit)


def _plans_required(where: Condition | None, plan_version_id: str | None) -> list[str] | None:
    """The plans a run must belong to for ``where`` to hold (a top-level ``plan = X`` or
    ``plan in (…)``), or None when any plan may do."""
    if plan_version_id is not None:
        return [plan_version_id]
    items = where.items if isinstance(where, And) else (where,) if where is not None else ()
    for item in items:
        plan = isinstance(item, Compare) and item.field == Field("attr", "plan")
        if plan and isinstance(item, Compare) and item.op in ("=", "in"):
            return [str(v) for v in item.values]
    return None


def _kpi_first(
    conn: Connection,
    conditions: Sequence[ColumnElement[bool]],
    keys: Sequence[OrderKey],
    rest: Sequence[_SortColumn],
    tie: Sequence[_SortColumn],
    limit: int,
    after: str | None,
    plans: list[str] | None,
) -> tuple[list[Any], str | None]:
    """Ordered by a KPI: first the runs that have it, straight off the (name, value)
    index (or the (name, plan, value) one when the runs of given plans are asked for),
    then the runs without it."""
    first = keys[0]
    kpi = run_kpis.alias("order_kpi")
    has_columns = [
        _SortColumn(kpi.c.value, first.descending, False),
        *rest,
        _SortColumn(kpi.c.started_at, True, False),
        _SortColumn(kpi.c.run_id, True, False),
    ]
    without_columns = [*rest, *tie]
    width = {"has": len(has_columns), "without": len(without_columns)}
    phase, values = "has", None
    if after:
        phase, values = decode_cursor(after, keys, width)
    rows: list[Any] = []
    if phase == "has":
        seek = None
        if values is not None:
            seek = kpi.c.value <= values[0] if first.descending else kpi.c.value >= values[0]
        in_plans = [] if plans is None else [kpi.c.plan_version_id.in_(plans)]
        rows = _read(
            conn,
            [kpi.c.name == first.field.name, *in_plans, *conditions],
            has_columns,
            values,
            limit + 1,
            source=kpi.join(runs, runs.c.run_id == kpi.c.run_id),
            seek=seek,
        )
        if len(rows) > limit:
            return _finish(rows, keys, "has", width["has"], limit)
        values = None
    missing = ~exists().where(
        run_kpis.c.run_id == runs.c.run_id, run_kpis.c.name == first.field.name
    )
    more = _read(conn, [missing, *conditions], without_columns, values, limit + 1 - len(rows))
    if len(rows) + len(more) <= limit:
        return [*rows, *more], None
    take = limit - len(rows)
    if take == 0:  # the page ends exactly with the last run that has the KPI
        last = rows[-1]._mapping
        cursor = encode_cursor(keys, "has", [last[f"_k{i}"] for i in range(width["has"])])
        return rows, cursor
    last = more[take - 1]._mapping
    cursor = encode_cursor(keys, "without", [last[f"_k{i}"] for i in range(width["without"])])
    return [*rows, *more[:take]], cursor


_NAME_COLUMNS: dict[str, Any] = {
    "kpi": run_kpis.c.name,
    "tag": run_tags.c.key,
    "param": plan_params.c.name,
    "config": config_values.c.path,
}


def known_names(conn: Connection, kind: str, limit: int = 10_000) -> list[str]:
    """The distinct KPI names, tag keys, param names or config paths in the index, in one
    statement: a recursive skip scan (one index seek per name), so a million runs cost
    what ten do."""
    column = _NAME_COLUMNS[kind]
    # Text throughout: PostgreSQL wants both terms of the recursion of one type.
    first = select(cast(func.min(column), Text).label("name"))
    names = first.cte("known_names", recursive=True)
    following = select(cast(func.min(column), Text)).where(column > names.c.name).scalar_subquery()
    names = names.union_all(select(following).where(names.c.name.is_not(None)))
    stmt = select(names.c.name).where(names.c.name.is_not(None)).limit(limit)
    return [row[0] for row in conn.execute(stmt)]


def check_names(conn: Connection, query: Query, also_known: Sequence[str] = ()) -> None:
    """Refuse a KPI, tag, param or config name the yard has never seen, naming the closest
    one it has (a typo would otherwise quietly match nothing). One index seek per name the
    query uses; the known names are listed only to explain a refusal."""
    import difflib

    for f in fields_of(query):
        if f.kind == "attr" or (f.kind == "kpi" and f.name in also_known):
            continue
        column = _NAME_COLUMNS[f.kind]
        if conn.execute(select(column).where(column == f.name).limit(1)).first() is not None:
            continue
        known = sorted(
            set(known_names(conn, f.kind, 1000)) | (set(also_known) if f.kind == "kpi" else set())
        )
        what = {"kpi": "KPI", "tag": "tag", "param": "param", "config": "config path"}[f.kind]
        close = difflib.get_close_matches(f.name, known, n=1, cutoff=0.6)
        guess = f"; did you mean {f.kind}.{close[0]}?" if close else ""
        raise QueryError(
            f"no run has the {what} {f.name!r}{guess}",
            hint=f"the known ones: {', '.join(known[:20]) or 'none yet'}",
        )
