"""``runyard db``: the registry database's schema."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from runyard.cli.common import JsonOption, yard_from
from runyard.cli.lazy import lazy
from runyard.cli.output import console, handles_errors, key_values, print_json, report_error
from runyard.errors import RegistryStateError

if TYPE_CHECKING:
    from runyard.db import engine as _engine_db
    from runyard.db import schema as _schema_db
else:
    _engine_db = lazy("runyard.db.engine")
    _schema_db = lazy("runyard.db.schema")


app = typer.Typer(help="The registry database: schema status and migrations.", no_args_is_help=True)


@app.command("upgrade")
@handles_errors
def upgrade(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Create the registry or migrate it to the current schema (safe to repeat)."""
    with yard_from(ctx, check_schema=False) as yard:
        before, after = _schema_db.upgrade_registry(yard.engine, yard.settings.yard_id)
        doc = {
            "db_url": _engine_db.redact(yard.settings.db_url),
            "from_revision": before,
            "to_revision": after,
            "changed": before != after,
        }
    if json_output:
        print_json(doc)
    elif doc["changed"]:
        console().print(f"Registry upgraded from {before or 'empty'} to {after}.")
    else:
        console().print(f"Registry already at the current schema ({after}).")


@app.command("status")
@handles_errors
def status(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Show which database the yard uses and whether it is this yard's current registry.

    Exits 6 when it is not (missing, stale, another yard's), like every other command would.
    """
    problem: RegistryStateError | None = None
    with yard_from(ctx, check_schema=False) as yard:
        state = _schema_db.inspect_registry(yard.engine)
        try:
            _schema_db.verify_registry(yard.engine, yard.settings.yard_id)
        except RegistryStateError as exc:
            problem = exc
        doc = {
            "db_url": _engine_db.redact(yard.settings.db_url),
            "db_url_source": yard.settings.db_url_source,
            "exists": state.exists,
            "revision": state.revision,
            "head_revision": _schema_db.HEAD_REVISION,
            "current": state.is_current,
            "yard_id": state.yard_id,
            "ok": problem is None,
            "problem": problem.to_dict() if problem else None,
        }
    if json_output:
        print_json(doc)
    else:
        console().print(key_values("Registry", [(k, v) for k, v in doc.items() if k != "problem"]))
        if problem is not None:
            report_error(problem, json_mode=False)
    if problem is not None:
        raise typer.Exit(problem.exit_code)
