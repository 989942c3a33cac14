"""Rendering UI pages: one Jinja2 environment, the layout's context, the session cookie.

Every page goes through ``render``: it gives the template the navigation, the CSRF
token of the browser's session (setting the session cookie on first visit), whether
the server has tokens, who is logged in (``principal``) and ``may(action)`` (whether
their role may post to that ``/ui`` route: the page shows only the actions it may), the
page's JSON twin, and a one-line message (``?msg=``) that a form's redirect leaves for
the next page.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.filters import do_urlencode
from markupsafe import Markup

from runyard import __version__, fsnames
from runyard.web.auth import (
    ANONYMOUS,
    PUBLIC_READER,
    SESSION_COOKIE,
    Principal,
    guard_of,
    role_needed,
)

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"

NAV = (
    ("runs", "/ui/runs", "Runs"),
    ("plans", "/ui/plans", "Plans"),
    ("scenarios", "/ui/scenarios", "Scenarios"),
    ("configs", "/ui/configs", "Configs"),
    ("jobs", "/ui/jobs", "Jobs"),
    ("archives", "/ui/archives", "Archives"),
)


def format_time(value: datetime | None) -> str:
    """UTC, to the second: ``2026-11-22 10:31:02``."""
    if value is None:
        return "—"
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def format_size(n: int | None) -> str:
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 120:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_number(value: Any) -> str:
    """KPIs: integers with separators, floats to 4 significant decimals."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—" if value is None else str(value)
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.2f}"
    return f"{value:.4g}"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def query(request: Request, **changes: Any) -> str:
    """The current query string with ``changes`` applied (None removes a key); repeated
    keys (``ids=a&ids=b``) are kept unless changed."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in changes]
    for key, value in changes.items():
        if value is not None and value != "":
            kept.append((key, str(value)))
    return "?" + urlencode(kept) if kept else ""


def displayed(value: Any) -> Any:
    """Every ``{{ … }}`` of a page goes through here: text that holds a lone surrogate (a
    name from the disk that is not UTF-8) is shown in display form (``\\xNN``), so that
    no name, tag, group or message can make a page fail to encode."""
    if isinstance(value, str) and not fsnames.is_utf8(value):
        shown = fsnames.shown(value)
        return Markup(shown) if isinstance(value, Markup) else shown
    return value


def url_quoted(value: Any) -> str:
    """Jinja's ``urlencode`` for text that may not be UTF-8 (then its display form)."""
    return do_urlencode(displayed(value) if isinstance(value, str) else value)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html", "svg"]),
        undefined=StrictUndefined,  # a typo in a template fails its test, not silently
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=displayed,
    )
    env.filters.update(
        time=format_time,
        size=format_size,
        duration=format_duration,
        number=format_number,
        pretty_json=pretty_json,
        urlencode=url_quoted,
    )
    env.globals["version"] = __version__
    env.globals["nav"] = NAV
    return env


templates = Jinja2Templates(env=_environment())


def page_principal(request: Request, cookie: str | None) -> Principal | None:
    """Who the page is for: what the request's auth dependency found, else (an error
    page) what the session cookie proves; None for nobody on a server with tokens."""
    found = getattr(request.state, "principal", None)
    if isinstance(found, Principal):
        return found
    guard = guard_of(request)
    yard = request.app.state.yard
    if not guard.tokens_required(yard):
        return ANONYMOUS
    principal = guard.session_principal(yard, cookie)
    if principal is None and guard.public_read:
        return PUBLIC_READER
    return principal


def may_post(principal: Principal | None, action: str) -> bool:
    """Whether ``principal`` may post to the ``/ui`` route ``action`` (its path template,
    as in ``web.auth.ROUTE_ROLES``): the page shows a form only when it may."""
    needed = role_needed("POST", action)
    if needed is None:
        return True
    return principal is not None and principal.role >= needed


def render(
    request: Request,
    template: str,
    *,
    title: str,
    section: str | None = None,
    json_href: str | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page in the layout: ``section`` lights its navigation entry, ``json_href`` is the
    page's JSON twin (``<link rel="alternate" type="application/json">``)."""
    guard = guard_of(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    new_cookie = None
    if guard.session_id(cookie) is None:
        new_cookie = cookie = guard.new_session()
    principal = page_principal(request, cookie)
    response = templates.TemplateResponse(
        request,
        template,
        {
            "title": title,
            "section": section,
            "json_href": json_href,
            "csrf_token": guard.csrf_token(cookie),
            "token_required": principal is not ANONYMOUS,
            "logged_in": principal is not None and principal.name is not None,
            "principal": principal,
            "may": lambda action: may_post(principal, action),
            "flash": request.query_params.get("msg"),
            "query": lambda **changes: query(request, **changes),
            **context,
        },
        status_code=status_code,
    )
    if new_cookie is not None:
        set_session_cookie(response, new_cookie)
    return response


def set_session_cookie(response: HTMLResponse | RedirectResponse, value: str) -> None:
    response.set_cookie(SESSION_COOKIE, value, httponly=True, samesite="strict", path="/")


def redirect(url: str, message: str | None = None) -> RedirectResponse:
    """After a form post: 303 to ``url``, with a one-line message for the next page."""
    if message:
        url += ("&" if "?" in url else "?") + urlencode({"msg": message})
    return RedirectResponse(url, status_code=303)
