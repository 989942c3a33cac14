"""``runyard run``: start, finish, list, show, pin and import runs."""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from runyard import fsnames
from runyard.cli.common import (
    AfterOption,
    ColumnsOption,
    JsonOption,
    LimitOption,
    OrderByOption,
    WhereOption,
    parse_key_values,
    parse_time,
    read_json_object,
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
    remote_filters,
    remote_names,
    remote_settings,
    runs_table,
    split_columns,
)
from runyard.cli.server import client_from
from runyard.errors import Invalid, Refused
from runyard.statuses import RunLocation, RunStatus

if TYPE_CHECKING:
    from runyard import models as _models
    from runyard import query as _query
    from runyard.registry import run_import, runs
else:
    _models = lazy("runyard.models")
    _query = lazy("runyard.query")
    run_import = lazy("runyard.registry.run_import")
    runs = lazy("runyard.registry.runs")


app = typer.Typer(
    help="Runs: one execution of a plan version, and its folder.", no_args_is_help=True
)

RunIdArg = Annotated[str, typer.Argument(help="Run id.", metavar="RUN_ID")]


class FinishStatus(StrEnum):
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


def _show(run: dict[str, Any], title: str) -> None:
    """A run in its JSON form (a local model dumped, or a server's answer as it came)."""
    out = console()
    batch = run.get("archive_batch_id")
    out.print(
        key_values(
            title,
            [
                ("run_id", run["run_id"]),
                ("status", styled_status(run["status"])),
                ("plan_version_id", run.get("plan_version_id")),
                ("config_version_id", run.get("config_version_id")),
                ("scenario_id", run.get("scenario_id")),
                ("group", run.get("group")),
                ("legacy", "yes" if run.get("legacy") else "no"),
                ("location", run["location"] + (f" (batch {batch})" if batch else "")),
                ("pinned", "yes" if run.get("pinned") else "no"),
                ("started", when(run.get("started_at"))),
                ("finished", when(run.get("finished_at"))),
                ("path", run.get("path")),
                ("tags", short_json(run.get("tags"), 200)),
                ("error", run.get("error")),
                *([("created_by", run["created_by"])] if run.get("created_by") else []),
            ],
        )
    )
    if run.get("summary"):
        out.print(
            table(
                "Summary",
                ["key", "value"],
                [(k, json.dumps(v, ensure_ascii=False)) for k, v in run["summary"].items()],
            )
        )


def _emit(run: _models.Run | dict[str, Any], title: str, json_output: bool) -> None:
    """A run, local (a model) or remote (its JSON form): the same document, the same table."""
    shown = run if isinstance(run, dict) else run.model_dump(mode="json")
    if json_output:
        print_json(shown)
    else:
        _show(shown, title)


@app.command("start")
@handles_errors
def start(
    ctx: typer.Context,
    plan: Annotated[
        str | None,
        typer.Option(
            "--plan",
            help="Plan version id (required: runs are made from plans).",
            metavar="PLAN_VERSION_ID",
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            "--group", help="Group, e.g. CH01/003 (default: from group_pattern).", metavar="GROUP"
        ),
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run-id", help="Choose the id (default: a time-sortable one).", metavar="ID"
        ),
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="KEY=VALUE, repeatable.", metavar="KEY=VALUE")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Register a running run of a plan version and create its folder and run.json."""
    tags = parse_key_values(tag, "--tag", json_values=False)
    client = client_from(ctx)
    run: _models.Run | dict[str, Any]
    if client is not None:
        run = client.start_run(plan, group=group, run_id=run_id, tags=tags)
    else:
        with yard_from(ctx) as yard:
            run = runs.start_run(yard, plan, group=group, run_id=run_id, tags=tags)
    _emit(run, "Started run", json_output)
    if not json_output:
        started = run["run_id"] if isinstance(run, dict) else run.run_id
        console().print(f"Finish it with: runyard run finish {started} --status succeeded")


@app.command("finish")
@handles_errors
def finish(
    ctx: typer.Context,
    run_id: RunIdArg,
    status: Annotated[FinishStatus, typer.Option("--status", help="The final status.")],
    summary: Annotated[
        str | None,
        typer.Option(
            "--summary",
            help="A JSON object, inline or @FILE; merged into the summary.",
            metavar="JSON|@FILE",
        ),
    ] = None,
    error: Annotated[
        str | None, typer.Option("--error", help="What went wrong.", metavar="TEXT")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Finish a queued or running run; its manifest and the registry change together."""
    summary_data = read_json_object(summary, "--summary") if summary is not None else None
    client = client_from(ctx)
    run: _models.Run | dict[str, Any]
    if client is not None:
        run = client.finish_run(run_id, status.value, summary=summary_data, error=error)
    else:
        with yard_from(ctx) as yard:
            run = runs.finish_run(yard, run_id, status.value, summary=summary_data, error=error)
    _emit(run, "Finished run", json_output)


@app.command("list")
@handles_errors
def list_(
    ctx: typer.Context,
    plan: Annotated[
        str | None, typer.Option("--plan", help="Plan version id.", metavar="PLAN_VERSION_ID")
    ] = None,
    scenario: Annotated[
        str | None, typer.Option("--scenario", help="Scenario id or name.", metavar="SCENARIO")
    ] = None,
    config: Annotated[
        str | None, typer.Option("--config", help="Config version id.", metavar="CONFIG_VERSION_ID")
    ] = None,
    status: Annotated[RunStatus | None, typer.Option("--status", help="Run status.")] = None,
    group: Annotated[
        str | None, typer.Option("--group", help="Group, exactly.", metavar="GROUP")
    ] = None,
    location: Annotated[RunLocation | None, typer.Option("--location", help="Where it is.")] = None,
    legacy: Annotated[
        bool | None, typer.Option("--legacy/--no-legacy", help="Only legacy runs / only plan runs.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Started at or after (ISO date or time; UTC unless it says).",
            metavar="WHEN",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Started before (ISO date or time).", metavar="WHEN"),
    ] = None,
    where: WhereOption = None,
    order_by: OrderByOption = None,
    columns: ColumnsOption = None,
    limit: LimitOption = 50,
    after: AfterOption = None,
    json_output: JsonOption = False,
) -> None:
    """List runs with filters or a query (--where), in any order, a keyset page at a time."""
    query = _query.parse_query(where, order_by)
    conditions: dict[str, Any] = {
        "plan_version_id": plan,
        "scenario": scenario,
        "config_version_id": config,
        "status": status,
        "group": group,
        "location": location,
        "legacy": legacy,
        "started_after": parse_time(since, "--since"),
        "started_before": parse_time(until, "--until"),
    }
    client = client_from(ctx)
    if client is not None:
        answer = client.list_runs(
            **remote_filters(conditions), where=where, order_by=order_by, limit=limit, after=after
        )
        if json_output:
            print_json(answer)
            return
        page = _models.Page[_models.Run].model_validate(answer)
        settings, names = remote_settings(), remote_names(client, page.items)
    else:
        filters = runs.RunFilter(**conditions)
        with yard_from(ctx) as yard:
            page = runs.list_runs(yard, filters, limit=limit, after=after, query=query)
            settings = yard.settings
            with yard.read() as conn:
                names = runs.lineage_names(conn, page.items)
    if json_output:
        print_json(page)
        return
    out = console()
    shown = kpi_columns(settings, page.items, split_columns(columns), query)
    out.print(runs_table(settings, page.items, shown, names))
    next_page_hint(out, page.next_cursor, "runyard run list")


@app.command("show")
@handles_errors
def show(ctx: typer.Context, run_id: RunIdArg, json_output: JsonOption = False) -> None:
    """Show one run: lineage, status, summary, tags, folder."""
    client = client_from(ctx)
    run: _models.Run | dict[str, Any]
    if client is not None:
        run = client.get_run(run_id)
    else:
        with yard_from(ctx) as yard:
            run = runs.get_run(yard, run_id)
    _emit(run, "Run", json_output)


@app.command("pin")
@handles_errors
def pin(ctx: typer.Context, run_id: RunIdArg, json_output: JsonOption = False) -> None:
    """Pin a run: archiving will always skip it."""
    client = client_from(ctx)
    run: _models.Run | dict[str, Any]
    if client is not None:
        run = client.set_pinned(run_id, True)
    else:
        with yard_from(ctx) as yard:
            run = runs.set_pinned(yard, run_id, True)
    _emit(run, "Pinned run", json_output)


@app.command("unpin")
@handles_errors
def unpin(ctx: typer.Context, run_id: RunIdArg, json_output: JsonOption = False) -> None:
    """Unpin a run."""
    client = client_from(ctx)
    run: _models.Run | dict[str, Any]
    if client is not None:
        run = client.set_pinned(run_id, False)
    else:
        with yard_from(ctx) as yard:
            run = runs.set_pinned(yard, run_id, False)
    _emit(run, "Unpinned run", json_output)


@app.command("import")
@handles_errors
def import_(
    ctx: typer.Context,
    paths: Annotated[
        list[str] | None, typer.Argument(help="Run folders inside the runs root.", metavar="PATH")
    ] = None,
    all_: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Every folder in the runs root (those "
            "already registered are reported and left as they "
            "are).",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Register existing run folders: from run.json, or as legacy runs when there is none.

    Exits 5 when any folder could not be imported (the others are imported).
    """
    if not paths and not all_:
        raise typer.BadParameter("give the run folders to import, or --all", param_hint="PATH")
    with yard_from(ctx) as yard:
        result = run_import.import_runs(yard, [Path(p) for p in paths or []], scan_all=all_)
    if json_output:
        print_json(result)
    else:
        out = console()
        out.print(
            table(
                None,
                ["run_id", "outcome", "path", "message"],
                [(o.run_id, o.outcome, o.path, o.message) for o in result.items],
            )
        )
        out.print(
            f"imported {result.imported}, legacy {result.legacy}, already registered "
            f"{result.already_registered}, errors {result.errors}"
        )
    if result.errors:
        raise typer.Exit(Invalid.exit_code)


@app.command("upload")
@handles_errors
def upload(
    ctx: typer.Context,
    run_id: RunIdArg,
    paths: Annotated[
        list[str], typer.Argument(help="Files or folders to put into the run.", metavar="PATH")
    ],
    dest: Annotated[
        str | None,
        typer.Option(
            "--dest",
            help="Where in the run's folder (a relative path; default: each source's name). "
            "With several PATHs, a folder they go into.",
            metavar="D",
        ),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace what is there (a queued or running run).")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Put files or folders into a run's folder; links are copied as links, never followed.

    Exits 4 when a destination exists (unless --replace); the sources before it are in.
    """
    targets = [
        dest if dest is not None and len(paths) == 1 else _joined(dest, path) for path in paths
    ]
    client = client_from(ctx)
    done: list[dict[str, str]] = []
    if client is not None:
        from runyard.remote.uploads import upload as remote_upload

        for path, target in zip(paths, targets, strict=True):
            placed = remote_upload(client, run_id, path, target, replace)
            done.append({"source": path, "dest": str(placed)})
    else:
        from runyard.uploads import upload as local_upload

        with yard_from(ctx) as yard:
            run = runs.get_run(yard, run_id)
            _check_writable(run, replace)
            folder = Path(run.path)
            for path, target in zip(paths, targets, strict=True):
                placed_path = local_upload(folder, path, target, replace)
                done.append({"source": path, "dest": placed_path.relative_to(folder).as_posix()})
    if json_output:
        print_json({"run_id": run_id, "uploaded": done})
        return
    out = console()
    for item in done:
        out.print(Text(f"uploaded {fsnames.shown(item['source'])} → {fsnames.shown(item['dest'])}"))


def _joined(folder: str | None, source: str) -> str | None:
    """The destination of ``source`` inside ``folder`` (None: the source's own name)."""
    if folder is None:
        return None
    name = os.path.basename(os.path.normpath(source))
    return f"{folder.rstrip('/')}/{name}"


def _check_writable(run: _models.Run, replace: bool) -> None:
    """A run's folder takes files while it is in the runs root; replacing only while the
    run is queued or running (as the server's PUT /runs/{id}/files)."""
    if run.location != RunLocation.active:
        raise Refused(
            f"run {run.run_id} is {run.location.value}; its folder is not in the runs root",
            hint=f"restore it first: runyard restore --run-id {run.run_id} --run",
        )
    if replace and run.status not in (RunStatus.queued, RunStatus.running):
        raise Refused(
            f"run {run.run_id} is {run.status.value}: files of a finished run are not replaced",
            hint="upload under another name (--dest)",
        )
