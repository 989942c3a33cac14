"""``runyard init``: make a yard."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from runyard.cli.common import JsonOption, check_text_params
from runyard.cli.lazy import lazy
from runyard.cli.output import console, handles_errors, key_values, print_json
from runyard.presets import PRESETS

if TYPE_CHECKING:
    from runyard import yard as _yard
else:
    _yard = lazy("runyard.yard")


def register(app: typer.Typer) -> None:
    app.command("init")(init)


@handles_errors
def init(
    ctx: typer.Context,
    path: Annotated[
        str, typer.Argument(help="Folder of the new yard (made if missing).", metavar="PATH")
    ] = ".",
    preset: Annotated[
        str,
        typer.Option(
            "--preset", help=f"Layout and defaults: {' or '.join(PRESETS)}.", metavar="PRESET"
        ),
    ] = "planning",
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Registry database (SQLAlchemy URL or SQLite path), "
            "written into runyard.toml. Default: registry.db in the yard.",
            metavar="URL",
        ),
    ] = None,
    archive_store: Annotated[
        str | None,
        typer.Option(
            "--archive-store",
            help="Archive batches into this bucket (s3://BUCKET/PREFIX), written into "
            "runyard.toml as [archive] store after a probe object was written, read and "
            "deleted there. Credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
            "AWS_PROFILE.",
            metavar="URL",
        ),
    ] = None,
    endpoint_url: Annotated[
        str | None,
        typer.Option(
            "--endpoint-url",
            help="The S3-compatible endpoint of --archive-store (SeaweedFS, MinIO ...); "
            "omit for AWS.",
            metavar="URL",
        ),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option("--region", help="The region of --archive-store.", metavar="REGION"),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Create a yard: runyard.toml, the runs, archive and logs folders, and the registry."""
    check_text_params(ctx)  # text options must be UTF-8 (PATH is checked by init_yard)
    result = _yard.init_yard(
        path,
        preset=preset,
        db_url=db,
        archive_store=archive_store,
        endpoint_url=endpoint_url,
        region=region,
    )
    if json_output:
        print_json(result.to_dict())
        return
    out = console()
    out.print(Text(f"Created yard {result.yard_id} at {result.yard_path}", style="bold green"))
    out.print(
        key_values(
            "",
            [
                ("preset", result.preset),
                ("registry", f"{result.to_dict()['db_url']} ({result.db_url_source})"),
                ("created", ", ".join(result.created) or "-"),
                ("kept as they were", ", ".join(result.existing) or "-"),
            ],
        )
    )
    if result.archive_store:
        checked = result.archive_store["checked"]
        out.print(
            Text(
                f"archive store {result.archive_store['store']}: "
                f"{', '.join(checked[:-1])} and {checked[-1]} checked",
                style="green",
            )
        )
    if result.db_url_source == "RUNYARD_DB":
        out.print(
            Text(
                "Note: the registry was chosen by RUNYARD_DB and is not written into "
                "runyard.toml; set RUNYARD_DB for every command, or use `init --db`.",
                style="yellow",
            )
        )
    out.print(
        Text("Next: runyard scenario add NAME, then runyard config add FILE.json", style="dim")
    )
