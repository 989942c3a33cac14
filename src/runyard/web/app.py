"""The web server: ``create_app(settings)`` builds the FastAPI application.

It is an adapter like the CLI: every route calls the same core functions, and
``RunyardError`` maps to an HTTP status and a JSON error with the same stable ``code``
the CLI prints (``{"error": {"code", "message", "hint"}}``). Bad input is a 4xx, never
a 500. Requests whose ``Host`` is not an allowed host are refused (DNS rebinding).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from runyard import __version__
from runyard.config import Settings
from runyard.errors import (
    Conflict,
    Forbidden,
    Invalid,
    LegacyPathClosed,
    Locked,
    NotFound,
    Refused,
    RegistryStateError,
    RunyardError,
    Unauthorized,
)
from runyard.jobs.worker import Worker
from runyard.web import LOOPBACK_HOSTS, api_actions, ui
from runyard.web.api import router
from runyard.web.auth import Guard
from runyard.web.metrics import metrics_registry
from runyard.web.ui.render import render
from runyard.yard import open_yard

log = logging.getLogger("runyard.web")


# Most specific first: the first class an error is an instance of gives its status.
STATUS_OF: tuple[tuple[type[RunyardError], int], ...] = (
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (LegacyPathClosed, 403),
    (Locked, 423),
    (Conflict, 409),
    (Refused, 409),
    (Invalid, 422),
    (RegistryStateError, 503),
)


def status_for(exc: RunyardError) -> int:
    for cls, status in STATUS_OF:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(status: int, code: str, message: str, hint: str | None = None) -> JSONResponse:
    body: dict[str, str] = {"code": code, "message": message}
    if hint:
        body["hint"] = hint
    return JSONResponse({"error": body}, status_code=status)


HEADINGS = {
    401: "Log in needed",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Refused",
    422: "Invalid input",
    423: "Locked",
    503: "Registry unavailable",
}

# The closed legacy path: the banner leads to where runs are made now.
LEGACY_LINK_LABEL = "Create a plan from this scenario"


def _wants_html(request: Request) -> bool:
    return request.url.path.startswith("/ui")


def error_page(
    request: Request, status: int, code: str, message: str, hint: str | None = None
) -> Response:
    """The UI's error: a page in the layout with the message and what to do, never a trace."""
    if status == 401:  # a write without a login: log in, then come back
        target = request.headers.get("referer") or request.url.path
        path = "/" + target.split("/", 3)[-1] if "://" in target else target
        return RedirectResponse(f"/ui/login?next={path if path.startswith('/ui') else ''}", 303)
    link = None
    if code == LegacyPathClosed.code:
        parts = request.url.path.strip("/").split("/")
        scenario = parts[2] if len(parts) > 2 else ""
        href = f"/ui/plans/new?scenario={quote(scenario, safe='')}"
        link = {"href": href, "label": LEGACY_LINK_LABEL}
    return render(
        request,
        "error.html",
        title=f"{status} {HEADINGS.get(status, 'Error')}",
        status_code=status,
        status=status,
        heading=HEADINGS.get(status, "Error"),
        code=code,
        message=message,
        hint=hint,
        link=link,
    )


class RefuseNulMiddleware:
    """No id, name or filter holds a NUL byte, and PostgreSQL cannot even compare one:
    a ``%00`` in the path or the query is refused here with 422, so that every engine
    answers the same (a pure ASGI middleware: nothing added to other requests)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            b"%00" in scope.get("raw_path", b"") or b"%00" in scope.get("query_string", b"")
        ):
            request = Request(scope, receive)
            message = "a NUL byte (%00) is not allowed in a path or a query"
            if _wants_html(request):
                response = error_page(request, 422, "invalid", message)
            else:
                response = error_response(422, "invalid", message)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(
    settings: Settings, allowed_hosts: list[str] | None = None, run_worker: bool = False
) -> FastAPI:
    """The application for one yard; the registry is opened at start-up. With
    ``run_worker`` a job worker runs in a background thread while the server does."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yard = open_yard(settings.yard_path)
        app.state.yard = yard
        app.state.metrics = metrics_registry(yard)
        worker = Worker(yard, concurrency=1) if run_worker else None
        thread = None
        if worker is not None:
            thread = threading.Thread(target=worker.run, name="runyard-serve-worker")
            thread.start()
        try:
            yield
        finally:
            if worker is not None and thread is not None:
                worker.stop(cancel=True)  # runners stopped, jobs recorded cancelled
                thread.join()
            yard.close()

    app = FastAPI(
        title="runyard",
        version=__version__,
        description="Runs with plan lineage, their jobs and their lifecycle.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    hosts = list(allowed_hosts or LOOPBACK_HOSTS)
    app.state.allowed_hosts = hosts
    app.state.guard = Guard.for_settings(settings)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)

    app.add_middleware(RefuseNulMiddleware)

    @app.exception_handler(RunyardError)
    async def runyard_error(request: Request, exc: RunyardError) -> Response:
        if _wants_html(request):
            return error_page(request, status_for(exc), exc.code, exc.message, exc.hint)
        return error_response(status_for(exc), exc.code, exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
        message = f"{where}: {first.get('msg')}".strip(": ")
        if _wants_html(request):
            return error_page(request, 422, "invalid", message)
        return error_response(422, "invalid", message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if _wants_html(request):
            return error_page(request, exc.status_code, code, message)
        return error_response(exc.status_code, code, message)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        registry = request.app.state.metrics
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(DataError)
    async def unstorable_input(request: Request, exc: DataError) -> Response:
        # The database refused a value of the request (PostgreSQL: a NUL byte in a text,
        # a string longer than its column): bad input, so a 422 that changed nothing
        # (the transaction was rolled back), not a 500.
        detail = str(exc.orig).splitlines()[0] if exc.orig is not None else "invalid value"
        message = f"the database cannot take a value of this request: {detail}"
        if _wants_html(request):
            return error_page(request, 422, "invalid", message)
        return error_response(422, "invalid", message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # A bug: logged with its trace for us, a plain apology (never the trace) for them.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        message = "runyard hit an unexpected error; the server log has the details"
        if _wants_html(request):
            return error_page(request, 500, "error", message)
        return error_response(500, "error", message)

    app.include_router(router)
    app.include_router(api_actions.router)
    app.include_router(ui.router)
    app.mount("/static", StaticFiles(packages=[("runyard.web", "static")]), name="static")
    return app


def app_from_environment() -> FastAPI:
    """The factory ``runyard serve --workers N`` hands to Uvicorn: each server process
    builds its app from the environment ``serve`` set (the yard, the allowed hosts)."""
    from runyard.config import find_yard, load_settings

    settings = load_settings(find_yard(None))
    hosts = [h for h in os.environ.get("RUNYARD_SERVE_HOSTS", "").split(",") if h]
    run_worker = os.environ.get("RUNYARD_SERVE_WORKER") == "1"
    return create_app(settings, hosts or None, run_worker=run_worker)
