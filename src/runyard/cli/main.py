"""The ``runyard`` command: the root app, its global options, and the command groups."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from runyard import __version__
from runyard.cli import (
    backup_cmd,
    check_cmd,
    config_cmd,
    db_cmd,
    demo_cmd,
    jobs_cmd,
    lifecycle_cmd,
    plan_cmd,
    rebuild_cmd,
    run_cmd,
    scenario_cmd,
    serve_cmd,
    token_cmd,
    view_cmd,
    yard_cmd,
)
from runyard.cli.output import report_error
from runyard.cli.server import LOCAL_ONLY, local_only


def _root() -> typer.Typer:
    return typer.Typer(
        name="runyard",
        help="A registry of pipeline runs with plan lineage, and a safe lifecycle for run folders.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


app = _root()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"runyard {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    yard: Annotated[
        str | None,
        typer.Option(
            "--yard",
            help="The yard folder (default: RUNYARD_YARD, else search "
            "upward from here for runyard.toml).",
            metavar="PATH",
        ),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            envvar="RUNYARD_SERVER",
            help="Work through a runyard server's API (http://HOST:PORT) instead of a local "
            "yard; the token comes from RUNYARD_TOKEN (docs/remote.md).",
            metavar="URL",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    ctx.obj = {"yard": yard, "server": server or None}
    command = ctx.invoked_subcommand
    asks_help = {"--help", "-h"} & set(sys.argv[1:])
    if server and command in LOCAL_ONLY and not (ctx.resilient_parsing or asks_help):
        # Before the command parses its own options: exit 5 naming it, not a traceback.
        report_error(local_only(command), json_mode="--json" in sys.argv[1:])
        raise typer.Exit(local_only(command).exit_code)


yard_cmd.register(app)
app.add_typer(db_cmd.app, name="db")
app.add_typer(scenario_cmd.app, name="scenario")
app.add_typer(config_cmd.app, name="config")
app.add_typer(plan_cmd.app, name="plan")
app.add_typer(run_cmd.app, name="run")
app.add_typer(view_cmd.app, name="view")
app.add_typer(token_cmd.app, name="token")
lifecycle_cmd.register(app)
jobs_cmd.register(app, plan_cmd.app)
demo_cmd.register(app)
rebuild_cmd.register(app)
check_cmd.register(app)
backup_cmd.register(app)
serve_cmd.register(app)


def _command_name(argv: Sequence[str]) -> str | None:
    """The command a command line runs (``run`` in ``runyard --yard Y run list``), or
    None when it asks for the root (``--help``, ``--version``, nothing)."""
    args = iter(argv)
    for arg in args:
        if arg in ("--yard", "--server"):
            next(args, None)
        elif arg.startswith(("--yard=", "--server=")):
            continue
        elif arg.startswith("-"):
            return None
        else:
            return arg
    return None


def app_for(argv: Sequence[str]) -> typer.Typer:
    """The root app with only the command ``argv`` runs: Typer builds every registered
    command's parameters before it runs one, which is a third of a short command's time.
    The whole app when the command line asks for the root or names no known command."""
    name = _command_name(argv)
    commands = [c for c in app.registered_commands if c.name == name]
    groups = [g for g in app.registered_groups if g.name == name]
    if name is None or not (commands or groups):
        return app
    only = _root()
    only.registered_callback = app.registered_callback
    only.registered_commands = commands
    only.registered_groups = groups
    return only


def main() -> None:
    app_for(sys.argv[1:])()
