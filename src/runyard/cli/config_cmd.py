"""``runyard config``: canonical config versions (content-addressed JSON snapshots)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.syntax import Syntax
from rich.text import Text

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
    from runyard.registry import configs, lineage_files
else:
    _models = lazy("runyard.models")
    configs = lazy("runyard.registry.configs")
    lineage_files = lazy("runyard.registry.lineage_files")


app = typer.Typer(
    help="Config versions: immutable canonical JSON snapshots; the id is the content.",
    no_args_is_help=True,
)

IdArg = Annotated[str, typer.Argument(help="Config version id (cfg-…).", metavar="ID")]


def _show(config: _models.ConfigVersion, title: str) -> None:
    out = console()
    out.print(
        key_values(
            title,
            [
                ("config_version_id", config.config_version_id),
                ("name", config.name),
                ("created", when(config.created_at)),
                ("sha256", config.digest),
            ],
        )
    )
    out.print(
        Syntax(
            json.dumps(config.content, indent=2, ensure_ascii=False),
            "json",
            theme="ansi_dark",
            background_color="default",
        )
    )


@app.command("add")
@handles_errors
def add(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(help="A JSON file with one object ('-' reads stdin).", metavar="FILE.json"),
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="A label for people.", metavar="NAME")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Store a config snapshot; identical content gives back the existing id."""
    text = read_text_file(file)
    source = "standard input" if file == "-" else file
    client = client_from(ctx)
    if client is not None:
        answer = client.add_config(json_object(text, source), name=name)
        added = _models.ConfigAdded.model_validate(answer)
    else:
        with yard_from(ctx) as yard:
            with yard.write() as conn:
                added = configs.add_config(conn, text, name=name, source=source)
            with yard.read() as conn:
                lineage_files.write_config(conn, yard.settings, added.config_version_id)
    if json_output:
        print_json(added)
        return
    if added.created:
        _show(added, "Added config version")
    else:
        console().print(
            Text(
                f"Same content as existing config version "
                f"{added.config_version_id}; nothing added.",
                style="yellow",
            )
        )


@app.command("list")
@handles_errors
def list_(
    ctx: typer.Context,
    limit: LimitOption = 100,
    after: AfterOption = None,
    json_output: JsonOption = False,
) -> None:
    """List config versions, newest first."""
    with yard_from(ctx) as yard, yard.read() as conn:
        page = configs.list_configs(conn, limit=limit, after=after)
    if json_output:
        print_json(page)
        return
    out = console()
    out.print(
        table(
            None,
            ["config_version_id", "name", "created", "keys"],
            [
                (c.config_version_id, c.name, when(c.created_at), ", ".join(list(c.content)[:6]))
                for c in page.items
            ],
        )
    )
    next_page_hint(out, page.next_cursor, "runyard config list")


@app.command("show")
@handles_errors
def show(ctx: typer.Context, config_id: IdArg, json_output: JsonOption = False) -> None:
    """Show a config version and its JSON."""
    with yard_from(ctx) as yard, yard.read() as conn:
        config = configs.get_config(conn, config_id)
    if json_output:
        print_json(config)
    else:
        _show(config, "Config version")


@app.command("diff")
@handles_errors
def diff(
    ctx: typer.Context,
    id_a: Annotated[str, typer.Argument(help="The older config version.", metavar="ID1")],
    id_b: Annotated[str, typer.Argument(help="The newer config version.", metavar="ID2")],
    json_output: JsonOption = False,
) -> None:
    """Show what changed between two config versions."""
    with yard_from(ctx) as yard, yard.read() as conn:
        result = configs.diff_configs(conn, id_a, id_b)
    if json_output:
        print_json(result)
        return
    out = console()
    if result.identical:
        out.print(f"{id_a} and {id_b} have identical content.")
        return
    out.print(f"{id_a} → {id_b}")
    out.print(
        table(
            f"{len(result.changes)} change(s)",
            ["path", "change", "old", "new"],
            [
                (
                    c.path,
                    c.change,
                    "" if c.change == "added" else json.dumps(c.old, ensure_ascii=False),
                    "" if c.change == "removed" else json.dumps(c.new, ensure_ascii=False),
                )
                for c in result.changes
            ],
        )
    )
    out.print(Syntax(result.unified_diff, "diff", theme="ansi_dark", background_color="default"))
