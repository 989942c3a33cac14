"""``runyard scenario``: named base inputs, and their locks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from runyard.cli.common import (
    AfterOption,
    JsonOption,
    LimitOption,
    json_object,
    read_text_file,
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
from runyard.cli.server import client_from

if TYPE_CHECKING:
    from runyard import models as _models
    from runyard.registry import lineage_files, scenarios
else:
    _models = lazy("runyard.models")
    lineage_files = lazy("runyard.registry.lineage_files")
    scenarios = lazy("runyard.registry.scenarios")


app = typer.Typer(
    help="Scenarios: named base inputs; a locked one takes no new plans or runs.",
    no_args_is_help=True,
)

IdArg = Annotated[str, typer.Argument(help="Scenario id or name.", metavar="ID")]


def _show(scenario: _models.Scenario, title: str) -> None:
    console().print(
        key_values(
            title,
            [
                ("scenario_id", scenario.scenario_id),
                ("name", scenario.name),
                ("description", scenario.description),
                (
                    "locked",
                    f"yes ({scenario.locked_reason})"
                    if scenario.locked and scenario.locked_reason
                    else ("yes" if scenario.locked else "no"),
                ),
                ("data", f"sha256:{scenario.data_digest}" if scenario.data_digest else "none"),
                ("created", when(scenario.created_at)),
            ],
        )
    )


@app.command("add")
@handles_errors
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Unique name.", metavar="NAME")],
    description: Annotated[
        str, typer.Option("--description", help="Free text.", metavar="TEXT")
    ] = "",
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="Its base data: a JSON file ('-' for stdin), stored as a snapshot.",
            metavar="FILE",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Create a scenario, with its data if given."""
    data_text = read_text_file(data) if data is not None else None
    client = client_from(ctx)
    if client is not None:
        content = json_object(data_text, data) if data_text is not None else None
        scenario = _models.Scenario.model_validate(client.add_scenario(name, description, content))
    else:
        with yard_from(ctx) as yard:
            with yard.write() as conn:
                scenario = scenarios.add_scenario(conn, name, description, data_text)
            lineage_files.write_scenario(yard.settings, scenario, data_text)
    if json_output:
        print_json(scenario)
    else:
        _show(scenario, "Created scenario")


@app.command("list")
@handles_errors
def list_(
    ctx: typer.Context,
    limit: LimitOption = 100,
    after: AfterOption = None,
    json_output: JsonOption = False,
) -> None:
    """List scenarios by name."""
    with yard_from(ctx) as yard, yard.read() as conn:
        page = scenarios.list_scenarios(conn, limit=limit, after=after)
    if json_output:
        print_json(page)
        return
    out = console()
    out.print(
        table(
            None,
            ["scenario_id", "name", "locked", "created", "description"],
            [
                (
                    s.scenario_id,
                    s.name,
                    "locked" if s.locked else "",
                    when(s.created_at),
                    s.description,
                )
                for s in page.items
            ],
        )
    )
    next_page_hint(out, page.next_cursor, "runyard scenario list")


@app.command("show")
@handles_errors
def show(ctx: typer.Context, scenario_id: IdArg, json_output: JsonOption = False) -> None:
    """Show one scenario."""
    with yard_from(ctx) as yard, yard.read() as conn:
        scenario = scenarios.get_scenario(conn, scenario_id)
    if json_output:
        print_json(scenario)
    else:
        _show(scenario, "Scenario")


@app.command("lock")
@handles_errors
def lock(
    ctx: typer.Context,
    scenario_id: IdArg,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why, shown in refusals.", metavar="TEXT")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Lock a scenario: new plans and runs on it are refused."""
    with yard_from(ctx) as yard:
        scenario = scenarios.set_locked_in_yard(yard, scenario_id, True, reason)
    if json_output:
        print_json(scenario)
    else:
        _show(scenario, "Locked scenario")


@app.command("unlock")
@handles_errors
def unlock(ctx: typer.Context, scenario_id: IdArg, json_output: JsonOption = False) -> None:
    """Unlock a scenario."""
    with yard_from(ctx) as yard:
        scenario = scenarios.set_locked_in_yard(yard, scenario_id, False)
    if json_output:
        print_json(scenario)
    else:
        _show(scenario, "Unlocked scenario")
