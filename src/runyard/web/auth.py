"""Who may write, and proof that a form came from our own pages.

- ``RUNYARD_TOKEN`` set: every API write needs ``Authorization: Bearer <token>``; the UI
  has a login form that exchanges the token for a session cookie.
- Every UI form (and htmx request) carries a CSRF token bound to the browser's session
  cookie, token or not: without one, any web page the operator visits could post to
  ``127.0.0.1:8765`` and archive runs.
- Every write (any method but GET, HEAD and OPTIONS, on any path) refuses a browser
  ``Origin`` that is not this server's own origin: scheme, host and port. This keeps a
  page of another site, or of another local server on another port, from reaching the
  token-less API. ``check_origin`` is applied to every request by the app
  (``ForeignOriginMiddleware``), before any route or body parsing.

Session cookies and CSRF tokens are HMACs under a secret that every server process of
the yard shares (derived from the token, else kept in the yard), so ``--workers N``
agree with each other and survive a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import Request

from runyard.config import Settings
from runyard.errors import Forbidden, Unauthorized
from runyard.fsutil import read_regular_file

SESSION_COOKIE = "runyard_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SECRET_FILENAME = ".web_secret"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _yard_secret(yard_path: Path) -> bytes:
    """The yard's own secret, made once (exclusively, so processes agree) and kept 0600."""
    path = yard_path / SECRET_FILENAME
    try:  # never blocks: a FIFO in its place is refused, not opened for reading
        return bytes.fromhex(read_regular_file(path, SECRET_FILENAME, 1024).decode().strip())
    except (FileNotFoundError, ValueError):
        pass
    value = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its secret
        return bytes.fromhex(read_regular_file(path, SECRET_FILENAME, 1024).decode().strip())
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
        f.flush()
        os.fsync(f.fileno())
    return bytes.fromhex(value)


@dataclass(frozen=True)
class Guard:
    """The server's authentication state: the token (if any) and the HMAC secret."""

    token: str | None
    secret: bytes

    @classmethod
    def for_settings(cls, settings: Settings) -> Guard:
        if settings.token:
            secret = hashlib.sha256(b"runyard-web\0" + settings.token.encode()).digest()
        else:
            secret = _yard_secret(settings.yard_path)
        return cls(token=settings.token or None, secret=secret)

    def _mac(self, purpose: str, session_id: str) -> str:
        return hmac.new(self.secret, f"{purpose}\0{session_id}".encode(), "sha256").hexdigest()

    # Sessions: "<id>" (anonymous) or "<id>.<mac>" (logged in with the token).
    def new_session(self, logged_in: bool) -> str:
        session_id = secrets.token_urlsafe(18)
        return f"{session_id}.{self._mac('login', session_id)}" if logged_in else session_id

    @staticmethod
    def session_id(cookie: str | None) -> str | None:
        if not cookie:
            return None
        session_id = cookie.split(".", 1)[0]
        return session_id if 8 <= len(session_id) <= 64 and session_id.isascii() else None

    def logged_in(self, cookie: str | None) -> bool:
        """True when no token is set, or the cookie proves a login."""
        if self.token is None:
            return True
        session_id = self.session_id(cookie)
        if session_id is None or "." not in (cookie or ""):
            return False
        mac = (cookie or "").split(".", 1)[1]
        return hmac.compare_digest(mac, self._mac("login", session_id))

    def csrf_token(self, cookie: str | None) -> str:
        session_id = self.session_id(cookie)
        return self._mac("csrf", session_id) if session_id else ""

    def check_csrf(self, cookie: str | None, presented: str | None) -> None:
        expected = self.csrf_token(cookie)
        if not expected or not presented or not hmac.compare_digest(expected, presented):
            raise Forbidden(
                "this form is missing its CSRF token or it does not match your session",
                hint="reload the page and submit the form again",
            )

    def check_bearer(self, request: Request) -> None:
        if self.token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            raise Unauthorized(
                "this write needs the server's token",
                hint="send 'Authorization: Bearer <RUNYARD_TOKEN>'",
            )
        if not hmac.compare_digest(presented.strip().encode(), self.token.encode()):
            raise Unauthorized("the token does not match", hint="check RUNYARD_TOKEN")


DEFAULT_PORTS = {"http": 80, "https": 443}
# A browser sends these for a request from a page of another origin: another site, or
# the same host on another port or scheme (``same-site``), such as another local server.
FOREIGN_FETCH_SITES = frozenset({"cross-site", "same-site"})

Origin = tuple[str, str, int]


def parse_origin(text: str) -> Origin | None:
    """``scheme://host[:port]`` as (scheme, host, port) with the default port filled in;
    None for anything that is not exactly an origin (``null``, a path, user info …)."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in DEFAULT_PORTS or not host or parts.username is not None:
        return None
    if parts.path or parts.query or parts.fragment or text.endswith(("?", "#")):
        return None
    return scheme, host, port if port is not None else DEFAULT_PORTS[scheme]


def own_origin(request: Request) -> Origin | None:
    """This server's origin as the request reached it: its scheme and its ``Host`` (the
    address it listens on when a client sent no ``Host``)."""
    return parse_origin(f"{request.url.scheme}://{request.url.netloc}")


def check_origin(request: Request) -> None:
    """Refuse a write that a browser sent from a page of another origin.

    A browser names the page's origin in ``Origin``; it must be this server's own: the
    same scheme, host and port (``http://127.0.0.1:9999`` is another server, whose page
    must not pin runs here). ``null`` (a sandboxed or file page) is refused, and so is
    ``Sec-Fetch-Site: cross-site`` or ``same-site``. A request with neither header is not
    from a browser (curl, a script) and goes on to the token check.
    """
    fetch_site = request.headers.get("sec-fetch-site", "").lower()
    if fetch_site in FOREIGN_FETCH_SITES:
        raise Forbidden(
            f"writes from a page of another origin are refused (Sec-Fetch-Site: {fetch_site})",
            hint="open this server's own pages to change anything",
        )
    origin = request.headers.get("origin")
    if origin is None:
        return
    theirs = parse_origin(origin)
    if theirs is None or theirs != own_origin(request):
        shown = origin if len(origin) <= 200 else origin[:200] + "…"
        raise Forbidden(
            f"writes from {shown} are refused: it is not this server's origin",
            hint="open this server's own pages (same scheme, host and port) to change anything",
        )


def guard_of(request: Request) -> Guard:
    guard: Guard = request.app.state.guard
    return guard


class Role(IntEnum):
    """What a token may do; each role may do everything the ones below it may."""

    reader = 1  # every GET
    recorder = 2  # + record runs, upload files, create scenarios, configs and plans, run plans
    operator = 3  # + pin, lock, cancel, archive, restore, retention
    admin = 4  # + tokens and purge


BOOTSTRAP_NAME = "RUNYARD_TOKEN"


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a token's name and role. ``name`` is None when the server
    has no tokens at all (everyone may do everything, as before tokens existed)."""

    name: str | None
    role: Role


ANONYMOUS = Principal(name=None, role=Role.admin)


def principal_of(request: Request) -> Principal:
    """The principal the auth dependency found for this request (set on request.state)."""
    found = getattr(request.state, "principal", None)
    return found if isinstance(found, Principal) else ANONYMOUS


def require_api_write(request: Request) -> None:
    """FastAPI dependency of every ``/api/v1`` write (the app has checked ``Origin``)."""
    guard = guard_of(request)
    guard.check_bearer(request)
    request.state.principal = (
        Principal(name=BOOTSTRAP_NAME, role=Role.admin) if guard.token else ANONYMOUS
    )


async def require_ui_write(request: Request) -> None:
    """FastAPI dependency of every ``/ui`` form post: login, then the CSRF token (the
    form's ``csrf_token`` field, or htmx's ``X-CSRF-Token`` header). The app has checked
    ``Origin`` before any route runs."""
    guard = guard_of(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not guard.logged_in(cookie):
        raise Unauthorized(
            "log in with the server's token to change anything", hint="open /ui/login"
        )
    presented = request.headers.get(CSRF_HEADER)
    if presented is None:
        form = await request.form()  # Starlette caches it for the route's Form fields
        value = form.get(CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    guard.check_csrf(cookie, presented)
