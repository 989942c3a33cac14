"""Views along the lineage scenario → config version → plan version → runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runyard.models import PlanDetail
from runyard.registry.configs import get_config
from runyard.registry.jobs import aggregates_of_plan, list_jobs
from runyard.registry.plans import get_plan
from runyard.registry.runs import runs_of_plan
from runyard.registry.scenarios import get_scenario

if TYPE_CHECKING:
    from runyard.yard import Yard


def plan_detail(yard: Yard, plan_version_id: str, run_limit: int = 20) -> PlanDetail:
    """A plan version with its base scenario, its config version and its newest runs."""
    with yard.read() as conn:
        plan = get_plan(conn, plan_version_id)
        scenario = get_scenario(conn, plan.scenario_id)
        config = get_config(conn, plan.config_version_id)
        count, recent = runs_of_plan(conn, yard.settings, plan_version_id, run_limit)
        jobs = list_jobs(conn, plan_version_id=plan.plan_version_id, limit=10).items
        aggregates = aggregates_of_plan(conn, plan.plan_version_id)
    return PlanDetail(
        **plan.model_dump(),
        scenario=scenario,
        config_version=config,
        run_count=count,
        runs=recent,
        jobs=jobs,
        aggregates=aggregates,
    )
