"""The CLI's ``--server URL`` (or ``RUNYARD_SERVER``): which commands go through a
server's API, and the client they use.

A command that works remotely has one branch: ``client = client_from(ctx)``; when it is
not None the command asks the server, else the local core, and both answers are
rendered alike. A command that needs the yard's own machine (its database, its disk) is
refused with exit 5 and a message naming it: by name before it starts
(``LOCAL_ONLY``), and otherwise when it opens the yard (``common.yard_from``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from runyard.errors import Invalid

if TYPE_CHECKING:
    from runyard.remote.client import Client

# Top-level commands that only make sense where the yard is.
LOCAL_ONLY = frozenset(
    {"init", "db", "backup", "restore-db", "rebuild", "worker", "serve", "demo", "recover"}
)


def server_of(ctx: typer.Context) -> str | None:
    server: str | None = (ctx.find_root().obj or {}).get("server")
    return server


def local_only(command: str) -> Invalid:
    """The refusal of a yard-local command given --server."""
    return Invalid(
        f"`{command}` works on the yard's own machine only; it does not take --server "
        "(nor RUNYARD_SERVER)",
        hint="run it where the yard is, without --server (unset RUNYARD_SERVER)",
    )


def client_from(ctx: typer.Context) -> Client | None:
    """The server's client when --server (or RUNYARD_SERVER) is given, else None.

    The token is ``RUNYARD_TOKEN``. Text arguments are checked as for a local command
    (UTF-8) first.
    """
    server = server_of(ctx)
    if server is None:
        return None
    from runyard.cli.common import check_text_params
    from runyard.remote.client import CLI_ATTEMPTS, Client

    check_text_params(ctx)
    client = Client(server, attempts=CLI_ATTEMPTS)
    ctx.call_on_close(client.close)
    return client
