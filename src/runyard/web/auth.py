"""Who may do what: tokens, roles, sessions, and proof that a form came from our pages.

- Tokens: ``RUNYARD_TOKEN`` (the bootstrap admin, principal name ``RUNYARD_TOKEN``) and
  named tokens (``runyard token create NAME --role R``, ``registry.tokens``). With none
  configured the server is open, as before tokens existed. With any, every request
  needs one (``Authorization: Bearer <secret>``, or a UI session made by logging in with
  one), reads included, unless ``[web] public_read = true`` lets reads through without.
- Roles: ``ROUTE_ROLES`` is the one table of the role each route needs, keyed by
  (method, route path template); a read needs ``reader``, a write not in the table
  ``admin`` (fail closed). ``require_access`` applies it to every route of the API and
  the UI (``require_api_write`` is the same dependency).
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
agree with each other and survive a restart. A logged-in session's cookie binds the
token's name, role and public id under that HMAC; each request checks that the token is
still live (``TokenBook``: within a second of a ``token revoke`` anywhere).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from runyard.config import Settings
from runyard.errors import Forbidden, Unauthorized
from runyard.fsutil import read_regular_file
from runyard.lifecycle.execlog import acting_as
from runyard.registry.tokens import BOOTSTRAP_NAME as BOOTSTRAP_NAME
from runyard.registry.tokens import Role as Role
from runyard.registry.tokens import TokenBook

if TYPE_CHECKING:
    from runyard.yard import Yard


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
class Session:
    """A logged-in UI session: the token's name, role and public id ("" for
    ``RUNYARD_TOKEN``), as the cookie's HMAC vouches for them."""

    name: str
    role: Role
    token_id: str


@dataclass(frozen=True)
class Guard:
    """The server's authentication state: the bootstrap token (if any), the HMAC
    secret, whether reads are public, and this process's view of the named tokens."""

    token: str | None
    secret: bytes
    public_read: bool = False
    book: TokenBook = field(default_factory=TokenBook, compare=False)

    @classmethod
    def for_settings(cls, settings: Settings) -> Guard:
        if settings.token:
            secret = hashlib.sha256(b"runyard-web\0" + settings.token.encode()).digest()
        else:
            secret = _yard_secret(settings.yard_path)
        return cls(
            token=settings.token or None,
            secret=secret,
            public_read=settings.file.web.public_read,
        )

    def tokens_required(self, yard: Yard) -> bool:
        """True when any token is configured: ``RUNYARD_TOKEN`` or a named token that is
        not revoked (cheap: the named ones come from a snapshot at most 1 s old)."""
        return self.token is not None or self.book.any_configured(yard)

    def _mac(self, purpose: str, session_id: str) -> str:
        return hmac.new(self.secret, f"{purpose}\0{session_id}".encode(), "sha256").hexdigest()

    # Sessions: "<id>" (anonymous) or "<id>.<who>.<mac>" (logged in: ``who`` is the
    # token's name, role and id, base64url; the MAC binds them to the session id).
    def new_session(self, session: Session | None = None) -> str:
        session_id = secrets.token_urlsafe(18)
        if session is None:
            return session_id
        raw = f"{session.name}\0{session.role.name}\0{session.token_id}".encode()
        who = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return f"{session_id}.{who}.{self._mac('login', f'{session_id}.{who}')}"

    @staticmethod
    def session_id(cookie: str | None) -> str | None:
        if not cookie:
            return None
        session_id = cookie.split(".", 1)[0]
        return session_id if 8 <= len(session_id) <= 64 and session_id.isascii() else None

    def session(self, cookie: str | None) -> Session | None:
        """The login the cookie proves, or None (anonymous, forged, or another server's)."""
        parts = (cookie or "").split(".")
        if len(parts) != 3 or self.session_id(cookie) is None:
            return None
        session_id, who, mac = parts
        if not hmac.compare_digest(mac, self._mac("login", f"{session_id}.{who}")):
            return None
        try:
            raw = base64.urlsafe_b64decode(who + "=" * (-len(who) % 4)).decode()
            name, role, token_id = raw.split("\0")
            return Session(name=name, role=Role[role], token_id=token_id)
        except (ValueError, KeyError):
            return None

    def session_principal(self, yard: Yard, cookie: str | None) -> Principal | None:
        """Who a UI session acts as, if its token is still live."""
        found = self.session(cookie)
        if found is None:
            return None
        if found.name == BOOTSTRAP_NAME and not found.token_id:
            return Principal(BOOTSTRAP_NAME, Role.admin) if self.token is not None else None
        try:
            stored = self.book.by_session(yard, found.name, found.token_id)
        except Unauthorized:
            return None  # revoked or expired since the login: logged out
        return Principal(stored.name, stored.role)

    def decides_quickly(self, request: Request) -> bool:
        """Whether ``require_access`` can decide this request from memory (no table read,
        no scrypt, no ``last_used_at`` write), so on the event loop."""
        if not self.book.is_fresh():
            return False
        header = request.headers.get("authorization")
        if header is None:
            return True  # a session cookie, or nothing: checked against the snapshot
        presented = header.partition(" ")[2].strip()
        if self.token is not None and hmac.compare_digest(presented.encode(), self.token.encode()):
            return True
        return self.book.is_warm(presented)

    def principal_of_secret(self, yard: Yard, presented: str) -> tuple[Principal, str]:
        """The principal a presented secret is, and its token's public id; Unauthorized
        when it is none of them. Every comparison is constant-time."""
        if self.token is not None and hmac.compare_digest(presented.encode(), self.token.encode()):
            return Principal(BOOTSTRAP_NAME, Role.admin), ""
        stored = self.book.verify(yard, presented)
        return Principal(stored.name, stored.role), stored.token_id

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


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a token's name and role. ``name`` is None when the server
    has no tokens at all (everyone may do everything, as before tokens existed), or for
    a request without a token that ``public_read`` lets read."""

    name: str | None
    role: Role


ANONYMOUS = Principal(name=None, role=Role.admin)
PUBLIC_READER = Principal(name=None, role=Role.reader)

PUBLIC = None  # a route anyone may use, token or not

# The role each route needs, by (method, route path template): the one place that
# decides. A read (GET, HEAD) not listed needs ``reader``; a write not listed needs
# ``admin`` (fail closed: tests/test_roles.py checks that every write route is listed).
READ, REC, OPS = Role.reader, Role.recorder, Role.operator
ROUTE_ROLES: dict[tuple[str, str], Role | None] = {
    # API: recording (docs/remote.md)
    ("POST", "/api/v1/scenarios"): REC,
    ("POST", "/api/v1/configs"): REC,
    ("POST", "/api/v1/runs"): REC,
    ("PATCH", "/api/v1/runs/{run_id}"): REC,
    ("POST", "/api/v1/runs/{run_id}/finish"): REC,
    ("PUT", "/api/v1/runs/{run_id}/files/{path:path}"): REC,
    ("PUT", "/api/v1/runs/{run_id}/files"): REC,
    ("POST", "/api/v1/runs:batch"): REC,
    ("POST", "/api/v1/plans"): REC,
    ("POST", "/api/v1/plans/{plan_version_id}/run"): REC,
    ("POST", "/api/v1/plans/{plan_version_id}/aggregate"): REC,
    ("PUT", "/api/v1/views/{name}"): REC,
    ("DELETE", "/api/v1/views/{name}"): REC,
    # API: operating
    ("POST", "/api/v1/scenarios/{scenario}/lock"): OPS,
    ("POST", "/api/v1/scenarios/{scenario}/unlock"): OPS,
    ("POST", "/api/v1/runs/{run_id}/pin"): OPS,
    ("POST", "/api/v1/runs/{run_id}/unpin"): OPS,
    ("POST", "/api/v1/runs/{run_id}/archive"): OPS,
    ("POST", "/api/v1/runs/{run_id}/restore"): OPS,
    ("POST", "/api/v1/jobs/{job_id}/cancel"): OPS,
    ("POST", "/api/v1/archives"): OPS,
    ("POST", "/api/v1/archives/{batch_id}/restore"): OPS,
    # UI: logging in is open; logging out is for anyone logged in
    ("GET", "/ui/login"): PUBLIC,
    ("POST", "/ui/login"): PUBLIC,
    ("POST", "/ui/logout"): READ,
    ("POST", "/ui/scenarios/{sid}/run"): READ,  # the closed legacy path: changes nothing
    ("POST", "/ui/plans/new"): REC,
    ("POST", "/ui/plans/{plan_version_id}/run"): REC,
    ("POST", "/ui/plans/{plan_version_id}/aggregate"): REC,
    ("POST", "/ui/jobs/aggregate"): REC,
    ("POST", "/ui/views"): REC,
    ("POST", "/ui/scenarios/{scenario}/lock"): OPS,
    ("POST", "/ui/scenarios/{scenario}/unlock"): OPS,
    ("POST", "/ui/runs/{run_id}/pin"): OPS,
    ("POST", "/ui/runs/{run_id}/unpin"): OPS,
    ("POST", "/ui/runs/{run_id}/archive/preview"): OPS,
    ("POST", "/ui/runs/{run_id}/archive"): OPS,
    ("POST", "/ui/runs/{run_id}/restore/preview"): OPS,
    ("POST", "/ui/runs/{run_id}/restore"): OPS,
    ("POST", "/ui/jobs/{job_id}/cancel"): OPS,
    ("POST", "/ui/archives/preview"): OPS,
    ("POST", "/ui/archives/run"): OPS,
    ("POST", "/ui/archives/{batch_id}/restore/preview"): OPS,
    ("POST", "/ui/archives/{batch_id}/restore"): OPS,
}
del READ, REC, OPS


def role_needed(method: str, path: str) -> Role | None:
    """The role (method, route path template) needs; None: anyone."""
    method = "GET" if method == "HEAD" else method
    if (method, path) in ROUTE_ROLES:
        return ROUTE_ROLES[(method, path)]
    return Role.reader if method in SAFE_METHODS else Role.admin


def route_path(request: Request) -> str:
    """The template of the route that matched, with every prefix it was included under
    (``/ui/runs/{run_id}/pin``). FastAPI ≥ 0.16x includes routers lazily: ``scope["route"]``
    is then the route as its own router declared it (``/runs/{run_id}/pin``), and the
    included template is on the effective route context. An unknown template is never
    in ``ROUTE_ROLES``: a write then needs admin (fail closed)."""
    fastapi_scope = request.scope.get("fastapi")
    context = (
        fastapi_scope.get("effective_route_context") if isinstance(fastapi_scope, dict) else None
    )
    path = getattr(context, "path", None)
    if not isinstance(path, str) or not path:
        path = getattr(request.scope.get("route"), "path", None)
    return path if isinstance(path, str) else request.url.path


def principal_of(request: Request) -> Principal:
    """The principal the auth dependency found for this request (set on request.state)."""
    found = getattr(request.state, "principal", None)
    return found if isinstance(found, Principal) else ANONYMOUS


def who_of(request: Request) -> str | None:
    """The name that changes made by this request are recorded under (None: nobody
    logged in, on a server without tokens)."""
    return principal_of(request).name


def _authenticate(request: Request, guard: Guard, yard: Yard) -> Principal | None:
    """The principal of the request's bearer token, else (reads, and UI forms) of its
    session cookie; None when it has neither. A bad bearer token is a 401 even where
    none is needed: a client with a wrong token should hear so."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, presented = header.partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented:
            raise Unauthorized(
                "the Authorization header is not 'Bearer <token>'",
                hint="send 'Authorization: Bearer <token>'",
            )
        principal, _ = guard.principal_of_secret(yard, presented)
        return principal
    # The session cookie: for every UI request, and API reads (a page's JSON twin);
    # never an API write, which must name its token (no cookie-borne writes).
    if request.method in SAFE_METHODS or request.url.path.startswith("/ui"):
        return guard.session_principal(yard, request.cookies.get(SESSION_COOKIE))
    return None


_bearer = HTTPBearer(
    auto_error=False,
    description="a token: RUNYARD_TOKEN or one made by `runyard token create`",
)


async def require_access(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> None:
    """FastAPI dependency of every API and UI route: who is asking (set on
    ``request.state.principal``), and whether their role may use this route
    (``ROUTE_ROLES``). 401 without a valid token, 403 for a role too low.

    Decided on the event loop when memory suffices (nearly always: a known secret, a
    token snapshot under a second old); otherwise in a worker thread, so a first scrypt
    check (tens of milliseconds) or a re-read of the token table never holds up the
    loop. The thread hop costs more than the check itself, hence the two paths."""
    if guard_of(request).decides_quickly(request):
        _check_access(request)
    else:
        await run_in_threadpool(_check_access, request)


def _check_access(request: Request) -> None:
    guard = guard_of(request)
    yard: Yard = request.app.state.yard
    needed = role_needed(request.method, route_path(request))
    if not guard.tokens_required(yard):
        request.state.principal = ANONYMOUS
        return
    if needed is PUBLIC:
        request.state.principal = PUBLIC_READER
        return
    principal = _authenticate(request, guard, yard)
    if principal is None:
        if needed is Role.reader and guard.public_read:
            request.state.principal = PUBLIC_READER
            return
        raise Unauthorized(
            "this server needs a token" + ("" if needed is Role.reader else " for this"),
            hint="send 'Authorization: Bearer <token>' (the UI: log in at /ui/login)",
        )
    request.state.principal = principal
    if principal.role < needed:
        raise Forbidden(
            f"this needs the {needed.name} role; the token {principal.name!r} is a "
            f"{principal.role.name}",
            hint=f"use a token with the {needed.name} role or above",
        )


# The name the write routes of the API depend on: the same check (the table knows which
# role each write needs).
require_api_write = require_access


async def require_ui_write(
    request: Request, _access: Annotated[None, Depends(require_access)]
) -> None:
    """FastAPI dependency of every ``/ui`` form post: the role (``require_access``), then
    the CSRF token (the form's ``csrf_token`` field, or htmx's ``X-CSRF-Token`` header).
    The app has checked ``Origin`` before any route runs."""
    guard = guard_of(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    presented = request.headers.get(CSRF_HEADER)
    if presented is None:
        form = await request.form()  # Starlette caches it for the route's Form fields
        value = form.get(CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    guard.check_csrf(cookie, presented)


def acting(request: Request) -> AbstractContextManager[None]:
    """Around a lifecycle action of a route: the execution log's "who" is the token's
    name, "<name> via runyard serve" (unchanged on a server without tokens)."""
    name = who_of(request)
    if name is None:
        return nullcontext()
    return acting_as(f"{name} via runyard serve")
