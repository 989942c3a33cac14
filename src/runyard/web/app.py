"""The web server: ``create_app(settings)`` builds the FastAPI application.

It is an adapter like the CLI: every route calls the same core functions, and
``RunyardError`` maps to an HTTP status and a JSON error with the same stable ``code``
the CLI prints (``{"error": {"code", "message", "hint"}}``). Bad input is a 4xx, never
a 500 (``web.errors``). Before any route, ``web.middleware`` refuses a request whose
``Host`` is not an allowed host (DNS rebinding), a write from another origin, and a
body over the size or JSON limits.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from runyard import __version__
from runyard.config import Settings
from runyard.errors import RunyardError
from runyard.jobs.worker import Worker
from runyard.web import (
    LOOPBACK_HOSTS,
    api_actions,
    api_check,
    api_overview,
    api_record,
    api_views,
    ui,
)
from runyard.web.api import router
from runyard.web.auth import Guard, require_access
from runyard.web.errors import SafeJSONResponse, answer, answer_error
from runyard.web.metrics import metrics_registry
from runyard.web.middleware import (
    BodyLimitMiddleware,
    ForeignOriginMiddleware,
    HostCheckMiddleware,
    RefuseNulMiddleware,
)
from runyard.yard import open_yard

log = logging.getLogger("runyard.web")


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
        default_response_class=SafeJSONResponse,
        docs_url=None,  # FastAPI's own pages load their assets from a CDN: ours, below
        redoc_url=None,
    )
    app.state.settings = settings
    hosts = list(allowed_hosts or LOOPBACK_HOSTS)
    app.state.allowed_hosts = hosts
    app.state.guard = Guard.for_settings(settings)
    # The last added runs first: NUL bytes, then the Host, then the Origin of a write,
    # then the size and JSON limits of its body.
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(ForeignOriginMiddleware)
    app.add_middleware(HostCheckMiddleware, allowed_hosts=hosts)
    app.add_middleware(RefuseNulMiddleware)

    @app.exception_handler(RunyardError)
    async def runyard_error(request: Request, exc: RunyardError) -> Response:
        return answer_error(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
        message = f"{where}: {first.get('msg')}".strip(": ")
        return answer(request, 422, "invalid", message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        return answer(request, exc.status_code, code, message)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # A reader's token when tokens are on (Prometheus: authorization.credentials).
    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(require_access)])
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
        return answer(request, 422, "invalid", message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # A bug: logged with its trace for us, a plain apology (never the trace) for them.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        message = "runyard hit an unexpected error; the server log has the details"
        return answer(request, 500, "error", message)

    add_docs_pages(app)
    app.include_router(router)
    app.include_router(api_actions.router)
    app.include_router(api_record.router)
    app.include_router(api_check.router)
    app.include_router(api_overview.router)
    app.include_router(api_views.router)
    app.include_router(ui.router)
    app.mount("/static", StaticFiles(packages=[("runyard.web", "static")]), name="static")
    return app


SWAGGER_OAUTH2_REDIRECT = "/docs/oauth2-redirect"


def add_docs_pages(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` (Redoc) as FastAPI makes them, but with
    every asset (scripts, style sheet, favicon) served from ``/static``, where
    ``scripts/vendor_web_assets.py`` put them: the pages load nothing from another
    host, so they work with no internet. Like every read, they need no token."""

    def root(request: Request) -> str:  # the prefix a proxy serves the app under
        return str(request.scope.get("root_path", "")).rstrip("/")

    def static(request: Request, name: str) -> str:
        return f"{root(request)}/static/{name}"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=root(request) + str(app.openapi_url),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=static(request, "swagger-ui-bundle.js"),
            swagger_css_url=static(request, "swagger-ui.css"),
            swagger_favicon_url=static(request, "swagger-ui-favicon-32x32.png"),
            oauth2_redirect_url=root(request) + SWAGGER_OAUTH2_REDIRECT,
        )

    @app.get(SWAGGER_OAUTH2_REDIRECT, include_in_schema=False)
    def swagger_ui_oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=root(request) + str(app.openapi_url),
            title=f"{app.title} - ReDoc",
            redoc_js_url=static(request, "redoc.standalone.js"),
            redoc_favicon_url=static(request, "swagger-ui-favicon-32x32.png"),
            with_google_fonts=False,
        )


def app_from_environment() -> FastAPI:
    """The factory ``runyard serve --workers N`` hands to Uvicorn: each server process
    builds its app from the environment ``serve`` set (the yard, the allowed hosts)."""
    from runyard.config import find_yard, load_settings

    settings = load_settings(find_yard(None))
    hosts = [h for h in os.environ.get("RUNYARD_SERVE_HOSTS", "").split(",") if h]
    run_worker = os.environ.get("RUNYARD_SERVE_WORKER") == "1"
    return create_app(settings, hosts or None, run_worker=run_worker)
