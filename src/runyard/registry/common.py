"""Helpers shared by the registry modules: time, keyset cursors, JSON columns."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, Select, tuple_

from runyard.canonical import check_json_limits, check_text_size
from runyard.errors import Invalid
from runyard.limits import MAX_PAGE_SIZE


def utcnow() -> datetime:
    """Now, as the naive UTC datetime the tables store."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_utc_naive(value: datetime) -> datetime:
    """A datetime as naive UTC (naive input is taken to be UTC already); Invalid when UTC
    would fall outside the years 1 to 9999 (``0001-01-01T00:00+01:00``)."""
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise Invalid(
            f"{value.isoformat()} falls outside the years 1 to 9999 once converted to UTC"
        ) from None


def as_aware(value: datetime | None) -> datetime | None:
    """A stored naive UTC datetime, with its timezone attached for output."""
    return None if value is None else value.replace(tzinfo=UTC)


def encode_cursor(*parts: Any) -> str:
    raw = json.dumps([p.isoformat() if isinstance(p, datetime) else p for p in parts])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kinds: tuple[type, ...]) -> list[Any]:
    """Decode a cursor made by ``encode_cursor``; ``kinds`` says what each part is."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
        if not isinstance(parts, list) or len(parts) != len(kinds):
            raise ValueError("wrong shape")
        out: list[Any] = []
        for part, kind in zip(parts, kinds, strict=True):
            if kind is datetime:
                out.append(datetime.fromisoformat(part))
            elif isinstance(part, kind):
                out.append(part)
            else:
                raise ValueError("wrong type")
        return out
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise Invalid(
            f"invalid cursor {cursor!r}: pass the next_cursor value of a previous page"
        ) from None


def dump_json_object(value: dict[str, Any], what: str) -> str:
    """Serialize a JSON object column (a run's summary or tags) within runyard's JSON
    limits (``canonical.check_json_limits``); refuse NaN/Infinity and non-JSON values."""
    check_json_limits(value, what)
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, sort_keys=True)
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid(f"{what} holds text that is not valid UTF-8 (a lone surrogate)") from None
    except (TypeError, ValueError) as exc:
        raise Invalid(f"{what} is not storable as JSON: {exc}") from None
    check_text_size(text, what)
    return text


def load_json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def newest_first_page(
    conn: Connection,
    query: Select[Any],
    time_column: ColumnElement[Any],
    id_column: ColumnElement[Any],
    limit: int,
    after: str | None,
) -> tuple[list[Row[Any]], str | None]:
    """One keyset page of ``query``, newest first by (time, id): the rows and the cursor
    of the next page (None on the last). Every list of the registry pages this way, so
    any page is one index seek whatever its depth."""
    check_limit(limit)
    if after:
        stamp, last_id = decode_cursor(after, (datetime, str))
        query = query.where(tuple_(time_column, id_column) < tuple_(stamp, last_id))
    query = query.order_by(time_column.desc(), id_column.desc()).limit(limit + 1)
    rows = list(conn.execute(query).all())
    cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]._mapping
        cursor = encode_cursor(last[time_column], last[id_column])
    return rows[:limit], cursor


def check_limit(limit: int) -> int:
    if limit < 1 or limit > MAX_PAGE_SIZE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE_SIZE} (got {limit})")
    return limit
