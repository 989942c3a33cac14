"""``runyard token``: named API tokens with roles (create, list, revoke), for ``runyard
serve`` (docs/remote.md). Local only: tokens live in the yard's own registry, and
``--server`` is refused."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from runyard.cli.common import JsonOption, yard_from
from runyard.cli.lazy import lazy
from runyard.cli.output import console, err_console, handles_errors, key_values, print_json, table
from runyard.cli.output import when as shown_time

if TYPE_CHECKING:
    from runyard.lifecycle import execlog
    from runyard.registry import tokens
else:
    execlog = lazy("runyard.lifecycle.execlog")
    tokens = lazy("runyard.registry.tokens")

ROLES = ("reader", "recorder", "operator", "admin")

app = typer.Typer(
    help="Named API tokens with roles for `runyard serve`: reader < recorder < operator < admin.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="The token's name.", metavar="NAME")]


@app.command("create")
@handles_errors
def create(
    ctx: typer.Context,
    name: NameArg,
    role: Annotated[
        str,
        typer.Option(
            "--role",
            help="reader (every GET), recorder (+ record runs, upload, create scenarios, "
            "configs and plans, run plans), operator (+ pin, lock, cancel, archive, restore, "
            "retention) or admin (+ tokens and purge).",
            metavar="ROLE",
        ),
    ],
    expires: Annotated[
        float | None,
        typer.Option("--expires", help="Days until it expires (default: never).", metavar="DAYS"),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Create a token and print its secret, this once: only a slow hash is kept."""
    parsed = tokens.parse_role(role)
    with yard_from(ctx) as yard, yard.write() as conn:
        created = tokens.create_token(conn, name, parsed, expires, created_by=execlog.who())
    if json_output:
        print_json(created)
        return
    token = created.token
    console().print(
        key_values(
            "Token created",
            [
                ("name", token.name),
                ("role", token.role),
                ("expires", shown_time(token.expires_at) if token.expires_at else "never"),
            ],
        )
    )
    err_console().print("The secret, shown this once (keep it; it cannot be shown again):")
    typer.echo(created.secret)


@app.command("list")
@handles_errors
def list_(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List the tokens (never their secrets), revoked and expired ones too."""
    with yard_from(ctx) as yard, yard.read() as conn:
        found = tokens.list_tokens(conn)
    if json_output:
        print_json({"items": [t.model_dump(mode="json") for t in found]})
        return
    console().print(
        table(
            None,
            ["name", "role", "status", "created", "expires", "last used", "created by"],
            [
                (
                    t.name,
                    t.role,
                    t.status,
                    shown_time(t.created_at),
                    shown_time(t.expires_at) if t.expires_at else "never",
                    shown_time(t.last_used_at) if t.last_used_at else "-",
                    t.created_by or "-",
                )
                for t in found
            ],
        )
    )


@app.command("revoke")
@handles_errors
def revoke(ctx: typer.Context, name: NameArg, json_output: JsonOption = False) -> None:
    """Revoke a token: every server refuses it within a second, its UI sessions too."""
    with yard_from(ctx) as yard, yard.write() as conn:
        token = tokens.revoke_token(conn, name)
        still_closed = tokens.any_live_token(conn)
    if json_output:
        print_json(token)
        return
    console().print(f"Revoked token {token.name} ({token.role})")
    if not still_closed:
        err_console().print(
            "No named token is left: unless RUNYARD_TOKEN is set for the server, it is "
            "open to everyone again."
        )
