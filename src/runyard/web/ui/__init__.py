"""The web UI (``/ui``): server-rendered pages on the same core functions as the CLI
and the API. Each area has its own module and templates; this module puts them
together with the pages every area shares (the front door, login and logout). The
front door, ``/ui``, is the overview (``ui/overview.py``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from runyard.errors import Unauthorized
from runyard.web.auth import SESSION_COOKIE, Session, guard_of, require_access, require_ui_write
from runyard.web.ui import archives, configs, jobs, overview, plans, run_list, runs, scenarios
from runyard.web.ui.render import redirect, render, set_session_cookie

router = APIRouter(prefix="/ui", include_in_schema=False, dependencies=[Depends(require_access)])


def _safe_next(url: str | None) -> str:
    """Only a path of this server: never an open redirect."""
    if url and url.startswith("/ui") and not url.startswith("//") and "\\" not in url:
        return url
    return "/ui/runs"


@router.get("", response_class=HTMLResponse)
def front_door(request: Request) -> Response:
    """``/ui`` is the overview, as ``/ui/`` is (an included router cannot own "")."""
    return overview.overview_page(request)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", title="Log in", next_url=_safe_next(next), failed=False)


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/ui/runs",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    guard = guard_of(request)
    guard.check_csrf(request.cookies.get(SESSION_COOKIE), csrf_token)
    yard = request.app.state.yard
    # The first scrypt check of a token takes tens of milliseconds: not on the event loop.
    required = await run_in_threadpool(guard.tokens_required, yard)
    if not required:
        return redirect(_safe_next(next), "This server needs no login.")
    try:
        principal, token_id = await run_in_threadpool(
            guard.principal_of_secret, yard, token.strip()
        )
    except Unauthorized as exc:
        return render(
            request,
            "login.html",
            title="Log in",
            next_url=_safe_next(next),
            failed=exc.message,
            status_code=401,
        )
    name = principal.name or ""
    response = redirect(_safe_next(next), f"Logged in as {name} ({principal.role.name}).")
    session = Session(name=name, role=principal.role, token_id=token_id)
    set_session_cookie(response, guard.new_session(session))
    return response


@router.post("/logout", dependencies=[Depends(require_ui_write)])
def logout(request: Request) -> Response:
    response = redirect("/ui/runs", "Logged out.")
    set_session_cookie(response, guard_of(request).new_session())
    return response


for area in (overview, scenarios, configs, plans, run_list, runs, jobs, archives):
    router.include_router(area.router)
