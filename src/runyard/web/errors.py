"""How the web server answers an error: one place maps every error to an HTTP status
and a body, JSON (``{"error": {"code", "message", "hint"}}``, with the CLI's stable
``code``) for the API, a page in the layout for the UI. ``SafeJSONResponse`` is every
JSON answer of the server: no string from the disk can make one fail to encode.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from runyard import fsnames
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
from runyard.web.ui.render import render

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


class SafeJSONResponse(JSONResponse):
    """Every JSON answer of the server (the app's default response class). A string that
    still holds a lone surrogate (a name from the disk that is not UTF-8, which no UTF-8
    text can hold) is written in its display form (``fsnames.clean``), never a 500."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return super().render(fsnames.clean(content))


def error_response(
    status: int, code: str, message: str, hint: str | None = None
) -> SafeJSONResponse:
    body: dict[str, str] = {"code": code, "message": message}
    if hint:
        body["hint"] = hint
    return SafeJSONResponse({"error": body}, status_code=status)


HEADINGS = {
    401: "Log in needed",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Refused",
    413: "Too large",
    422: "Invalid input",
    423: "Locked",
    503: "Registry unavailable",
}

# The closed legacy path: the banner leads to where runs are made now.
LEGACY_LINK_LABEL = "Create a plan from this scenario"


def wants_html(request: Request) -> bool:
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


def answer(
    request: Request, status: int, code: str, message: str, hint: str | None = None
) -> Response:
    """The error as the client wants it: a page under ``/ui``, JSON everywhere else."""
    if wants_html(request):
        return error_page(request, status, code, message, hint)
    return error_response(status, code, message, hint)


def answer_error(request: Request, exc: RunyardError) -> Response:
    return answer(request, status_for(exc), exc.code, exc.message, exc.hint)
