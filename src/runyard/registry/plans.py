"""Plan versions: base scenario + config version + parameters, immutable.

A plan version is the only way a new run is made. There is deliberately no
update function here: a changed plan is a new plan version.

A page of plans can carry, for each plan, its run count and the mean of chosen KPIs
over its runs (``list_plans_with_stats``): two grouped queries for the whole page, never
one per plan, reading the ``run_kpis`` index rather than the runs' summaries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field
from sqlalchemy import Connection, func, select

from runyard import canonical
from runyard.db.tables import plan_versions, run_kpis, runs
from runyard.errors import Invalid, NotFound
from runyard.ids import new_id, validate_label
from runyard.models import FrozenModel, Page, PlanVersion
from runyard.registry.common import as_aware, newest_first_page, utcnow
from runyard.registry.configs import get_config
from runyard.registry.scenarios import ensure_unlocked, get_scenario
from runyard.registry.search_index import index_plan

if TYPE_CHECKING:
    from runyard.yard import Yard

PLAN_ID_PREFIX = "pv"
DEFAULT_RUNNER = "default"
_RUNNER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


RUN_COUNT = "runs of the plan version, any status or location"
KPI_MEANS = (
    "the mean of each configured KPI ([kpis.NAME]) over the plan's runs that recorded it; "
    "null when none did"
)


class PlanStats(FrozenModel):
    run_count: int = Field(description=RUN_COUNT)
    kpi_means: dict[str, float | None] = Field(default_factory=dict, description=KPI_MEANS)


class PlanListItem(PlanVersion):
    """A plan version as the plans list shows it: with its run count and KPI means."""

    run_count: int = Field(description=RUN_COUNT)
    kpi_means: dict[str, float | None] = Field(default_factory=dict, description=KPI_MEANS)


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


def plan_stats(
    conn: Connection, plan_ids: Sequence[str], kpi_names: Sequence[str] = ()
) -> dict[str, PlanStats]:
    """Run counts and KPI means of these plans: one grouped query for the counts and one
    for the means (none when no KPI is named), whatever the number of plans.

    Args:
        kpi_names: KPI names (dotted paths of run summaries) whose means are wanted.
    """
    wanted = sorted(set(plan_ids))
    if not wanted:
        return {}
    counted = conn.execute(
        select(runs.c.plan_version_id, func.count())
        .where(runs.c.plan_version_id.in_(wanted))
        .group_by(runs.c.plan_version_id)
    )
    counts: dict[str, int] = {pid: int(n) for pid, n in counted}
    names = list(dict.fromkeys(kpi_names))
    means: dict[str, dict[str, float | None]] = {pid: dict.fromkeys(names) for pid in wanted}
    if names:
        query = (
            select(runs.c.plan_version_id, run_kpis.c.name, func.avg(run_kpis.c.value))
            .select_from(run_kpis.join(runs, runs.c.run_id == run_kpis.c.run_id))
            .where(runs.c.plan_version_id.in_(wanted), run_kpis.c.name.in_(names))
            .group_by(runs.c.plan_version_id, run_kpis.c.name)
        )
        for plan_id, name, mean in conn.execute(query):
            means[plan_id][name] = float(mean) if mean is not None else None
    return {pid: PlanStats(run_count=counts.get(pid, 0), kpi_means=means[pid]) for pid in wanted}


def list_plans_with_stats(
    conn: Connection,
    kpi_names: Sequence[str] = (),
    limit: int = 100,
    after: str | None = None,
    scenario: str | None = None,
    config_version_id: str | None = None,
) -> Page[PlanListItem]:
    """``list_plans``, each plan with its run count and the means of ``kpi_names``."""
    page = list_plans(conn, limit, after, scenario, config_version_id)
    stats = plan_stats(conn, [p.plan_version_id for p in page.items], kpi_names)
    return Page[PlanListItem](
        items=[
            PlanListItem(**p.model_dump(), **stats[p.plan_version_id].model_dump())
            for p in page.items
        ],
        next_cursor=page.next_cursor,
    )


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
