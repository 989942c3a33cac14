"""Idempotency keys of the web API's creates: a retried request gets the first answer.

A client sends ``Idempotency-Key: K`` with a create (a run, a finish, a batch, a
scenario, a config, a plan). The first request that completes stores, in the table
``idempotency_keys`` and **in the same transaction as what it created**, the route, the
sha256 of its body, and its answer (status and JSON). So a server killed mid-request
leaves either both the create and its key or neither.

- same key, same route, same body: the stored answer (``lookup``);
- same key, another route or body: ``KeyReused`` (422 ``idempotency_key_reused``);
- two requests with one key at once: both may create; the second's ``remember`` fails on
  the primary key with ``KeyTaken``, its transaction (and its create) is rolled back, and
  the adapter answers what the first stored.

Keys are scoped by principal (the token's name, ``""`` without tokens). A key is kept
for ``KEY_LIFETIME`` (a week: far beyond any client's retries); ``remember`` deletes older
ones, at most once an hour per process, so the table stays small without a job.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection, delete, select
from sqlalchemy.exc import IntegrityError

from runyard.db.tables import idempotency_keys
from runyard.errors import Invalid
from runyard.registry.common import utcnow

KEY_RE = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,198}[\x21-\x7e]|[\x21-\x7e]")
"""1-200 printable ASCII characters, no space at either end."""

KEY_LIFETIME = timedelta(days=7)
PRUNE_EVERY_SECONDS = 3600.0
_next_prune_at = 0.0  # time.monotonic() after which this process prunes again


class KeyReused(Invalid):
    code = "idempotency_key_reused"


class KeyTaken(Exception):
    """Raised by ``remember`` when a concurrent request stored the key first: the
    transaction it ran in must be rolled back (and whatever it created undone)."""


@dataclass(frozen=True)
class IdempotentRequest:
    principal: str
    key: str
    route: str
    digest: str


@dataclass(frozen=True)
class StoredAnswer:
    status_code: int
    body: str


def validate_key(key: str) -> str:
    if not KEY_RE.fullmatch(key):
        raise Invalid(
            "an Idempotency-Key is 1 to 200 printable ASCII characters",
            hint="a random UUID per logical request is a good key",
        )
    return key


def request_for(principal: str | None, key: str, route: str, body: bytes) -> IdempotentRequest:
    """The request's identity: who, which key, which route, which body (its sha256)."""
    return IdempotentRequest(
        principal=principal or "",
        key=validate_key(key),
        route=route,
        digest=hashlib.sha256(body).hexdigest(),
    )


def lookup(conn: Connection, request: IdempotentRequest) -> StoredAnswer | None:
    """The answer stored for this key; None when there is none; ``KeyReused`` when the
    key was used for another route or body."""
    row = conn.execute(
        select(idempotency_keys).where(
            idempotency_keys.c.principal == request.principal,
            idempotency_keys.c.key == request.key,
        )
    ).first()
    if row is None:
        return None
    if row.route != request.route or row.request_digest != request.digest:
        raise KeyReused(
            f"the Idempotency-Key {request.key!r} was used for another request "
            f"({row.route}, another body)",
            hint="use a new key for each new request; reuse one only to retry the same request",
        )
    return StoredAnswer(status_code=row.status_code, body=row.response)


def remember(conn: Connection, request: IdempotentRequest, status_code: int, body: str) -> None:
    """Store the answer, in the caller's transaction; ``KeyTaken`` when a concurrent
    request stored it first (on PostgreSQL the transaction is then unusable: the caller
    must let it roll back)."""
    try:
        with conn.begin_nested():
            conn.execute(
                idempotency_keys.insert().values(
                    principal=request.principal,
                    key=request.key,
                    route=request.route,
                    request_digest=request.digest,
                    status_code=status_code,
                    response=body,
                    created_at=utcnow(),
                )
            )
    except IntegrityError:
        raise KeyTaken(request.key) from None
    _prune_if_due(conn)


def _prune_if_due(conn: Connection) -> None:
    """Delete keys older than ``KEY_LIFETIME`` (indexed on ``created_at``), at most once
    per ``PRUNE_EVERY_SECONDS`` in this process."""
    global _next_prune_at
    now = time.monotonic()
    if now < _next_prune_at:
        return
    _next_prune_at = now + PRUNE_EVERY_SECONDS
    conn.execute(
        delete(idempotency_keys).where(idempotency_keys.c.created_at < utcnow() - KEY_LIFETIME)
    )
