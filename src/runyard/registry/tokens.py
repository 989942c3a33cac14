"""Named API tokens: ``runyard token create NAME --role R``, list, revoke, and checking a
presented secret (``runyard serve``).

A token's secret is ``ryt_<id>_<secret>``: ``id`` is a random public id (not the name)
that finds the token, ``secret`` the part that proves it. Only a slow hash is stored
(scrypt, ``scrypt$n$r$p$<id>$<salt>$<hash>`` in ``api_tokens.secret_hash``); the secret
itself is printed once, at creation, and kept nowhere.

scrypt is slow on purpose (tens of milliseconds), far too slow for every request of a
server that must answer thousands a second. So a server process (``TokenBook``):

- keeps a snapshot of the whole ``api_tokens`` table (a yard has a handful of tokens),
  re-read at most every ``REFRESH_SECONDS`` (1 s): a ``token revoke`` or ``token create``
  in another process takes effect on every server within a second;
- remembers which presented secret matched which stored hash (by the secret's sha256,
  never the secret), so scrypt runs once per secret and process; the remembered hash is
  compared (``hmac.compare_digest``) with the snapshot's current one on every request, and
  revocation, expiry and role always come from the snapshot.

A named token "is configured" until it is revoked: one that has only expired still closes
the server to requests without a token (expiry must never open a server).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, select, update
from sqlalchemy.exc import SQLAlchemyError

from runyard.db.tables import api_tokens
from runyard.errors import Conflict, Invalid, NotFound, RunyardError, Unauthorized
from runyard.registry.common import as_aware, utcnow

if TYPE_CHECKING:
    from runyard.yard import Yard


class Role(IntEnum):
    """What a token may do; each role may do everything the ones below it may."""

    reader = 1  # every GET
    recorder = 2  # + record runs, upload files, create scenarios, configs and plans, run plans
    operator = 3  # + pin, lock, cancel, archive, restore, retention
    admin = 4  # + tokens and purge


def parse_role(text: str) -> Role:
    try:
        return Role[text]
    except KeyError:
        names = ", ".join(r.name for r in Role)
        raise Invalid(f"unknown role {text!r}; roles: {names}") from None


BOOTSTRAP_NAME = "RUNYARD_TOKEN"  # the principal name of the RUNYARD_TOKEN secret
PREFIX = "ryt_"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")
ID_RE = re.compile(r"[a-z0-9]{16}")
MAX_TOKENS = 1000  # rows, revoked ones included: the snapshot holds them all
MAX_EXPIRES_DAYS = 36_500
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
REFRESH_SECONDS = 1.0  # how stale a server's view of the table may be
LAST_USED_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often
MATCH_CACHE_SIZE = 4096


class ApiToken(BaseModel):
    """A named token as ``token list`` shows it: never its secret, nor its hash."""

    model_config = ConfigDict(frozen=True)

    name: str
    role: str = Field(description="reader, recorder, operator or admin")
    status: str = Field(description="active, expired or revoked")
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    created_by: str | None = Field(description="who created it (user@host)")
    last_used_at: datetime | None = Field(description="updated at most once a minute")


class CreatedToken(BaseModel):
    """What ``token create`` answers: the token, and its secret, shown this once."""

    token: ApiToken
    secret: str


def _status(row: Any, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


def _to_model(row: Any, now: datetime) -> ApiToken:
    return ApiToken(
        name=row.name,
        role=row.role,
        status=_status(row, now),
        created_at=as_aware(row.created_at),
        expires_at=as_aware(row.expires_at),
        revoked_at=as_aware(row.revoked_at),
        created_by=row.created_by,
        last_used_at=as_aware(row.last_used_at),
    )


def validate_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise Invalid(
            f"invalid token name {name[:120]!r}",
            hint="1-100 characters: letters, digits and . _ @ -, starting with a letter or digit",
        )
    if name.upper() == BOOTSTRAP_NAME:
        raise Invalid(f"{name!r} is reserved for the RUNYARD_TOKEN secret")
    return name


# --- the hash ------------------------------------------------------------------------


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 2**20, dklen=32)


def hash_secret(token_id: str, secret: str) -> str:
    """``scrypt$n$r$p$<id>$<salt hex>$<hash hex>`` of the whole presented secret."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${token_id}${salt.hex()}${digest.hex()}"


def id_of_hash(secret_hash: str) -> str | None:
    parts = secret_hash.split("$")
    return parts[4] if len(parts) == 7 and parts[0] == "scrypt" else None


def secret_matches(secret: str, secret_hash: str) -> bool:
    """The slow check: scrypt of ``secret`` under the stored salt and parameters, compared
    in constant time."""
    parts = secret_hash.split("$")
    if len(parts) != 7 or parts[0] != "scrypt":
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, expected = bytes.fromhex(parts[5]), bytes.fromhex(parts[6])
    except ValueError:
        return False
    return hmac.compare_digest(_scrypt(secret, salt, n, r, p), expected)


def token_id_of(presented: str) -> str | None:
    """The public id of a presented ``ryt_<id>_<secret>``, None for anything else."""
    if not presented.startswith(PREFIX):
        return None
    token_id, sep, rest = presented[len(PREFIX) :].partition("_")
    return token_id if sep and rest and ID_RE.fullmatch(token_id) else None


# --- create, list, revoke ------------------------------------------------------------


def create_token(
    conn: Connection,
    name: str,
    role: Role,
    expires_days: float | None = None,
    created_by: str | None = None,
) -> CreatedToken:
    """A new token; its secret is in the answer and nowhere else. A revoked token's name
    may be used again (the new token has a new id: the old one's sessions stay dead)."""
    validate_name(name)
    if expires_days is not None and not 0 < expires_days <= MAX_EXPIRES_DAYS:
        raise Invalid(f"--expires is a number of days between 0 and {MAX_EXPIRES_DAYS}")
    rows = conn.execute(select(api_tokens.c.name, api_tokens.c.secret_hash)).all()
    existing = conn.execute(select(api_tokens).where(api_tokens.c.name == name)).first()
    if existing is not None and existing.revoked_at is None:
        raise Conflict(
            f"a token named {name!r} exists already",
            hint=f"revoke it first (runyard token revoke {name}) or choose another name",
        )
    if existing is None and len(rows) >= MAX_TOKENS:
        raise Conflict(f"a yard keeps at most {MAX_TOKENS} tokens, revoked ones included")
    taken = {id_of_hash(row.secret_hash) for row in rows}
    token_id = secrets.token_hex(8)
    while token_id in taken:  # pragma: no cover - 64 random bits
        token_id = secrets.token_hex(8)
    secret = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    now = utcnow().replace(microsecond=0)
    values = {
        "role": role.name,
        "secret_hash": hash_secret(token_id, secret),
        "created_at": now,
        "expires_at": now + timedelta(days=expires_days) if expires_days is not None else None,
        "revoked_at": None,
        "created_by": created_by,
        "last_used_at": None,
    }
    if existing is None:
        conn.execute(api_tokens.insert().values(name=name, **values))
    else:
        conn.execute(update(api_tokens).where(api_tokens.c.name == name).values(**values))
    row = conn.execute(select(api_tokens).where(api_tokens.c.name == name)).one()
    return CreatedToken(token=_to_model(row, now), secret=secret)


def list_tokens(conn: Connection) -> list[ApiToken]:
    """Every token, revoked ones too, by name."""
    now = utcnow()
    rows = conn.execute(select(api_tokens).order_by(api_tokens.c.name)).all()
    return [_to_model(row, now) for row in rows]


def revoke_token(conn: Connection, name: str) -> ApiToken:
    """Revoke ``name`` (again: no change). Servers stop taking it within a second."""
    row = conn.execute(select(api_tokens).where(api_tokens.c.name == name)).first()
    if row is None:
        raise NotFound(f"no token named {name!r}", hint="runyard token list")
    now = utcnow()
    if row.revoked_at is None:
        revoked = now.replace(microsecond=0)
        conn.execute(update(api_tokens).where(api_tokens.c.name == name).values(revoked_at=revoked))
        row = conn.execute(select(api_tokens).where(api_tokens.c.name == name)).one()
    return _to_model(row, now)


def any_live_token(conn: Connection) -> bool:
    """True when a named token that is not revoked exists (expired ones count)."""
    found = conn.execute(
        select(api_tokens.c.name).where(api_tokens.c.revoked_at.is_(None)).limit(1)
    ).first()
    return found is not None


def touch_last_used(conn: Connection, name: str, when: datetime) -> None:
    conn.execute(update(api_tokens).where(api_tokens.c.name == name).values(last_used_at=when))


# --- checking presented secrets (the server) ------------------------------------------


@dataclass(frozen=True)
class StoredToken:
    name: str
    role: Role
    token_id: str
    secret_hash: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def refusal(self, now: datetime) -> str | None:
        """Why this token is not taken now, or None."""
        if self.revoked_at is not None:
            return f"the token {self.name!r} was revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return f"the token {self.name!r} expired"
        return None


@dataclass(frozen=True)
class Snapshot:
    loaded_at: float
    by_id: dict[str, StoredToken]
    by_name: dict[str, StoredToken]

    any_live: bool


def load_tokens(conn: Connection) -> list[StoredToken]:
    out: list[StoredToken] = []
    for row in conn.execute(select(api_tokens)).all():
        token_id = id_of_hash(row.secret_hash)
        if token_id is None or row.role not in Role.__members__:
            continue  # not made by this runyard: never taken
        out.append(
            StoredToken(
                name=row.name,
                role=Role[row.role],
                token_id=token_id,
                secret_hash=row.secret_hash,
                expires_at=row.expires_at,
                revoked_at=row.revoked_at,
                last_used_at=row.last_used_at,
            )
        )
    return out


@dataclass
class TokenBook:
    """One server process's view of the yard's tokens (see the module's docstring)."""

    refresh_seconds: float = REFRESH_SECONDS
    clock: Callable[[], float] = time.monotonic
    _snapshot: Snapshot | None = None
    _matched: dict[str, str] = field(default_factory=dict)  # sha256(secret) -> hash
    _touched: dict[str, datetime] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self, yard: Yard) -> Snapshot:
        """The table as read at most ``refresh_seconds`` ago."""
        current = self._snapshot
        if current is not None and self.clock() - current.loaded_at < self.refresh_seconds:
            return current
        with self._lock:
            current = self._snapshot
            if current is not None and self.clock() - current.loaded_at < self.refresh_seconds:
                return current
            with yard.read() as conn:
                stored = load_tokens(conn)
            current = Snapshot(
                loaded_at=self.clock(),
                by_id={t.token_id: t for t in stored},
                by_name={t.name: t for t in stored},
                any_live=any(t.revoked_at is None for t in stored),
            )
            self._snapshot = current
            return current

    def is_fresh(self) -> bool:
        """Whether ``snapshot`` would answer without reading the table."""
        current = self._snapshot
        return current is not None and self.clock() - current.loaded_at < self.refresh_seconds

    def is_warm(self, presented: str) -> bool:
        """Whether ``verify(presented)`` would answer from memory: a fresh snapshot, a
        secret this process matched before (no scrypt), and no ``last_used_at`` due."""
        current = self._snapshot
        if current is None or not self.is_fresh():
            return False
        token_id = token_id_of(presented)
        stored = current.by_id.get(token_id) if token_id else None
        if stored is None:
            return True  # an unknown id is refused from memory
        if hashlib.sha256(presented.encode()).hexdigest() not in self._matched:
            return False
        last = self._touched.get(stored.name) or stored.last_used_at
        return last is not None and utcnow() - last < LAST_USED_EVERY

    def forget(self) -> None:
        """Re-read the table at the next request (after a change made in this process)."""
        self._snapshot = None

    def any_configured(self, yard: Yard) -> bool:
        return self.snapshot(yard).any_live

    def verify(self, yard: Yard, presented: str) -> StoredToken:
        """The live token whose secret ``presented`` is; Unauthorized otherwise."""
        token_id = token_id_of(presented)
        stored = self.snapshot(yard).by_id.get(token_id) if token_id else None
        if stored is None:
            raise Unauthorized(
                "the token does not match any of this yard's tokens", hint="runyard token list"
            )
        key = hashlib.sha256(presented.encode()).hexdigest()
        remembered = self._matched.get(key)
        if remembered is None or not hmac.compare_digest(remembered, stored.secret_hash):
            if not secret_matches(presented, stored.secret_hash):
                raise Unauthorized("the token does not match", hint="check the token's secret")
            with self._lock:
                if len(self._matched) >= MATCH_CACHE_SIZE:
                    self._matched.clear()
                self._matched[key] = stored.secret_hash
        self._check_live(stored)
        self._touch(yard, stored)
        return stored

    def by_session(self, yard: Yard, name: str, token_id: str) -> StoredToken:
        """The live token a UI session was opened with: the same name and id (a token
        re-created under a revoked one's name does not inherit its sessions)."""
        stored = self.snapshot(yard).by_name.get(name)
        if stored is None or not hmac.compare_digest(stored.token_id, token_id):
            raise Unauthorized(f"the token {name!r} of this session was revoked")
        self._check_live(stored)
        return stored

    @staticmethod
    def _check_live(stored: StoredToken) -> None:
        refusal = stored.refusal(utcnow())
        if refusal is not None:
            raise Unauthorized(refusal, hint="ask an admin for a new token")

    def _touch(self, yard: Yard, stored: StoredToken) -> None:
        """``last_used_at``, written at most once a minute per token and process; a
        failure to write it never fails the request."""
        now = utcnow()
        last = self._touched.get(stored.name) or stored.last_used_at
        if last is not None and now - last < LAST_USED_EVERY:
            return
        self._touched[stored.name] = now
        try:
            with yard.write() as conn:
                touch_last_used(conn, stored.name, now.replace(microsecond=0))
        except (SQLAlchemyError, RunyardError):
            pass  # bookkeeping only
