"""``runyard backup`` and ``runyard restore-db``: the registry's backups."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from runyard.cli.common import JsonOption, check_range, yard_from
from runyard.cli.lazy import lazy
from runyard.cli.output import (
    console,
    err_console,
    handles_errors,
    key_values,
    print_json,
    report_error,
    table,
    when,
)
from runyard.errors import Invalid, Refused, RegistryStateError
from runyard.limits import MAX_COUNT

if TYPE_CHECKING:
    from runyard.durability import backup as _backup_durability
    from runyard.durability import restore_db as _restore_db_durability
else:
    _backup_durability = lazy("runyard.durability.backup")
    _restore_db_durability = lazy("runyard.durability.restore_db")


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore-db")(restore_db)


@handles_errors
def backup(
    ctx: typer.Context,
    keep: Annotated[
        int | None,
        typer.Option(
            "--keep",
            help="After a verified backup, delete the oldest verified ones beyond N (N >= 1).",
            metavar="N",
        ),
    ] = None,
    sql: Annotated[
        bool, typer.Option("--sql", help="SQLite: also write a gzip SQL dump (.sql.gz).")
    ] = False,
    list_: Annotated[
        bool, typer.Option("--list", help="List the backups, newest first; back up nothing.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Back up the registry into <yard>/backups and verify the copy (exit 6 if it fails)."""
    check_range(keep, "--keep", 1, MAX_COUNT)
    if list_:
        if keep is not None or sql:
            raise Invalid("--list only lists the backups: it takes no --keep or --sql")
        with yard_from(ctx, check_schema=False) as yard:
            entries = _backup_durability.list_backups(yard.settings)
        if json_output:
            print_json(entries)
            return
        rows = [
            (
                when(e.created_at),
                _size(e.bytes),
                "yes" if e.verified else Text("NO", style="red"),
                e.path,
                e.problem,
            )
            for e in entries
        ]
        console().print(table("Backups", ["time", "size", "verified", "path", "problem"], rows))
        return
    with yard_from(ctx, check_schema=False) as yard:
        report = _backup_durability.run_backup(yard, sql=sql, keep=keep)
    error = None
    if not report.backup.verified:
        error = RegistryStateError(
            f"the backup {report.backup.path} failed verification: "
            f"{'; '.join(report.backup.problems)}. It is kept for inspection",
            hint="run `runyard db status`, then try again; the previous backups are untouched",
        )
    if json_output:
        doc: dict[str, Any] = report.model_dump(mode="json")
        if error is not None:
            doc["error"] = error.to_dict()
        print_json(doc)
    else:
        _print_backup(report)
        if error is not None:
            report_error(error, json_mode=False)
    if error is not None:
        raise typer.Exit(error.exit_code)


def _print_backup(report: _backup_durability.BackupReport) -> None:
    out = console()
    record = report.backup
    pairs: list[tuple[str, Any]] = [
        ("path", record.path),
        ("engine", record.engine),
        ("size", _size(record.bytes)),
        ("sha256", record.sha256),
        ("took", f"{record.seconds:.2f} s"),
        ("verified", "yes" if record.verified else Text("NO", style="bold red")),
    ]
    if record.sql_dump:
        pairs.append(("sql dump", record.sql_dump))
    out.print(key_values("Backup", pairs))
    out.print(_checks_table(record.checks))
    if report.prune is not None:
        for path in report.prune.deleted:
            out.print(f"deleted (beyond --keep {report.prune.keep}): {path}")
        for path in report.prune.kept_failed:
            out.print(Text(f"failed verification, kept: {path}", style="yellow"))


def _checks_table(checks: list[_backup_durability.Check]) -> Any:
    return table(
        "Checks",
        ["check", "ok", "detail"],
        [(c.name, "ok" if c.ok else Text("FAILED", style="red"), c.detail) for c in checks],
    )


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


@handles_errors
def restore_db(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The backup to restore.", metavar="FILE")],
    yes: Annotated[bool, typer.Option("--yes", help="Don't ask before replacing.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Replace the SQLite registry with a verified backup; the current one is kept beside it."""
    with yard_from(ctx, check_schema=False) as yard:
        settings = yard.settings
    plan = _restore_db_durability.plan_restore(settings, file)
    if not yes:
        if not sys.stdin.isatty():
            raise Refused(
                "restore-db replaces the registry: it needs --yes when not interactive",
                hint="add --yes",
            )
        # With --json, stdout is kept for the one document: ask on stderr.
        _print_plan(plan, err_console() if json_output else console())
        if not typer.confirm(
            f"Replace the registry {plan.registry} with this backup?", err=json_output
        ):
            raise typer.Exit(1)
    report = _restore_db_durability.apply_restore(settings, plan)
    if json_output:
        print_json(report)
        return
    _print_restore(report)


def _print_plan(plan: _restore_db_durability.RestorePlan, out: Console) -> None:
    out.print(
        key_values(
            "Restore",
            [
                ("file", plan.file),
                ("into", plan.registry),
                ("schema", plan.revision + (" (will be migrated)" if plan.migrate else "")),
                ("runs", plan.counts.get("runs")),
            ],
        )
    )
    out.print(_checks_table(plan.checks))


def _print_restore(report: _restore_db_durability.RestoreReport) -> None:
    out = console()
    out.print(
        key_values(
            "Restored",
            [
                ("file", report.file),
                ("into", report.registry),
                ("previous registry kept", report.pre_restore or report.pre_restore_note),
                (
                    "schema",
                    f"migrated {report.from_revision} -> {report.to_revision}"
                    if report.migrated
                    else report.to_revision,
                ),
                ("runs", report.counts.get("runs")),
            ],
        )
    )
    if report.pre_restore_note and report.pre_restore:
        out.print(Text(report.pre_restore_note, style="yellow"))
    check = report.check
    if not check.available or check.error:
        out.print(Text(f"check not run: {check.error}", style="yellow"))
        return
    if check.ok and not check.by_kind:
        out.print("Registry and run folders agree.")
        return
    out.print(
        "Registry and run folders differ: "
        + ", ".join(f"{kind} {n}" for kind, n in check.by_kind.items())
    )
    out.print(
        table(
            "Differences",
            ["kind", "run_id", "path", "detail"],
            [(m["kind"], m["run_id"], m["path"], m["detail"]) for m in check.mismatches],
        )
    )
    if check.hint:
        out.print(Text(f"hint: {check.hint}", style="yellow"))
