"""``runyard archive``, ``restore``, ``recover`` and ``log``: the lifecycle of run folders.

Archive and restore are dry runs unless ``--run`` is given; the dry run prints what
would happen and writes its report into the logs folder.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

import typer
from rich.text import Text

from runyard.cli.common import (
    AfterOption,
    JsonOption,
    LimitOption,
    check_days,
    check_range,
    yard_from,
)
from runyard.cli.lazy import lazy
from runyard.cli.output import console, err_console, handles_errors, print_json, table, when
from runyard.cli.server import client_from, local_only
from runyard.errors import Invalid, Refused
from runyard.limits import MAX_KEEP_LAST_RUNS, MAX_KEEP_RECENT_MINUTES

if TYPE_CHECKING:
    from runyard.lifecycle import actions as lifecycle_actions
    from runyard.lifecycle import archive as archive_core
    from runyard.lifecycle import guards as _guards_lifecycle
    from runyard.lifecycle import purge as purge_core
    from runyard.lifecycle import recover as recover_core
    from runyard.lifecycle import report as _report_lifecycle
    from runyard.lifecycle import restore as restore_core
    from runyard.lifecycle import retention as retention_core
    from runyard.registry import lifecycle as lifecycle_registry
    from runyard.remote.client import Client
else:
    _guards_lifecycle = lazy("runyard.lifecycle.guards")
    _report_lifecycle = lazy("runyard.lifecycle.report")
    archive_core = lazy("runyard.lifecycle.archive")
    lifecycle_actions = lazy("runyard.lifecycle.actions")
    lifecycle_registry = lazy("runyard.registry.lifecycle")
    purge_core = lazy("runyard.lifecycle.purge")
    recover_core = lazy("runyard.lifecycle.recover")
    restore_core = lazy("runyard.lifecycle.restore")
    retention_core = lazy("runyard.lifecycle.retention")


def register(app: typer.Typer) -> None:
    app.command("archive")(archive)
    app.command("restore")(restore)
    app.command("recover")(recover)
    app.command("retention")(retention)
    app.command("purge")(purge)
    app.command("log")(log)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _exit_for_unhandled_runs(report: _report_lifecycle.ArchiveReport, json_output: bool) -> None:
    """Exit 4 when a run failed to move or was skipped for a problem (not for a guard):
    the others were archived, and a script or cron job learns that one needs a person."""
    s = report.summary
    if not (s.failed or s.problems):
        return
    if not json_output:
        err_console().print(
            Text(
                f"error: {s.failed} run(s) failed and {s.problems} could not be handled; "
                "the others were archived (see the report)",
                style="red",
            )
        )
    raise typer.Exit(Refused.exit_code)


def _print_archive(report: _report_lifecycle.ArchiveReport, dry_run: bool) -> None:
    out = console()
    rows: list[tuple[object, ...]] = []
    for e in report.entries:
        action = "archive" if dry_run else e.status
        rows.append((e.run_id, e.group, Text(action, style="green"), "", _size(e.bytes)))
    for skip in report.skips:
        reasons = "; ".join(r.message for r in skip.reasons)
        rows.append(
            (skip.run_id, skip.group, Text("skip", style="yellow"), reasons, _size(skip.bytes))
        )
    out.print(table(None, ["run_id", "group", "action", "reason", "size"], rows))
    for problem in report.problems:
        out.print(Text(f"reference problem: {problem}", style="red"))
    s = report.summary
    if not dry_run and report.batch_id is None:
        out.print(
            f"Nothing to archive: {s.skipped} skipped, of {s.candidates} candidates; "
            "no batch was made."
        )
    elif dry_run:
        out.print(
            f"dry run: {s.to_archive} to archive ({_size(s.bytes_to_archive)}), "
            f"{s.skipped} skipped, of {s.candidates} candidates. Nothing was moved."
        )
    else:
        out.print(
            f"batch {report.batch_id}: {s.moved} moved ({_size(s.bytes_moved)}), "
            f"{s.failed} failed, {s.skipped} skipped"
        )
    if report.store is not None and (dry_run or report.batch_id is not None):
        where = f"{report.store}/{report.batch_id}" if report.batch_id else report.store
        verb = "would go to" if dry_run else "are in"
        out.print(f"the runs {verb} {where}/ (one tar object per run, checked from the store)")


@handles_errors
def archive(
    ctx: typer.Context,
    group: Annotated[
        list[str] | None,
        typer.Option("--group", help="Archive in this group (repeatable).", metavar="GROUP"),
    ] = None,
    run_id: Annotated[
        list[str] | None,
        typer.Option("--run-id", help="Archive this run (repeatable).", metavar="ID"),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Consider every active run.")] = False,
    unscoped_only: Annotated[
        bool, typer.Option("--unscoped-only", help="Only runs with no group.")
    ] = False,
    legacy: Annotated[
        bool, typer.Option("--legacy", help="Only run ids matching legacy_patterns.")
    ] = False,
    older_than: Annotated[
        float | None,
        typer.Option("--older-than", help="Only runs started more than DAYS ago.", metavar="DAYS"),
    ] = None,
    keep_recent_minutes: Annotated[
        int | None,
        typer.Option(
            "--keep-recent-minutes",
            help="Skip runs changed this recently (default: runyard.toml).",
            metavar="N",
        ),
    ] = None,
    keep_last_runs: Annotated[
        int | None,
        typer.Option(
            "--keep-last-runs",
            help="Keep the newest N runs of each group (default: runyard.toml).",
            metavar="N",
        ),
    ] = None,
    run: Annotated[bool, typer.Option("--run", help="Move for real (default: dry run).")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Don't ask before --run --all.")] = False,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Why, kept in the report and log.", metavar="TEXT"),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="This batch goes to an object store, s3://BUCKET/PREFIX (default: "
            "[archive] store in runyard.toml, else the archive root).",
            metavar="URL",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Archive run folders: every guard applied, dry run unless --run."""
    check_days(older_than, "--older-than")
    check_range(keep_recent_minutes, "--keep-recent-minutes", 0, MAX_KEEP_RECENT_MINUTES)
    check_range(keep_last_runs, "--keep-last-runs", 0, MAX_KEEP_LAST_RUNS)
    if run and all_ and not yes:
        if not sys.stdin.isatty():
            raise Refused(
                "--run --all needs --yes when not run interactively",
                hint="add --yes, after checking the dry run",
            )
        if not typer.confirm("Archive every eligible run of the yard?"):
            raise typer.Exit(1)
    client = client_from(ctx)
    recovered: list[str] = []
    if client is not None:
        body = {
            "groups": group or [],
            "run_ids": run_id or [],
            "all": all_,
            "unscoped_only": unscoped_only,
            "legacy": legacy,
            "older_than_days": older_than,
            "keep_recent_minutes": keep_recent_minutes,
            "keep_last_runs": keep_last_runs,
            "reason": reason,
            "run": run,
        }
        if to is not None:
            raise Invalid(
                "--to is not taken with --server: the server archives to its own [archive] store",
                hint="set [archive] store in the server's runyard.toml",
            )
        answer = client.post("archives", {k: v for k, v in body.items() if v is not None})
        report = _report_lifecycle.ArchiveReport.model_validate(answer["report"])
        path: object = answer["report_path"]
        recovered = list(answer.get("recovered") or [])
    else:
        from runyard.store.url import parse_store_url  # no boto3: only checks the URL

        scope = _guards_lifecycle.Scope(
            groups=group or (),
            run_ids=run_id or (),
            all=all_,
            unscoped_only=unscoped_only,
            legacy=legacy,
            older_than_days=older_than,
        )
        options = archive_core.ArchiveOptions(
            scope=scope,
            keep_recent_minutes=keep_recent_minutes,
            keep_last_runs=keep_last_runs,
            reason=reason,
            command=["runyard", *sys.argv[1:]],
            store=str(parse_store_url(to)) if to is not None else None,
        )
        with yard_from(ctx) as yard:
            if not run:
                plan = archive_core.plan_archive(yard, options)
                report, path = plan.report, archive_core.write_dry_run(yard, plan)
            else:
                result = archive_core.run_archive(yard, options)
                report, path, recovered = result.report, result.report_path, result.recovered
    if not run:
        if json_output:
            print_json({**report.model_dump(mode="json"), "report_path": str(path)})
            return
        _print_archive(report, dry_run=True)
        console().print(f"dry-run report: {path}")
        console().print("Add --run to move them.")
        return
    if json_output:
        print_json(
            {
                **report.model_dump(mode="json"),
                "report_path": str(path) if path else None,
                "recovered": recovered,
            }
        )
    else:
        for line in recovered:
            console().print(Text(f"recovered first: {line}", style="yellow"))
        _print_archive(report, dry_run=False)
        if path is not None:
            console().print(f"archive report: {path}")
    _exit_for_unhandled_runs(report, json_output)


def _print_restore(report: _report_lifecycle.RestoreReport, dry_run: bool) -> None:
    out = console()
    out.print(
        table(
            None,
            ["run_id", "status", "from", "to", "note"],
            [
                (
                    e.run_id,
                    ("restore" if dry_run and e.status == "pending" else e.status),
                    e.src,
                    e.dst,
                    e.error,
                )
                for e in report.entries
            ],
        )
    )


@handles_errors
def restore(
    ctx: typer.Context,
    batch_arg: Annotated[
        str | None,
        typer.Argument(
            help="The archive batch to restore (e.g. 20261207T020402Z); or use --batch, "
            "--report or --run-id.",
            metavar="[BATCH_ID]",
            show_default=False,
        ),
    ] = None,
    batch: Annotated[
        str | None,
        typer.Option("--batch", help="The archive batch to restore, by its id.", metavar="ID"),
    ] = None,
    report: Annotated[
        str | None,
        typer.Option(
            "--report", help="An archive_report.json (or its batch folder).", metavar="PATH"
        ),
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run-id",
            help="Restore this one archived run; its batch is the one the registry records for it.",
            metavar="RUN_ID",
        ),
    ] = None,
    only_run_id: Annotated[
        list[str] | None,
        typer.Option(
            "--only-run-id",
            help="With a batch or --report: restore only this run (repeatable).",
            metavar="ID",
        ),
    ] = None,
    run: Annotated[
        bool, typer.Option("--run", help="Move back for real (default: dry run).")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Restore archived runs exactly where they were; never overwrites. Name what to
    restore one way: a batch id (argument or --batch), --report PATH, or --run-id RUN."""
    sources = [
        name
        for name, value in (
            ("BATCH_ID", batch_arg),
            ("--batch", batch),
            ("--report", report),
            ("--run-id", run_id),
        )
        if value is not None
    ]
    if len(sources) != 1:
        raise typer.BadParameter(
            "name what to restore one way: a batch id (BATCH_ID or --batch ID), "
            "--report PATH, or --run-id RUN_ID"
            + (f" (got {' and '.join(sources)})" if sources else ""),
            param_hint="BATCH_ID",
        )
    if run_id is not None and only_run_id:
        raise typer.BadParameter(
            "--run-id restores one run by itself; --only-run-id narrows a batch or a report",
            param_hint="--only-run-id",
        )
    only = only_run_id or ()
    command = ["runyard", *sys.argv[1:]]
    client = client_from(ctx)
    if client is not None:
        outcome = _restore_remote(client, batch_arg or batch, report, run_id, only, run)
    else:
        outcome = _restore_local(ctx, batch_arg or batch, report, run_id, only, run, command)
    result = outcome.report
    if outcome.dry_run:
        if json_output:
            print_json({**result.model_dump(mode="json"), "report_path": str(outcome.report_path)})
            return
        _print_restore(result, dry_run=True)
        pending = sum(1 for e in result.entries if e.status == "pending")
        lost = f", {result.failed} cannot be restored (see each error)" if result.failed else ""
        console().print(
            f"dry run: {pending} to restore, {result.conflicts} conflicts{lost}. "
            f"Report: {outcome.report_path}. Add --run to restore."
        )
        return
    if json_output:
        print_json(
            {
                **result.model_dump(mode="json"),
                "report_path": str(outcome.report_path),
                "recovered": outcome.recovered,
            }
        )
    else:
        for line in outcome.recovered:
            console().print(Text(f"recovered first: {line}", style="yellow"))
        _print_restore(result, dry_run=False)
        console().print(
            f"{result.restored} restored, {result.conflicts} "
            f"conflicts, {result.failed} failed. Report: "
            f"{outcome.report_path}"
        )
    if result.failed or result.conflicts:
        raise typer.Exit(Refused.exit_code)


def _restore_local(
    ctx: typer.Context,
    chosen: str | None,
    report: str | None,
    run_id: str | None,
    only: Sequence[str],
    run: bool,
    command: list[str],
) -> lifecycle_actions.RestoreOutcome:
    with yard_from(ctx) as yard:
        if run_id is not None:
            return lifecycle_actions.restore_run(yard, run_id, run=run, command=command)
        if report is None:
            assert chosen is not None
            try:
                return lifecycle_actions.restore(yard, chosen, only, run=run, command=command)
            except Invalid as exc:
                if os.path.exists(chosen):  # a report or batch folder given as a batch id
                    exc.hint = f"to restore from a report or a batch folder: --report {chosen}"
                raise
        if not run:
            plan = restore_core.plan_restore(yard, Path(report), only)
            path = restore_core.write_restore_dry_run(yard, plan)
            return lifecycle_actions.RestoreOutcome(plan.report, path, True, [])
        done = restore_core.run_restore(yard, Path(report), only, command)
        return lifecycle_actions.RestoreOutcome(
            done.report, done.report_path, False, done.recovered
        )


def _restore_remote(
    client: Client,
    chosen: str | None,
    report: str | None,
    run_id: str | None,
    only: Sequence[str],
    run: bool,
) -> lifecycle_actions.RestoreOutcome:
    """The server's restore: of a batch or of one run (a report file is the yard's own)."""
    if report is not None:
        raise local_only("restore --report")
    if run_id is not None:
        answer = client.post(f"runs/{quote(run_id, safe='')}/restore", {"run": run})
    else:
        assert chosen is not None
        body = {"run_ids": list(only), "run": run}
        answer = client.post(f"archives/{quote(chosen, safe='')}/restore", body)
    return lifecycle_actions.RestoreOutcome(
        _report_lifecycle.RestoreReport.model_validate(answer["report"]),
        Path(answer["report_path"]),
        answer["dry_run"],
        list(answer.get("recovered") or []),
    )


@handles_errors
def recover(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Finish archives and restores that were interrupted; alarm on a run found nowhere."""
    with yard_from(ctx) as yard:
        result = recover_core.recover(yard, ["runyard", *sys.argv[1:]])
    if json_output:
        print_json(
            {
                "settled": result.settled,
                "alarms": result.alarms,
                "removed_temp_files": result.removed_temp_files,
            }
        )
    else:
        out = console()
        for line in result.settled:
            out.print(line)
        for name in result.removed_temp_files:
            out.print(f"removed the leftover temporary file {name}")
        for line in result.alarms:
            out.print(Text(f"ALARM: {line}", style="bold red"))
        if not (result.settled or result.alarms or result.removed_temp_files):
            out.print("Nothing to recover.")
    if result.alarms:
        raise typer.Exit(Refused.exit_code)


@handles_errors
def retention(
    ctx: typer.Context,
    run: Annotated[
        bool, typer.Option("--run", help="Archive for real (default: dry run).")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Archive the oldest eligible runs above the cap on active runs (never deletes)."""
    command = ["runyard", *sys.argv[1:]]
    with yard_from(ctx) as yard:
        if run:
            done = retention_core.run_retention(yard, command)
            plan, result, recovered = done.plan, done.archived, done.recovered
        else:
            plan, result, recovered = retention_core.plan_retention(yard, command), None, []
        head = {"cap": plan.cap, "active": plan.active, "excess": plan.excess}
        if plan.excess == 0:
            if json_output:
                print_json({**head, "entries": [], "report_path": None, "recovered": recovered})
            else:
                for line in recovered:
                    console().print(Text(f"recovered first: {line}", style="yellow"))
                console().print(f"{plan.active} active runs, cap {plan.cap}: nothing to do.")
            return
        if result is None:
            dry = archive_core.plan_archive(yard, plan.options)
            path = archive_core.write_dry_run(yard, dry)
            if json_output:
                print_json({**head, **dry.report.model_dump(mode="json"), "report_path": str(path)})
                return
            console().print(f"{plan.active} active runs, cap {plan.cap}: {plan.excess} over.")
            _print_archive(dry.report, dry_run=True)
            console().print(f"dry-run report: {path}. Add --run to archive them.")
            return
    still_over = plan.excess - result.report.summary.moved
    if json_output:
        print_json(
            {
                **head,
                **result.report.model_dump(mode="json"),
                "report_path": str(result.report_path) if result.report_path else None,
                "recovered": recovered,
                "still_over": still_over,
            }
        )
    else:
        for line in recovered:
            console().print(Text(f"recovered first: {line}", style="yellow"))
        console().print(f"{plan.active} active runs, cap {plan.cap}: {plan.excess} over.")
        _print_archive(result.report, dry_run=False)
        if result.report_path is not None:
            console().print(f"archive report: {result.report_path}")
    if still_over > 0 and not json_output:
        console().print(
            Text(
                f"warning: still {still_over} over the cap: the guards keep the other runs",
                style="yellow",
            )
        )
    _exit_for_unhandled_runs(result.report, json_output)


@handles_errors
def purge(
    ctx: typer.Context,
    older_than: Annotated[
        float,
        typer.Option("--older-than", help="Batches archived more than DAYS ago.", metavar="DAYS"),
    ],
    run: Annotated[bool, typer.Option("--run", help="Delete for real (default: dry run).")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Don't ask before deleting.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Delete archived runs of old batches (never pinned ones); dry run unless --run."""
    check_days(older_than, "--older-than")
    command = ["runyard", *sys.argv[1:]]
    with yard_from(ctx) as yard:
        if not run:
            report = purge_core.plan_purge(yard, older_than, command)
            path = purge_core.write_purge_dry_run(yard, report)
            if json_output:
                print_json({**report.model_dump(mode="json"), "report_path": str(path)})
                return
            _print_purge(report, dry_run=True)
            console().print(f"dry-run report: {path}. Add --run to delete.")
            return
        if not yes:
            if not sys.stdin.isatty():
                raise Refused("purge --run deletes runs: it needs --yes when not interactive")
            _print_purge(purge_core.plan_purge(yard, older_than, command), dry_run=True)
            if not typer.confirm("Delete these archived runs for good?"):
                raise typer.Exit(1)
        result = purge_core.run_purge(yard, older_than, command)
    if json_output:
        print_json(
            {
                **result.report.model_dump(mode="json"),
                "report_path": str(result.report_path),
                "recovered": result.recovered,
            }
        )
    else:
        for line in result.recovered:
            console().print(Text(f"recovered first: {line}", style="yellow"))
        _print_purge(result.report, dry_run=False)
        console().print(f"purge report: {result.report_path}")
    if result.report.status == "failed":
        raise typer.Exit(Refused.exit_code)


def _print_purge(report: purge_core.PurgeReport, dry_run: bool) -> None:
    out = console()
    out.print(
        table(
            None,
            ["run_id", "batch", "action", "note", "size"],
            [
                (
                    e.run_id,
                    e.batch_id,
                    "delete" if dry_run and e.status == "pending" else e.status,
                    # A run in an object store: the note names the object it deletes.
                    e.reason or (e.path if e.store else None),
                    _size(e.bytes),
                )
                for e in report.entries
            ],
        )
    )
    for files in report.batch_files:
        state = "to delete" if dry_run and files.status == "pending" else files.status
        note = f" ({files.reason})" if files.reason else ""
        out.print(
            f"batch {files.batch_id}, wholly purged: its {len(files.keys)} report and log "
            f"copies in {files.store} {state}{note}, {_size(files.bytes)}"
        )
    todo = [e for e in report.entries if e.status in ("pending", "deleted")]
    verb = "to delete" if dry_run else "deleted"
    size = _size(sum(e.bytes for e in todo))
    out.print(
        f"{len(todo)} {verb} ({size}), {report.skipped} kept, in {len(report.batches)} batches"
    )


@handles_errors
def log(
    ctx: typer.Context,
    limit: LimitOption = 50,
    after: AfterOption = None,
    json_output: JsonOption = False,
) -> None:
    """The execution log: every archive, restore, recover, retention and purge."""
    with yard_from(ctx) as yard, yard.read() as conn:
        page = lifecycle_registry.list_executions(conn, limit=limit, after=after)
    if json_output:
        print_json(page)
        return
    console().print(
        table(
            None,
            ["finished", "kind", "status", "batch", "moved", "skipped", "failed", "size", "reason"],
            [
                (
                    when(e.finished_at),
                    e.kind,
                    e.status,
                    e.batch_id,
                    e.moved,
                    e.skipped,
                    e.failed,
                    _size(e.bytes),
                    e.reason,
                )
                for e in page.items
            ],
        )
    )
