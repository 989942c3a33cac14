"""Plan versions: base scenario + config version + parameters, immutable.

A plan version is the only way a new run is made. There is deliberately no
update function here: a changed plan is a new plan version.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from runyard import canonical
from runyard.db.tables import plan_versions
from runyard.errors import Invalid, NotFound
from runyard.ids import new_id, validate_label
from runyard.models import Page, PlanVersion
from runyard.registry.common import as_aware, newest_first_page, utcnow
from runyard.registry.configs import get_config
from runyard.registry.scenarios import ensure_unlocked, get_scenario
from runyard.registry.search_index import index_plan

if TYPE_CHECKING:
    from runyard.yard import Yard

PLAN_ID_PREFIX = "pv"
DEFAULT_RUNNER = "default"
_RUNNER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def _to_model(row: Any) -> PlanVersion:
    return PlanVersion(
        plan_version_id=row.plan_version_id,
        scenario_id=row.scenario_id,
        config_version_id=row.config_version_id,
        params=canonical.loads(row.params),
        label=row.label,
        runner=row.runner,
        created_at=as_aware(row.created_at),
    )


def create_plan(
    conn: Connection,
    scenario: str,
    config_version_id: str,
    params: dict[str, Any] | None = None,
    label: str | None = None,
    runner: str = DEFAULT_RUNNER,
) -> PlanVersion:
    """Create a plan version; refused when the scenario is locked.

    Args:
        scenario: scenario id or name.
        params: JSON-serializable parameters, stored canonically.
    """
    if label is not None:
        validate_label(label, "plan label")
    if not _RUNNER_RE.fullmatch(runner):
        raise Invalid(f"invalid runner name {runner!r}: letters, digits, '_', '.', '-'")
    params_text = canonical.canonical_text(params or {})
    found = get_scenario(conn, scenario)
    config = get_config(conn, config_version_id)
    ensure_unlocked(found, "creating a plan")
    plan_id = new_id(PLAN_ID_PREFIX)
    conn.execute(
        plan_versions.insert().values(
            plan_version_id=plan_id,
            scenario_id=found.scenario_id,
            config_version_id=config.config_version_id,
            params=params_text,
            label=label,
            runner=runner,
            created_at=utcnow(),
        )
    )
    index_plan(conn, plan_id, json.loads(params_text))
    return get_plan(conn, plan_id)


def find_plan(conn: Connection, plan_version_id: str) -> PlanVersion | None:
    row = conn.execute(
        select(plan_versions).where(plan_versions.c.plan_version_id == plan_version_id)
    ).first()
    return None if row is None else _to_model(row)


def get_plan(conn: Connection, plan_version_id: str) -> PlanVersion:
    plan = find_plan(conn, plan_version_id)
    if plan is None:
        raise NotFound(
            f"no plan version {plan_version_id!r}",
            hint="`runyard plan list` shows them; `runyard plan create` makes one",
        )
    return plan


def list_plans(
    conn: Connection,
    limit: int = 100,
    after: str | None = None,
    scenario: str | None = None,
    config_version_id: str | None = None,
) -> Page[PlanVersion]:
    """Plan versions, newest first, optionally of one scenario (id or name) or config."""
    t = plan_versions
    query = select(t)
    if scenario is not None:
        query = query.where(t.c.scenario_id == get_scenario(conn, scenario).scenario_id)
    if config_version_id is not None:
        query = query.where(
            t.c.config_version_id == get_config(conn, config_version_id).config_version_id
        )
    rows, cursor = newest_first_page(conn, query, t.c.created_at, t.c.plan_version_id, limit, after)
    return Page[PlanVersion](items=[_to_model(r) for r in rows], next_cursor=cursor)


def create_plan_in_yard(
    yard: Yard,
    scenario: str,
    config_version_id: str,
    params: dict[str, Any] | None = None,
    label: str | None = None,
    runner: str = DEFAULT_RUNNER,
) -> PlanVersion:
    """``create_plan`` with the runner checked against the yard's ``[runners]``."""
    from runyard.registry.lineage_files import write_plan_lineage  # it imports this module

    if _RUNNER_RE.fullmatch(runner):
        yard.settings.runner(runner)  # Invalid, naming the file, when it is not configured
    with yard.write() as conn:
        plan = create_plan(conn, scenario, config_version_id, params, label, runner)
    with yard.read() as conn:
        write_plan_lineage(conn, yard.settings, plan.plan_version_id)
    return plan
