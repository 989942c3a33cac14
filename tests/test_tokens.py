"""runyard.registry.tokens and ``runyard token``: named tokens with roles, only a slow
hash stored, a server's snapshot of them (revocation within a second), remembered
matches, constant-time comparisons."""

from __future__ import annotations

import hmac
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

import runyard
from runyard.db.tables import api_tokens
from runyard.errors import Conflict, Invalid, NotFound, Unauthorized
from runyard.lifecycle import execlog
from runyard.registry import tokens
from runyard.registry.common import utcnow
from runyard.registry.tokens import Role, TokenBook
from tests.conftest import Cli


def _create(yard: runyard.Yard, name: str, role: Role = Role.reader, **kw: Any) -> str:
    with yard.write() as conn:
        return tokens.create_token(conn, name, role, **kw).secret


def _rows(yard: runyard.Yard) -> list[Any]:
    with yard.read() as conn:
        return list(conn.execute(select(api_tokens)).all())


# --- the CLI -----------------------------------------------------------------------


def test_create_prints_the_secret_once_and_stores_only_a_slow_hash(cli: Cli, yard_path):
    made = cli.ok("token", "create", "ci", "--role", "recorder", "--expires", "30")
    secret = made["secret"]
    assert secret.startswith("ryt_") and len(secret) > 40
    assert made["token"]["name"] == "ci" and made["token"]["role"] == "recorder"
    assert made["token"]["status"] == "active" and made["token"]["expires_at"]
    listed = cli.ok("token", "list")
    assert [t["name"] for t in listed["items"]] == ["ci"]
    assert secret not in str(listed) and "secret" not in listed["items"][0]
    with runyard.open_yard(yard_path) as yard:
        (row,) = _rows(yard)
    assert row.secret_hash.startswith("scrypt$16384$8$1$") and secret not in row.secret_hash
    # The public id is not the name (not "ci" in the secret: random base64 holds those
    # two letters in about one secret of seventy, which made this test flaky).
    public_id = tokens.token_id_of(secret)
    assert public_id is not None and public_id != "ci" and public_id in row.secret_hash
    # Without --json: the secret alone on stdout's last line (for $(...)), the rest a table.
    plain = cli("token", "create", "ops", "--role", "operator")
    assert plain.exit_code == 0 and plain.stdout.strip().splitlines()[-1].startswith("ryt_")


def test_cli_refusals_use_the_exit_codes(cli: Cli):
    cli.ok("token", "create", "ci", "--role", "reader")
    cases = [
        (("token", "create", "ci", "--role", "reader"), 4, "conflict"),
        (("token", "create", "x", "--role", "boss"), 5, "invalid"),
        (("token", "create", "bad name", "--role", "reader"), 5, "invalid"),
        (("token", "create", "runyard_token", "--role", "admin"), 5, "invalid"),
        (("token", "create", "x", "--role", "reader", "--expires", "0"), 5, "invalid"),
        (("token", "revoke", "nobody"), 3, "not_found"),
    ]
    for args, code, error in cases:
        result = cli(*args, "--json")
        assert result.exit_code == code, (args, result.stdout)
        assert result.json["error"]["code"] == error


def test_revoke_then_the_name_may_be_used_again(cli: Cli):
    first = cli.ok("token", "create", "ci", "--role", "admin")["secret"]
    revoked = cli.ok("token", "revoke", "ci")
    assert revoked["status"] == "revoked" and revoked["revoked_at"]
    assert cli.ok("token", "revoke", "ci")["status"] == "revoked"  # again: no change
    again = cli.ok("token", "create", "ci", "--role", "reader")
    assert again["token"]["role"] == "reader" and again["secret"] != first
    assert tokens.token_id_of(again["secret"]) != tokens.token_id_of(first)
    plain = cli("token", "revoke", "ci")
    assert plain.exit_code == 0 and "open to everyone" in plain.stderr


def test_token_commands_refuse_server(cli: Cli):
    for args in (("token", "list"), ("token", "create", "a", "--role", "reader")):
        result = cli("--server", "http://127.0.0.1:9", *args, "--json")
        assert result.exit_code == 5 and "--server" in result.json["error"]["message"]


def test_the_command_module_imports_no_database_library():
    probe = "import sys, runyard.cli.token_cmd; print('sqlalchemy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


# --- the server's view: TokenBook ----------------------------------------------------


def test_verify_takes_the_secret_and_nothing_else(yard: runyard.Yard):
    secret = _create(yard, "ci", Role.recorder)
    book = TokenBook()
    stored = book.verify(yard, secret)
    assert stored.name == "ci" and stored.role is Role.recorder
    token_id = tokens.token_id_of(secret)
    for wrong in (
        secret[:-1] + ("A" if secret[-1] != "A" else "B"),  # the right id, a wrong secret
        f"ryt_{'0' * 16}_whatever",  # an unknown id
        "ryt_short_x",
        "not-a-token",
        f"ryt_{token_id}_",
    ):
        with pytest.raises(Unauthorized):
            book.verify(yard, wrong)


def test_scrypt_runs_once_per_secret_and_the_match_is_remembered(yard, monkeypatch):
    secret = _create(yard, "ci")
    calls: list[str] = []
    real = tokens.secret_matches

    def counting(presented: str, secret_hash: str) -> bool:
        calls.append(presented)
        return real(presented, secret_hash)

    monkeypatch.setattr(tokens, "secret_matches", counting)
    book = TokenBook()
    for _ in range(5):
        book.verify(yard, secret)
    assert len(calls) == 1
    # A wrong secret is never remembered: each try pays for scrypt.
    for _ in range(2):
        with pytest.raises(Unauthorized):
            book.verify(yard, secret + "x")
    assert len(calls) == 3


def test_comparisons_are_constant_time(yard, monkeypatch):
    secret = _create(yard, "ci")
    seen: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    book = TokenBook()
    stored = book.verify(yard, secret)  # scrypt: the derived key against the stored one
    assert any(isinstance(a, bytes) and len(a) == 32 for a, _ in seen)
    seen.clear()
    book.verify(yard, secret)  # remembered: the remembered hash against the current one
    assert (stored.secret_hash, stored.secret_hash) in seen


def test_revoke_elsewhere_takes_effect_within_the_refresh(yard):
    secret = _create(yard, "ci")
    now = [1000.0]
    book = TokenBook(clock=lambda: now[0])
    book.verify(yard, secret)
    with yard.write() as conn:  # another process: this book is not told
        tokens.revoke_token(conn, "ci")
    now[0] += 0.5
    book.verify(yard, secret)  # within the second: the snapshot is still the old one
    now[0] += tokens.REFRESH_SECONDS
    with pytest.raises(Unauthorized, match="revoked"):
        book.verify(yard, secret)
    assert book.any_configured(yard) is False


def test_an_expired_token_is_refused_but_still_closes_the_server(yard):
    secret = _create(yard, "ci", expires_days=1)
    with yard.write() as conn:
        conn.execute(update(api_tokens).values(expires_at=utcnow() - timedelta(seconds=1)))
    book = TokenBook()
    with pytest.raises(Unauthorized, match="expired"):
        book.verify(yard, secret)
    assert book.any_configured(yard) is True
    with yard.read() as conn:
        assert tokens.list_tokens(conn)[0].status == "expired"


def test_sessions_follow_the_token_id(yard):
    secret = _create(yard, "ci", Role.operator)
    book = TokenBook(refresh_seconds=0)
    token_id = tokens.token_id_of(secret) or ""
    assert book.by_session(yard, "ci", token_id).role is Role.operator
    with yard.write() as conn:
        tokens.revoke_token(conn, "ci")
    with pytest.raises(Unauthorized):
        book.by_session(yard, "ci", token_id)
    _create(yard, "ci", Role.admin)  # the name again: the old session stays dead
    with pytest.raises(Unauthorized):
        book.by_session(yard, "ci", token_id)


def test_last_used_is_written_at_most_once_a_minute(yard):
    secret = _create(yard, "ci")
    book = TokenBook()
    book.verify(yard, secret)
    first = _rows(yard)[0].last_used_at
    assert first is not None
    book.verify(yard, secret)
    assert _rows(yard)[0].last_used_at == first


def test_core_refusals(yard):
    _create(yard, "ci")
    with yard.write() as conn:
        with pytest.raises(Conflict):
            tokens.create_token(conn, "ci", Role.reader)
        with pytest.raises(NotFound):
            tokens.revoke_token(conn, "nobody")
        with pytest.raises(Invalid):
            tokens.create_token(conn, "x" * 101, Role.reader)
    with pytest.raises(Invalid):
        tokens.parse_role("root")


def test_acting_as_names_who_in_the_execution_log():
    assert "@" in execlog.who()
    with execlog.acting_as("ops via runyard serve"):
        assert execlog.who() == "ops via runyard serve"
    assert execlog.who() != "ops via runyard serve"


def test_a_token_is_warm_only_when_memory_answers(yard):
    """``is_warm`` (the server then checks on its event loop) only once the snapshot is
    fresh, the secret was matched before and no last_used_at write is due; a cold check
    (scrypt, a table read, a write) goes to a worker thread."""
    secret = _create(yard, "ci")
    now = [1000.0]
    book = TokenBook(clock=lambda: now[0])
    assert not book.is_fresh() and not book.is_warm(secret)  # no snapshot yet
    book.snapshot(yard)
    assert book.is_fresh()
    assert not book.is_warm(secret)  # never matched: scrypt
    book.verify(yard, secret)
    assert book.is_warm(secret)
    assert not book.is_warm(secret + "x")  # another secret of the same id: scrypt again
    book._touched["ci"] = utcnow() - tokens.LAST_USED_EVERY  # last_used_at due: a write
    assert not book.is_warm(secret)
    book.verify(yard, secret)
    assert book.is_warm(secret)
    now[0] += tokens.REFRESH_SECONDS  # the snapshot is stale: a table read
    assert not book.is_fresh() and not book.is_warm(secret)
