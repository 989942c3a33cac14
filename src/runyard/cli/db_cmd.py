"""``runyard db``: the registry database's schema."""

from __future__ import annotations

import typer

from runyard.cli.common import JsonOption, yard_from
from runyard.cli.output import console, handles_errors, key_values, print_json
from runyard.db.engine import redact
from runyard.db.schema import HEAD_REVISION, inspect_registry, upgrade_registry

app = typer.Typer(help="The registry database: schema status and migrations.",
                  no_args_is_help=True)


@app.command("upgrade")
@handles_errors
def upgrade(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Create the registry or migrate it to the current schema (safe to repeat)."""
    with yard_from(ctx, check_schema=False) as yard:
        before, after = upgrade_registry(yard.engine, yard.settings.yard_id)
        doc = {"db_url": redact(yard.settings.db_url), "from_revision": before,
               "to_revision": after, "changed": before != after}
    if json_output:
        print_json(doc)
    elif doc["changed"]:
        console().print(f"Registry upgraded from {before or 'empty'} to {after}.")
    else:
        console().print(f"Registry already at the current schema ({after}).")


@app.command("status")
@handles_errors
def status(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Show which database the yard uses and whether its schema is current."""
    with yard_from(ctx, check_schema=False) as yard:
        state = inspect_registry(yard.engine)
        doc = {
            "db_url": redact(yard.settings.db_url),
            "db_url_source": yard.settings.db_url_source,
            "revision": state.revision,
            "head_revision": HEAD_REVISION,
            "current": state.is_current,
            "yard_id": state.yard_id,
        }
    if json_output:
        print_json(doc)
        return
    console().print(key_values("Registry", list(doc.items())))
    if not state.is_current:
        console().print("Run `runyard db upgrade` to bring it to the current schema.")
