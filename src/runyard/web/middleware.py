"""The server's guards that run before any route: pure ASGI middleware, each refusing
one kind of request with the app's usual error (``web.errors``) and passing every
other request on untouched.

- ``RefuseNulMiddleware``: a NUL byte in the path or the query (422);
- ``ForeignOriginMiddleware``: a write from a page of another origin (403);
- ``BodyLimitMiddleware``: a request body over the size limit (413), and a JSON body
  that breaks runyard's JSON limits (422: too deep, a number outside the float64
  range, a lone surrogate, not JSON), checked before a route reads it, so nothing is
  ever committed from it. Two routes differ: a file upload (``PUT /api/v1/runs/{id}/
  files…``) is streamed to its route untouched (it counts against ``[web]
  max_upload_bytes`` itself), and ``POST /api/v1/runs:batch`` may carry up to
  ``MAX_BATCH_BYTES`` of JSON (10,000 runs), each record's fields held to the usual
  limits.
"""

from __future__ import annotations

import ipaddress
import re
from email.message import Message

from fastapi import Request
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as ASGIMessage

from runyard.canonical import (
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    check_json_limits,
    parse_unchecked,
)
from runyard.errors import Forbidden, Invalid
from runyard.web.auth import SAFE_METHODS, check_origin
from runyard.web.errors import answer, answer_error

# A batch of runs (``POST /api/v1/runs:batch``): up to 10,000 records of about 1.6 KB each.
MAX_BATCH_BYTES = 16 * 1024 * 1024
_BATCH_PATH = re.compile(r"/api/v1/runs:batch/?")
_UPLOAD_PATH = re.compile(r"/api/v1/runs/[^/]+/files(/.*)?")

# A form (the UI's) may carry a JSON text in a field, percent-encoded: up to three bytes
# for each of its bytes, so a JSON text at the limit still fits, and nothing larger does.
MAX_FORM_BYTES = 3 * MAX_JSON_BYTES + 64 * 1024


_BRACKETED_HOST = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::[0-9]{1,5})?")
_PLAIN_HOST = re.compile(r"([0-9.]+)(?::[0-9]{1,5})?")


def _is_ip_literal(host: str) -> bool:
    """``10.0.0.5``, ``[::1]``, with or without a port (and a bare ``::1``)."""
    found = _BRACKETED_HOST.fullmatch(host) or _PLAIN_HOST.fullmatch(host)
    address = found.group(1) if found else host
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


class HostCheckMiddleware(TrustedHostMiddleware):
    """Starlette's Host check (against DNS rebinding), which also lets through a Host
    that is an IP address: rebinding needs a host *name* that an attacker's DNS points
    at this server, so an address typed by a user (``http://10.0.0.5:8765``) is safe,
    and a pipeline on another machine needs no ``--allowed-host`` for it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not self.allow_any:
            host = Headers(scope=scope).get("host", "")
            if host and _is_ip_literal(host):
                await self.app(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


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
            message = "a NUL byte (%00) is not allowed in a path or a query"
            response = answer(Request(scope, receive), 422, "invalid", message)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class ForeignOriginMiddleware:
    """Every write (any method but GET, HEAD and OPTIONS, on any path, with a body or
    not) from a browser page of another origin is refused with 403 here, before a route
    or its body is read: ``auth.check_origin`` compares scheme, host and port."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            request = Request(scope, receive)
            try:
                check_origin(request)
            except Forbidden as exc:
                await answer_error(request, exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def is_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of this type as JSON (no type at all counts)."""
    if not content_type:
        return True
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class _TooLarge(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, list[ASGIMessage]]:
    """The request's body (at most ``limit`` bytes, else ``_TooLarge``), and any other
    message received on the way (a disconnect), to hand on."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), [message]
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), []


def check_batch_body(body: bytes) -> None:
    """``check_json_body`` for a batch of runs: ``{"runs": [record, …]}`` where each
    record's fields are held to the limits a single run's body is."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"the request body is not UTF-8 text (byte {exc.start})") from None
    value = parse_unchecked(text, "the request body")
    records = value.get("runs") if isinstance(value, dict) else None
    if not isinstance(value, dict) or not isinstance(records, list):
        check_json_limits(value, "the request body")
        return
    check_json_limits(dict.fromkeys(value), "the request body")
    for key, field in value.items():
        if key != "runs":
            check_json_limits(field, key)
    for index, record in enumerate(records):
        if isinstance(record, dict):
            check_json_limits(dict.fromkeys(record), f"runs[{index}]")
            for key, field in record.items():
                check_json_limits(field, f"runs[{index}].{key}")
        else:
            check_json_limits(record, f"runs[{index}]")


def check_json_body(body: bytes) -> None:
    """Invalid unless ``body`` is UTF-8 JSON within runyard's JSON limits.

    The limits are those of every value runyard stores (``canonical.check_json_limits``:
    depth, float64 numbers, no lone surrogates), applied to each field of the body: a
    body is one level around the values it carries (``{"params": …}``), so a value as
    deep as the CLI takes is taken here too. Numbers are read exactly (``1e400`` is not
    infinity here), and a key given twice is refused rather than one value dropped.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"the request body is not UTF-8 text (byte {exc.start})") from None
    value = parse_unchecked(text, "the request body")
    if not isinstance(value, dict):
        check_json_limits(value, "the request body")
        return
    check_json_limits(dict.fromkeys(value), "the request body")  # its keys
    for key, field in value.items():
        check_json_limits(field, key)


class BodyLimitMiddleware:
    """A write's body is read here first: more than ``MAX_JSON_BYTES`` of JSON (or
    ``MAX_FORM_BYTES`` of anything else) is a 413, a JSON body that breaks runyard's
    JSON limits a 422, both before any route runs. The body then goes on to the route
    as it came."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if scope["method"] == "PUT" and _UPLOAD_PATH.fullmatch(path):
            await self.app(scope, receive, send)  # streamed; the route enforces its limit
            return
        request = Request(scope, receive)
        json_body = is_json(request.headers.get("content-type"))
        batch = json_body and scope["method"] == "POST" and bool(_BATCH_PATH.fullmatch(path))
        limit = MAX_BATCH_BYTES if batch else MAX_JSON_BYTES if json_body else MAX_FORM_BYTES
        declared = request.headers.get("content-length", "")
        try:
            if declared.isdigit() and int(declared) > limit:
                raise _TooLarge
            body, pending = await _read_body(receive, limit)
        except _TooLarge:
            what = "a JSON request body" if json_body else "a request body"
            message = f"{what} is at most {limit} bytes"
            hint = f"the JSON limit is {MAX_JSON_BYTES} bytes and {MAX_JSON_DEPTH} levels"
            await answer(request, 413, "invalid", message, hint)(scope, receive, send)
            return
        if json_body and body:
            try:
                (check_batch_body if batch else check_json_body)(body)
            except Invalid as exc:
                await answer_error(request, exc)(scope, receive, send)
                return
        replay: list[ASGIMessage] = [
            {"type": "http.request", "body": body, "more_body": False},
            *pending,
        ]

        async def receive_again() -> ASGIMessage:
            return replay.pop(0) if replay else await receive()

        await self.app(scope, receive_again, send)
