"""``runyard serve``: the web UI (``/ui``) and the JSON API (``/api/v1``) on Uvicorn."""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import TYPE_CHECKING, Annotated

import typer

from runyard.cli.common import yard_from
from runyard.cli.lazy import lazy
from runyard.cli.output import err_console, handles_errors
from runyard.errors import Invalid, Refused, RunyardError

if TYPE_CHECKING:
    from runyard import web as _web
else:
    _web = lazy("runyard.web")


# The web stack itself (FastAPI, Jinja2, every route) is imported when `serve` runs, so
# that other commands do not pay for it.


def _listen(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound here so that a port in use (or an address
    this machine does not have) is an OS error naming the address, exit 1."""
    address = host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP,
    # and without it a keep-alive client waits 40 ms (Nagle + delayed ACK) per answer.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        shown = f"[{address}]:{port}" if family == socket.AF_INET6 else f"{address}:{port}"
        raise OSError(exc.errno, f"cannot listen on {shown}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _allowed_hosts(host: str, extra: list[str]) -> list[str]:
    """The Host names requests may carry: loopback, the address listened on (unless a
    wildcard), and for a non-loopback address this machine's own names, plus ``extra``."""
    hosts = [*_web.LOOPBACK_HOSTS]
    if not _is_loopback(host):
        if host.strip("[]") not in ("0.0.0.0", "::"):
            hosts.append(host)
        hosts += [socket.gethostname(), socket.getfqdn()]
    for name in extra:
        if not name or any(c.isspace() or c in "/,@" for c in name):
            raise Invalid(f"--allowed-host {name!r} is not a host name")
        hosts.append(name)
    return list(dict.fromkeys(hosts))


@handles_errors
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8765,
    workers: Annotated[int, typer.Option("--workers", help="Server processes.", metavar="N")] = 1,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not run queued jobs in the background.")
    ] = False,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="Another name clients use to reach this server (repeatable), e.g. "
            "yard-host.example.com; '*' allows any.",
            metavar="NAME",
        ),
    ] = None,
) -> None:
    """Serve the web UI and JSON API of this yard (and run queued jobs unless --no-worker).

    Listens on 127.0.0.1 unless --host says otherwise; any other address needs a token
    (a named one from `runyard token create`, or RUNYARD_TOKEN). Requests for a Host name
    that is not loopback, --host, this machine's name, an IP address or an
    --allowed-host are refused (DNS rebinding).
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    if not 1 <= port <= 65535:
        raise Invalid(f"--port must be between 1 and 65535 (got {port})")
    if workers < 1:
        raise Invalid(f"--workers must be at least 1 (got {workers})")
    from runyard.registry.tokens import any_live_token

    with yard_from(ctx) as yard:
        settings = yard.settings
        with yard.read() as conn:
            tokens_on = bool(settings.token) or any_live_token(conn)
    if not _is_loopback(host) and not tokens_on:
        raise Refused(
            f"refusing to listen on {host}, which is not a loopback address, without a token",
            hint="create one with `runyard token create NAME --role recorder` (every request "
            "will need a token), or listen on 127.0.0.1",
        )
    hosts = _allowed_hosts(host, allowed_host or [])
    sock = _listen(host, port)
    err_console().print(
        f"runyard serving {settings.yard_path} on http://{host}:{port} "
        f"(UI: /ui, API: /api/v1, docs: /docs){'' if no_worker else '; running queued jobs'}"
    )
    if not _is_loopback(host):
        err_console().print(f"accepting requests for: {', '.join(hosts)} and any IP address")
    if workers == 1:
        from runyard.web.app import create_app  # not in the supervisor of several workers:
        # each worker imports the app itself, and the supervisor stays small

        app = create_app(settings, hosts, run_worker=not no_worker)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning")
        server = uvicorn.Server(config)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # pragma: no cover - Ctrl-C before the server's own handler
            pass
        finally:
            sock.close()
        if not server.started:
            raise RunyardError("the server did not start; the lines above say why")
        return
    os.environ["RUNYARD_YARD"] = str(settings.yard_path)
    os.environ["RUNYARD_SERVE_HOSTS"] = ",".join(hosts)
    os.environ["RUNYARD_SERVE_WORKER"] = "0" if no_worker else "1"
    config = uvicorn.Config(
        "runyard.web.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
    )
    try:
        Multiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:  # pragma: no cover
        pass
    finally:
        sock.close()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
