"""``runyard plan``: plan versions, the only way a run is made."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

import typer

from runyard.cli.common import (
    AfterOption,
    ColumnsOption,
    JsonOption,
    LimitOption,
    OrderByOption,
    WhereOption,
    check_range,
    parse_key_values,
    yard_from,
)
from runyard.cli.lazy import lazy
from runyard.cli.output import (
    console,
    handles_errors,
    key_values,
    next_page_hint,
    print_json,
    short_json,
    styled_status,
    table,
    when,
)
from runyard.cli.run_table import (
    kpi_columns,
    remote_names,
    remote_settings,
    runs_table,
    split_columns,
)
from runyard.cli.server import client_from
from runyard.limits import MAX_PAGE_SIZE

if TYPE_CHECKING:
    from runyard import models as _models
    from runyard import query as _query
    from runyard.registry import lineage as _lineage_registry
    from runyard.registry import plans
    from runyard.registry import runs as _runs_registry
    from runyard.registry import runs as run_registry
else:
    _models = lazy("runyard.models")
    _query = lazy("runyard.query")
    _lineage_registry = lazy("runyard.registry.lineage")
    _runs_registry = lazy("runyard.registry.runs")
    plans = lazy("runyard.registry.plans")
    run_registry = lazy("runyard.registry.runs")


app = typer.Typer(
    help="Plan versions: base scenario + config version + parameters, immutable.",
    no_args_is_help=True,
)


def _summary_pairs(plan: _models.PlanVersion) -> list[tuple[str, object]]:
    return [
        ("plan_version_id", plan.plan_version_id),
        ("label", plan.label),
        ("scenario_id", plan.scenario_id),
        ("config_version_id", plan.config_version_id),
        ("runner", plan.runner),
        ("params", json.dumps(plan.params, ensure_ascii=False) if plan.params else "-"),
        ("created", when(plan.created_at)),
    ]


@app.command("create")
@handles_errors
def create(
    ctx: typer.Context,
    scenario: Annotated[
        str, typer.Option("--scenario", help="Base scenario id or name.", metavar="SCENARIO")
    ],
    config: Annotated[
        str, typer.Option("--config", help="Config version id.", metavar="CONFIG_VERSION_ID")
    ],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="KEY=VALUE, repeatable; VALUE is JSON when it parses "
            "(52, true, [1,2]), else text.",
            metavar="KEY=VALUE",
        ),
    ] = None,
    label: Annotated[
        str | None, typer.Option("--label", help="A label for people.", metavar="TEXT")
    ] = None,
    runner: Annotated[
        str,
        typer.Option(
            "--runner",
            help="Name of the runner that will execute the plan (runners come with jobs).",
            metavar="NAME",
        ),
    ] = "default",
    json_output: JsonOption = False,
) -> None:
    """Create a plan version (refused on a locked scenario)."""
    params = parse_key_values(param, "--param", json_values=True)
    client = client_from(ctx)
    if client is not None:
        answer = client.create_plan(scenario, config, params, label, runner)
        plan = _models.PlanVersion.model_validate(answer)
    else:
        with yard_from(ctx) as yard:
            plan = plans.create_plan_in_yard(yard, scenario, config, params, label, runner)
    if json_output:
        print_json(plan)
        return
    console().print(key_values("Created plan version", _summary_pairs(plan)))
    console().print(f"Next: runyard run start --plan {plan.plan_version_id}")


@app.command("list")
@handles_errors
def list_(
    ctx: typer.Context,
    scenario: Annotated[
        str | None, typer.Option("--scenario", help="Scenario id or name.", metavar="SCENARIO")
    ] = None,
    config: Annotated[
        str | None, typer.Option("--config", help="Config version id.", metavar="CONFIG_VERSION_ID")
    ] = None,
    limit: LimitOption = 100,
    after: AfterOption = None,
    json_output: JsonOption = False,
) -> None:
    """List plan versions, newest first."""
    client = client_from(ctx)
    if client is not None:
        # The server's plans come with run counts and KPI means; the list shows the plans.
        answer = client.get(
            "plans", limit=limit, after=after, scenario=scenario, config_version_id=config
        )
        page = _models.Page[_models.PlanVersion].model_validate(answer)
    else:
        with yard_from(ctx) as yard, yard.read() as conn:
            page = plans.list_plans(
                conn, limit=limit, after=after, scenario=scenario, config_version_id=config
            )
    if json_output:
        print_json(page)
        return
    out = console()
    out.print(
        table(
            None,
            ["plan_version_id", "label", "scenario_id", "config_version_id", "params", "created"],
            [
                (
                    p.plan_version_id,
                    p.label,
                    p.scenario_id,
                    p.config_version_id,
                    short_json(p.params),
                    when(p.created_at),
                )
                for p in page.items
            ],
        )
    )
    next_page_hint(out, page.next_cursor, "runyard plan list")


@app.command("show")
@handles_errors
def show(
    ctx: typer.Context,
    plan_id: Annotated[str, typer.Argument(help="Plan version id (pv-…).", metavar="ID")],
    runs: Annotated[
        int,
        typer.Option("--runs", help="How many of its newest runs to show (0-1000).", metavar="N"),
    ] = 20,
    where: WhereOption = None,
    order_by: OrderByOption = None,
    columns: ColumnsOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show a plan version with its scenario, config version and runs (those a query
    finds, in its order, with --where/--order-by)."""
    check_range(runs, "--runs", 0, MAX_PAGE_SIZE)
    query = _query.parse_query(where, order_by)
    client = client_from(ctx)
    if client is not None:
        detail = _models.PlanDetail.model_validate(
            client.get(f"plans/{quote(plan_id, safe='')}", runs=runs)
        )
        if (query.where is not None or query) and runs > 0:
            found = client.list_runs(
                plan_version_id=plan_id, where=where, order_by=order_by, limit=runs
            )
            page = _models.Page[_models.Run].model_validate(found)
            detail = detail.model_copy(update={"runs": page.items})
        settings, names = remote_settings(), remote_names(client, detail.runs)
    else:
        with yard_from(ctx) as yard:
            detail = _lineage_registry.plan_detail(yard, plan_id, run_limit=runs)
            if (query.where is not None or query) and runs > 0:
                found_runs = run_registry.list_runs(
                    yard,
                    _runs_registry.RunFilter(plan_version_id=plan_id),
                    limit=runs,
                    query=query,
                )
                detail = detail.model_copy(update={"runs": found_runs.items})
            with yard.read() as conn:
                names = run_registry.lineage_names(conn, detail.runs)
            settings = yard.settings
    if json_output:
        print_json(detail)
        return
    out = console()
    pairs = _summary_pairs(detail)
    pairs[2] = (
        "scenario",
        f"{detail.scenario.name} ({detail.scenario_id})"
        + (" [locked]" if detail.scenario.locked else ""),
    )
    pairs[3] = ("config", f"{detail.config_version.name or ''} ({detail.config_version_id})")
    out.print(key_values("Plan version", pairs))
    shown = kpi_columns(settings, detail.runs, split_columns(columns), query)
    title = f"Runs ({detail.run_count})" + (f" where {where}" if where else "")
    out.print(runs_table(settings, detail.runs, shown, names, title=title))
    if detail.jobs:
        out.print(
            table(
                "Newest jobs",
                ["job_id", "type", "status", "run_id", "created", "error"],
                [
                    (
                        j.job_id,
                        j.type.value,
                        styled_status(j.status.value),
                        j.run_id,
                        when(j.created_at),
                        short_json(j.error, 50) if j.error else None,
                    )
                    for j in detail.jobs
                ],
            )
        )
    if detail.aggregates:
        out.print(
            table(
                "Aggregates",
                ["aggregate_id", "runs", "created", "folder"],
                [
                    (a.aggregate_id, a.run_count, when(a.created_at), a.path)
                    for a in detail.aggregates
                ],
            )
        )
