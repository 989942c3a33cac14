"""``/ui/plans``: plan versions (filtered by scenario and config version), the form that
creates one from a base scenario and a config version (and may run it at once), and a
plan's page with its lineage, runs, jobs and aggregates, "run again" and "aggregate".

The list shows each plan's run count and the mean of each configured KPI (``[kpis]``),
from two grouped queries for the page (``registry.plans.list_plans_with_stats``); a
plan's runs table has the KPI columns (``runyard.kpis.columns``) with the best and worst
value marked where ``better`` is configured.

Creating goes through ``registry.plans.create_plan_in_yard`` and running through
``jobs.service.enqueue_planning``/``enqueue_aggregate``: the same calls as ``runyard plan
create``/``plan run``/``job aggregate``. A refused form (bad JSON, unknown or locked
scenario, unknown config or runner) is shown again with what was typed and the reason,
and nothing is created.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from runyard import canonical
from runyard import kpis as kpi_rules
from runyard.config import Settings
from runyard.errors import Invalid, Locked, NotFound, RunyardError
from runyard.jobs import service as job_service
from runyard.jobs.aggregate import CSV_NAME, JSON_NAME
from runyard.models import Run, RunStatus
from runyard.registry import configs, plans, scenarios
from runyard.registry.lineage import plan_detail
from runyard.registry.plans import DEFAULT_RUNNER, create_plan_in_yard
from runyard.registry.search_index import kpi_values
from runyard.web.auth import require_ui_write, who_of
from runyard.web.ui.render import redirect, render
from runyard.web.ui.scenarios import checked_id, yard_of

router = APIRouter()

PAGE_SIZE = 50
CHOICES = 500  # scenarios and config versions offered in a select
RUNS_SHOWN = 10
KPIS_SHOWN = 8  # KPI columns of a plan's runs table, at most
COMPARE_MAX = 4
JSON_KINDS = {"list": "an array", "str": "a string", "bool": "true or false", "NoneType": "null"}


def runner_names(request: Request) -> list[str]:
    """The runners of ``runyard.toml``'s ``[runners.NAME]`` tables, and ``default`` (the
    PSI example unless the file configures its own)."""
    configured = request.app.state.settings.file.runners
    return sorted({DEFAULT_RUNNER, *configured}, key=lambda n: (n != DEFAULT_RUNNER, n))


def _blank(value: str | None) -> str | None:
    return value if value else None


# --- the list -----------------------------------------------------------------------------


@router.get("/plans", response_class=HTMLResponse)
def plan_list(
    request: Request,
    scenario: str | None = None,
    config_version_id: str | None = None,
    after: str | None = None,
) -> Response:
    scenario, config_version_id = _blank(scenario), _blank(config_version_id)
    if scenario:
        checked_id(scenario, "scenario id or name")
    if config_version_id:
        checked_id(config_version_id, "config version id")
    settings = request.app.state.settings
    kpi_columns = kpi_rules.configured(settings)
    with yard_of(request).read() as conn:
        chosen = scenarios.get_scenario(conn, scenario) if scenario else None
        page = plans.list_plans_with_stats(
            conn,
            [k.name for k in kpi_columns],
            limit=PAGE_SIZE,
            after=_blank(after),
            scenario=chosen.scenario_id if chosen else None,
            config_version_id=config_version_id,
        )
        names = scenarios.scenario_names(conn, (p.scenario_id for p in page.items))
        scenario_choices = scenarios.list_scenarios(conn, limit=CHOICES).items
        config_choices = configs.list_configs(conn, limit=CHOICES).items
    if chosen and all(s.scenario_id != chosen.scenario_id for s in scenario_choices):
        scenario_choices.append(chosen)
    filters = {"scenario": scenario, "config_version_id": config_version_id, "after": after}
    kept = {k: v for k, v in filters.items() if v}
    return render(
        request,
        "plans/list.html",
        title="Plans",
        section="plans",
        json_href="/api/v1/plans" + (f"?{urlencode(kept)}" if kept else ""),
        page=page,
        kpi_columns=kpi_columns,
        scenario_names=names,
        chosen_scenario=chosen.scenario_id if chosen else "",
        chosen_config=config_version_id or "",
        scenario_choices=scenario_choices,
        config_choices=config_choices,
        filtered=bool(scenario or config_version_id),
    )


# --- the form -----------------------------------------------------------------------------


@dataclass
class PlanForm:
    """What the form holds: blank, preset from ``?scenario=``, or as the user typed it."""

    scenario: str = ""
    config_version_id: str = ""
    params: str = "{}"
    runner: str = DEFAULT_RUNNER
    label: str = ""


def _render_form(
    request: Request,
    form: PlanForm,
    status_code: int = 200,
    error: RunyardError | None = None,
    notice: str | None = None,
) -> Response:
    with yard_of(request).read() as conn:
        scenario_choices = scenarios.list_scenarios(conn, limit=CHOICES).items
        config_choices = configs.list_configs(conn, limit=CHOICES).items
    return render(
        request,
        "plans/new.html",
        title="New plan",
        section="plans",
        json_href="/api/v1/plans",
        status_code=status_code,
        form=form,
        error=error,
        notice=notice,
        scenario_choices=scenario_choices,
        config_choices=config_choices,
        runners=runner_names(request),
    )


@router.get("/plans/new", response_class=HTMLResponse)
def plan_new(request: Request, scenario: str | None = None) -> Response:
    form, notice = PlanForm(), None
    if scenario:
        checked_id(scenario, "scenario id or name")
        with yard_of(request).read() as conn:
            found = scenarios.find_scenario(conn, scenario)
        if found is None:
            notice = f"There is no scenario {scenario!r}: choose one below."
        else:
            form.scenario = found.scenario_id
            if found.locked:
                why = f" ({found.locked_reason})" if found.locked_reason else ""
                notice = (
                    f"Scenario {found.name} is locked{why}: unlock it on its page "
                    "before making a plan from it, or choose another."
                )
    return _render_form(request, form, notice=notice)


def _parse_params(text: str) -> dict[str, Any]:
    """The params textarea: a JSON object (numbers kept exact, duplicate keys refused)."""
    parsed = canonical.parse_exact(text.strip() or "{}", "params")
    if not isinstance(parsed, dict):
        kind = JSON_KINDS.get(type(parsed).__name__, "a number")
        raise Invalid(f'params must be a JSON object like {{"horizon": 52}}, not {kind}')
    return parsed


@router.post("/plans/new", response_class=HTMLResponse, dependencies=[Depends(require_ui_write)])
def plan_create(
    request: Request,
    scenario: Annotated[str, Form()] = "",
    config_version_id: Annotated[str, Form()] = "",
    params: Annotated[str, Form()] = "{}",
    runner: Annotated[str, Form()] = DEFAULT_RUNNER,
    label: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "create",
) -> Response:
    form = PlanForm(scenario, config_version_id, params, runner, label)
    yard = yard_of(request)
    try:
        parsed = _parse_params(params)
        if not scenario:
            raise Invalid("choose a base scenario")
        if not config_version_id:
            raise Invalid("choose a config version")
        checked_id(scenario, "scenario")
        checked_id(config_version_id, "config version id")
        plan = create_plan_in_yard(
            yard, scenario, config_version_id, parsed, label.strip() or None, runner
        )
    except Locked as exc:
        return _render_form(request, form, status_code=423, error=exc)
    except (Invalid, NotFound) as exc:  # a field of the form names nothing usable
        return _render_form(request, form, status_code=422, error=exc)
    plan_page = f"/ui/plans/{plan.plan_version_id}"
    if action != "run":
        return redirect(plan_page, f"Created plan {plan.plan_version_id}.")
    try:
        job = job_service.enqueue_planning(yard, plan.plan_version_id, created_by=who_of(request))
    except RunyardError as exc:  # e.g. locked in between: the plan stays, unrun
        return redirect(plan_page, f"Created plan {plan.plan_version_id}, not run: {exc.message}")
    return redirect(
        f"/ui/jobs/{job.job_id}",
        f"Created plan {plan.plan_version_id} and queued planning job {job.job_id}.",
    )


# --- one plan -----------------------------------------------------------------------------


def _kpi_table(
    settings: Settings, runs: list[Run]
) -> tuple[list[kpi_rules.Kpi], list[list[tuple[float | None, str]]]]:
    """The runs table's KPI columns (the configured KPIs, else the most common ones), and
    per run each column's value with its mark (``best``, ``worst`` or "")."""
    columns = kpi_rules.columns(settings, [r.summary for r in runs])[:KPIS_SHOWN]
    values = [kpi_values(r.summary) for r in runs]
    cells: list[list[tuple[float | None, str]]] = [[] for _ in runs]
    for column in columns:
        found = [v.get(column.name) for v in values]
        best, worst = kpi_rules.best_and_worst(found, column.better)
        for i, value in enumerate(found):
            mark = "best" if i in best else "worst" if i in worst else ""
            cells[i].append((value, mark))
    return columns, cells


@router.get("/plans/{plan_version_id}", response_class=HTMLResponse)
def plan_show(request: Request, plan_version_id: str) -> Response:
    checked_id(plan_version_id, "plan version id")
    detail = plan_detail(yard_of(request), plan_version_id, run_limit=RUNS_SHOWN)
    kpi_columns, kpi_cells = _kpi_table(request.app.state.settings, detail.runs)
    succeeded = [r.run_id for r in detail.runs if r.status == RunStatus.succeeded]
    compare_ids = succeeded[:COMPARE_MAX]
    compare_href = (
        "/ui/runs/compare?" + urlencode([("ids", i) for i in compare_ids])
        if len(compare_ids) >= 2
        else None
    )
    return render(
        request,
        "plans/show.html",
        title=f"Plan {detail.label or detail.plan_version_id}",
        section="plans",
        json_href=f"/api/v1/plans/{detail.plan_version_id}",
        plan=detail,
        kpi_columns=kpi_columns,
        kpi_cells=kpi_cells,
        compare_href=compare_href,
        runs_href="/ui/runs?" + urlencode({"plan_version_id": detail.plan_version_id}),
        jobs_href="/ui/jobs?" + urlencode({"plan_version_id": detail.plan_version_id}),
        aggregate_files=(CSV_NAME, JSON_NAME),
    )


@router.post("/plans/{plan_version_id}/run", dependencies=[Depends(require_ui_write)])
def plan_run(request: Request, plan_version_id: str) -> Response:
    checked_id(plan_version_id, "plan version id")
    job = job_service.enqueue_planning(
        yard_of(request), plan_version_id, created_by=who_of(request)
    )
    return redirect(f"/ui/jobs/{job.job_id}", f"Queued planning job {job.job_id}.")


@router.post("/plans/{plan_version_id}/aggregate", dependencies=[Depends(require_ui_write)])
def plan_aggregate(request: Request, plan_version_id: str) -> Response:
    checked_id(plan_version_id, "plan version id")
    job = job_service.enqueue_aggregate(
        yard_of(request), plan_version_id, created_by=who_of(request)
    )
    return redirect(f"/ui/jobs/{job.job_id}", f"Queued aggregate job {job.job_id}.")
