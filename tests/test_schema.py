"""The registry check every command makes: stale, newer, foreign, or not a registry at all."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import text

import runyard
from runyard.db import schema
from runyard.errors import NotARegistry, SchemaOutdated
from tests.conftest import Cli, tree_snapshot


def test_status_of_a_fresh_yard(cli):
    status = cli.ok("db", "status")
    assert status["current"] is True
    assert status["revision"] == schema.HEAD_REVISION
    assert status["yard_id"].startswith("yd-")


def test_upgrade_is_idempotent(cli):
    doc = cli.ok("db", "upgrade")
    assert doc["changed"] is False and doc["to_revision"] == schema.HEAD_REVISION


def test_stale_schema_refused_with_the_fix(cli, monkeypatch):
    monkeypatch.setattr(schema, "REVISIONS", (*schema.REVISIONS, "0999_next"))
    monkeypatch.setattr(schema, "HEAD_REVISION", "0999_next")
    result = cli("scenario", "list", "--json")
    assert result.exit_code == 6
    assert result.json["error"]["code"] == "schema_outdated"
    assert "runyard db upgrade" in result.json["error"]["hint"]


def test_newer_schema_refused(cli, yard_path):
    with runyard.open_yard(yard_path) as yard, yard.write() as conn:
        conn.execute(text(f"UPDATE {schema.VERSION_TABLE} SET version_num = '9999_future'"))
    result = cli("run", "list", "--json")
    assert result.exit_code == 6
    assert "newer runyard" in result.json["error"]["message"]
    upgrade = cli("db", "upgrade", "--json")
    assert upgrade.exit_code == 6  # never "downgrades" a newer registry


def test_missing_sqlite_registry_then_upgrade(tmp_path):
    path = tmp_path / "y"
    runyard.init_yard(path)
    (path / "registry.db").unlink()
    cli = Cli(path)
    result = cli("scenario", "list")
    assert result.exit_code == 6
    assert "does not exist" in result.stderr and "runyard db upgrade" in result.stderr
    assert not (path / "registry.db").exists()  # a read never creates the file
    assert cli.ok("db", "upgrade")["changed"] is True
    assert cli.ok("scenario", "list") == {"items": [], "next_cursor": None}


def test_empty_postgres_database_needs_upgrade(tmp_path, monkeypatch, request):
    from tests.conftest import fresh_pg_schema

    url = fresh_pg_schema(request.getfixturevalue("pg_database"))
    path = tmp_path / "y"
    monkeypatch.setenv("RUNYARD_DB", url)
    runyard.init_yard(path)
    other = fresh_pg_schema(request.getfixturevalue("pg_database"))
    monkeypatch.setenv("RUNYARD_DB", other)
    cli = Cli(path)
    result = cli("run", "list", "--json")
    assert result.exit_code == 6 and result.json["error"]["code"] == "schema_outdated"
    assert cli.ok("db", "upgrade")["from_revision"] is None
    assert cli.ok("run", "list")["items"] == []


@pytest.mark.parametrize("content", [b"this is not a database\n" * 50, b""])
def test_file_that_is_not_a_registry(tmp_path, monkeypatch, content):
    path = tmp_path / "y"
    runyard.init_yard(path)
    impostor = tmp_path / "notes.db"
    impostor.write_bytes(content or b"")
    if not content:  # an SQLite database of somebody else's
        with sqlite3.connect(impostor) as conn:
            conn.execute("CREATE TABLE customers (id INTEGER)")
        content = impostor.read_bytes()
    monkeypatch.setenv("RUNYARD_DB", str(impostor))
    before = tree_snapshot(tmp_path)
    cli = Cli(path)
    for args in (("scenario", "list", "--json"), ("db", "upgrade", "--json")):
        result = cli(*args)
        assert result.exit_code == 6, args
        assert result.json["error"]["code"] == "not_a_registry"
        assert "not a runyard registry" in result.json["error"]["message"]
    assert impostor.read_bytes() == content
    assert tree_snapshot(tmp_path) == before
    with pytest.raises(NotARegistry):
        runyard.open_yard(path)


def test_registry_of_another_yard(tmp_path, monkeypatch, db_url):
    if db_url:
        monkeypatch.setenv("RUNYARD_DB", db_url)
    first = tmp_path / "first"
    runyard.init_yard(first)
    second = tmp_path / "second"
    monkeypatch.delenv("RUNYARD_DB", raising=False)
    runyard.init_yard(second)
    monkeypatch.setenv("RUNYARD_DB", db_url or str(first / "registry.db"))
    result = Cli(second)("run", "list", "--json")
    assert result.exit_code == 6
    assert result.json["error"]["code"] == "other_yard"


def test_open_yard_raises_schema_outdated(tmp_path):
    path = tmp_path / "y"
    runyard.init_yard(path)
    (path / "registry.db").unlink()
    with pytest.raises(SchemaOutdated):
        runyard.open_yard(path)


def test_sqlite_registry_uses_wal(tmp_path):
    runyard.init_yard(tmp_path / "y")
    with sqlite3.connect(tmp_path / "y" / "registry.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_db_status_never_creates_the_file_and_flags_problems(tmp_path, monkeypatch):
    path = tmp_path / "y"
    runyard.init_yard(path)
    other = tmp_path / "other"
    runyard.init_yard(other)
    monkeypatch.setenv("RUNYARD_DB", str(tmp_path / "fresh.db"))
    result = Cli(path)("db", "status", "--json")
    assert result.exit_code == 6 and result.json["exists"] is False
    assert result.json["problem"]["code"] == "schema_outdated"
    assert not (tmp_path / "fresh.db").exists()
    monkeypatch.setenv("RUNYARD_DB", str(other / "registry.db"))
    foreign = Cli(path)("db", "status", "--json")
    assert foreign.exit_code == 6 and foreign.json["problem"]["code"] == "other_yard"
    monkeypatch.delenv("RUNYARD_DB")
    assert Cli(path)("db", "status", "--json").json["ok"] is True
