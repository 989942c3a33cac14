"""``runyard view``: saved views of the runs list (a query, an order, KPI columns)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from runyard.cli.common import (
    AfterOption,
    ColumnsOption,
    JsonOption,
    LimitOption,
    OrderByOption,
    WhereOption,
    yard_from,
)
from runyard.cli.lazy import lazy
from runyard.cli.output import (
    console,
    handles_errors,
    key_values,
    next_page_hint,
    print_json,
    table,
    when,
)
from runyard.cli.run_table import kpi_columns, runs_table

if TYPE_CHECKING:
    from runyard import models as _models
    from runyard import query as _query
    from runyard.registry import runs, views
else:
    _models = lazy("runyard.models")
    _query = lazy("runyard.query")
    runs = lazy("runyard.registry.runs")
    views = lazy("runyard.registry.views")


app = typer.Typer(
    help="Saved views of the runs list: a query, an order and KPI columns, by name.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="The view's name.", metavar="NAME")]


def _show(view: _models.SavedView, title: str) -> None:
    console().print(
        key_values(
            title,
            [
                ("name", view.name),
                ("where", view.where or "(every run)"),
                ("order by", ", ".join(view.order_by) or "newest first"),
                ("columns", ", ".join(view.columns) or "(the yard's default KPIs)"),
                ("updated", when(view.updated_at)),
            ],
        )
    )


@app.command("save")
@handles_errors
def save(
    ctx: typer.Context,
    name: NameArg,
    where: WhereOption = None,
    order_by: OrderByOption = None,
    columns: ColumnsOption = None,
    json_output: JsonOption = False,
) -> None:
    """Save (or replace) a view; its query is checked as running it would check it."""
    with yard_from(ctx) as yard, yard.write() as conn:
        view = views.save_view(
            conn, name, where, order_by or [], [columns or ""], list(yard.settings.kpis)
        )
    if json_output:
        print_json(view)
        return
    _show(view, "Saved view")


@app.command("list")
@handles_errors
def list_(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List the saved views."""
    with yard_from(ctx) as yard, yard.read() as conn:
        found = views.list_views(conn)
    if json_output:
        print_json({"items": [v.model_dump(mode="json") for v in found]})
        return
    console().print(
        table(
            None,
            ["name", "where", "order by", "columns"],
            [
                (v.name, v.where or "-", ", ".join(v.order_by) or "-", ", ".join(v.columns) or "-")
                for v in found
            ],
        )
    )


@app.command("show")
@handles_errors
def show(
    ctx: typer.Context,
    name: NameArg,
    limit: LimitOption = 50,
    after: AfterOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show a view and a page of the runs it finds."""
    with yard_from(ctx) as yard:
        with yard.read() as conn:
            view = views.get_view(conn, name)
        query = _query.parse_query(view.where, view.order_by)
        page = runs.list_runs(yard, limit=limit, after=after, query=query)
        with yard.read() as conn:
            names = runs.lineage_names(conn, page.items)
        settings = yard.settings
    if json_output:
        print_json({"view": view.model_dump(mode="json"), "runs": page.model_dump(mode="json")})
        return
    _show(view, "View")
    shown = kpi_columns(settings, page.items, view.columns, query)
    out = console()
    out.print(runs_table(settings, page.items, shown, names))
    next_page_hint(out, page.next_cursor, f"runyard view show {name}")


@app.command("delete")
@handles_errors
def delete(ctx: typer.Context, name: NameArg, json_output: JsonOption = False) -> None:
    """Delete a saved view."""
    with yard_from(ctx) as yard, yard.write() as conn:
        views.delete_view(conn, name)
    if json_output:
        print_json({"deleted": name})
        return
    console().print(f"Deleted view {name}")
