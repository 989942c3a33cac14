"""``runyard rebuild``: the registry recreated from the disk."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from runyard.cli.common import JsonOption, yard_from
from runyard.cli.lazy import lazy
from runyard.cli.output import console, handles_errors, print_json, table
from runyard.errors import Invalid

if TYPE_CHECKING:
    from runyard.db import schema as _schema_db
    from runyard.durability import rebuild as _rebuild_durability
    from runyard.durability import rebuild_store as _rebuild_store
else:
    _schema_db = lazy("runyard.db.schema")
    _rebuild_durability = lazy("runyard.durability.rebuild")
    _rebuild_store = lazy("runyard.durability.rebuild_store")


@handles_errors
def rebuild_command(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be recreated; change nothing.")
    ] = False,
    from_store: Annotated[
        str | None,
        typer.Option(
            "--from-store",
            help="First copy the archive reports of s3://BUCKET/PREFIX into the archive "
            "root (never over a file that is there), for a yard whose archive root was lost.",
            metavar="URL",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Recreate the registry from the disk: lineage files, run folders (runs root and every
    archive batch), the reports of batches in an object store, and aggregates. Only what is
    missing is added, and runs found elsewhere than the registry says are relocated;
    running it twice changes nothing."""
    if from_store is not None and dry_run:
        raise Invalid(
            "--from-store writes the reports it finds into the archive root: not a dry run",
            hint="run it without --dry-run (it never overwrites a report that is there)",
        )
    with yard_from(ctx, check_schema=False) as yard:
        fetched = None
        if from_store is not None:
            fetched = _rebuild_store.fetch_reports(yard.settings, from_store)
        state = _schema_db.inspect_registry(yard.engine)
        empty = False
        if dry_run:
            empty = state.revision is None  # nothing to read yet: all of it would be new
            if not empty:
                _schema_db.verify_registry(yard.engine, yard.settings.yard_id)
        else:
            _schema_db.upgrade_registry(
                yard.engine, yard.settings.yard_id
            )  # creates a lost registry
        report = _rebuild_durability.rebuild(yard, dry_run=dry_run, registry_empty=empty)
        if fetched is not None:
            report.reports_fetched = fetched.copied
    if json_output:
        print_json(report.to_dict())
        return
    _print(report)


def _print(report: _rebuild_durability.RebuildReport) -> None:
    out = console()
    if report.reports_fetched:
        out.print(f"{len(report.reports_fetched)} archive reports copied from the store.")
    verb = "would add" if report.dry_run else "added"
    out.print(
        table(
            None,
            ["table", verb],
            [(name, count) for name, count in report.inserted.items()],
        )
    )
    moved = "would relocate" if report.dry_run else "relocated"
    out.print(
        f"{report.runs_seen} run folders seen; {report.legacy_runs} of the new runs are legacy "
        f"(no usable run.json); {moved} {report.runs_relocated} known runs to where they are."
    )
    for problem in report.problems:
        out.print(Text(f"problem: {problem}", style="yellow"))
    if not report.changed:
        out.print("Nothing to rebuild: the registry already holds everything on disk.")
    elif report.dry_run:
        out.print("Dry run: nothing was changed. Run it without --dry-run to rebuild.")


def register(app: typer.Typer) -> None:
    app.command("rebuild")(rebuild_command)
