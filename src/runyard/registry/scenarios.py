"""Scenarios: named base inputs; a locked scenario takes no new plans or runs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from runyard import canonical
from runyard.db.tables import scenario_data, scenarios
from runyard.errors import Conflict, Invalid, Locked, NotFound
from runyard.ids import new_id, validate_label, validate_text
from runyard.models import Page, Scenario
from runyard.registry.common import (
    as_aware,
    check_limit,
    decode_cursor,
    encode_cursor,
    to_utc_naive,
    utcnow,
)

if TYPE_CHECKING:
    from runyard.yard import Yard

SCENARIO_ID_PREFIX = "sc"


def _to_model(row: Any) -> Scenario:
    return Scenario(
        scenario_id=row.scenario_id,
        name=row.name,
        description=row.description,
        locked=row.locked,
        locked_reason=row.locked_reason,
        locked_at=as_aware(row.locked_at),
        created_at=as_aware(row.created_at),
        data_digest=row.data_digest,
    )


def store_data(conn: Connection, data_text: str, source: str = "scenario data") -> str:
    """Store JSON ``data_text`` canonically, once per content; its digest."""
    text = canonical.canonicalize(data_text, source)
    digest = canonical.content_digest(text)
    known = select(scenario_data.c.digest).where(scenario_data.c.digest == digest)
    if conn.execute(known).first() is None:
        conn.execute(
            scenario_data.insert().values(
                digest=digest, content=text, bytes=len(text.encode()), created_at=utcnow()
            )
        )
    return digest


def data_content(conn: Connection, digest: str) -> str:
    """The canonical JSON text of a stored snapshot."""
    text = conn.execute(
        select(scenario_data.c.content).where(scenario_data.c.digest == digest)
    ).scalar()
    if text is None:
        raise NotFound(f"no scenario data with digest {digest}")
    return str(text)


def add_scenario(
    conn: Connection, name: str, description: str = "", data_text: str | None = None
) -> Scenario:
    """Create a scenario; names are unique. ``data_text`` (JSON) is its base data,
    stored as a content-addressed snapshot."""
    validate_label(name, "scenario name")
    validate_text(description, "scenario description")
    if name.startswith(SCENARIO_ID_PREFIX + "-"):
        raise Invalid(f"scenario name {name!r} cannot start with 'sc-' (reserved for ids)")
    if conn.execute(select(scenarios.c.scenario_id).where(scenarios.c.name == name)).first():
        raise Conflict(f"a scenario named {name!r} already exists")
    scenario_id = new_id(SCENARIO_ID_PREFIX)
    values = {
        "scenario_id": scenario_id,
        "name": name,
        "description": description,
        "locked": False,
        "created_at": utcnow(),
        "data_digest": None if data_text is None else store_data(conn, data_text),
    }
    try:
        with conn.begin_nested():
            conn.execute(scenarios.insert().values(**values))
    except IntegrityError:
        raise Conflict(f"a scenario named {name!r} already exists") from None
    return get_scenario(conn, scenario_id)


def find_scenario(conn: Connection, id_or_name: str) -> Scenario | None:
    """The scenario with this id, else with this name, else None."""
    row = conn.execute(select(scenarios).where(scenarios.c.scenario_id == id_or_name)).first()
    if row is None:
        row = conn.execute(select(scenarios).where(scenarios.c.name == id_or_name)).first()
    return None if row is None else _to_model(row)


def get_scenario(conn: Connection, id_or_name: str) -> Scenario:
    """The scenario by id or name; NotFound otherwise."""
    found = find_scenario(conn, id_or_name)
    if found is None:
        raise NotFound(
            f"no scenario with id or name {id_or_name!r}",
            hint="`runyard scenario list` shows them",
        )
    return found


def scenario_names(conn: Connection, scenario_ids: Iterable[str]) -> dict[str, str]:
    """Names of these scenarios in one query (a page of runs shows names, not ids)."""
    wanted = sorted(set(scenario_ids))
    if not wanted:
        return {}
    query = select(scenarios.c.scenario_id, scenarios.c.name).where(
        scenarios.c.scenario_id.in_(wanted)
    )
    return {row.scenario_id: row.name for row in conn.execute(query)}


def list_scenarios(conn: Connection, limit: int = 100, after: str | None = None) -> Page[Scenario]:
    """Scenarios by name, a page at a time."""
    check_limit(limit)
    query = select(scenarios).order_by(scenarios.c.name).limit(limit + 1)
    if after:
        (name,) = decode_cursor(after, (str,))
        query = query.where(scenarios.c.name > name)
    rows = conn.execute(query).all()
    items = [_to_model(r) for r in rows[:limit]]
    cursor = encode_cursor(items[-1].name) if len(rows) > limit else None
    return Page[Scenario](items=items, next_cursor=cursor)


def set_locked(
    conn: Connection, id_or_name: str, locked: bool, reason: str | None = None
) -> Scenario:
    """Lock or unlock a scenario (idempotent); a lock may carry a reason."""
    if reason is not None:
        validate_text(reason, "lock reason", 1000)
    scenario = get_scenario(conn, id_or_name)
    locked_at = None
    if locked:
        # Locking again keeps when it was first locked, and its reason unless a new one is given.
        locked_at = to_utc_naive(scenario.locked_at) if scenario.locked_at else utcnow()
        if reason is None:
            reason = scenario.locked_reason
    conn.execute(
        scenarios.update()
        .where(scenarios.c.scenario_id == scenario.scenario_id)
        .values(
            locked=locked,
            locked_reason=reason if locked else None,
            locked_at=locked_at,
        )
    )
    return get_scenario(conn, scenario.scenario_id)


def set_locked_in_yard(
    yard: Yard, id_or_name: str, locked: bool, reason: str | None = None
) -> Scenario:
    """``set_locked``, then the scenario's lineage file, so that ``runyard rebuild``
    keeps the lock: what the CLI, the API and the UI all call."""
    from runyard.registry import lineage_files  # it imports this module

    with yard.write() as conn:
        scenario = set_locked(conn, id_or_name, locked, reason)
    lineage_files.write_scenario(yard.settings, scenario)
    return scenario


def ensure_unlocked(scenario: Scenario, action: str) -> None:
    """Raise Locked when ``scenario`` is locked, saying what was refused."""
    if scenario.locked:
        why = f" ({scenario.locked_reason})" if scenario.locked_reason else ""
        raise Locked(
            f"scenario {scenario.name!r} ({scenario.scenario_id}) is locked{why}: {action} refused",
            hint=f"`runyard scenario unlock {scenario.scenario_id}` if it should take new work",
        )
