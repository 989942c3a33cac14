"""``runyard backup`` and ``runyard restore-db``: verified copies, pruning, a safe swap."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

import runyard
from runyard.cli import backup_cmd
from runyard.cli.main import app
from runyard.config import Settings, load_settings, sqlite_url
from runyard.db import schema
from runyard.db.engine import make_engine
from runyard.durability import backup as backup_core
from runyard.lifecycle.lock import yard_lock
from tests.conftest import Cli

if "backup" not in {command.name for command in app.registered_commands}:
    backup_cmd.register(app)  # until main.py wires it

only_sqlite = pytest.mark.parametrize("backend", ["sqlite"])
only_postgresql = pytest.mark.parametrize("backend", ["postgresql"])


def add_runs(yard_path: Path, plan_version_id: str, n: int) -> None:
    with runyard.open_yard(yard_path) as yard:
        yard.record_runs(
            [{"plan_version_id": plan_version_id, "status": "succeeded"} for _ in range(n)]
        )


def count_runs(db: Path) -> int:
    with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} - {".runyard.lock"}


def settings_of(yard_path: Path) -> Settings:
    return load_settings(yard_path)


def check_or_skip() -> None:
    try:
        import runyard.durability.check  # noqa: F401
    except ImportError:
        pytest.skip("check not available yet")


# --- SQLite backups -----------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import os, sys
    import runyard
    yard_path, plan, stop = sys.argv[1], sys.argv[2], sys.argv[3]
    batches = 0
    with runyard.open_yard(yard_path) as yard:
        while not os.path.exists(stop) and batches < 2000:
            yard.record_runs([{"plan_version_id": plan, "status": "succeeded"}] * 5)
            batches += 1
    print(batches)
""")


@pytest.mark.slow
@only_sqlite
def test_backup_while_writers_write_then_restore_it(yard_path, lineage, cli, tmp_path):
    add_runs(yard_path, lineage["plan_version_id"], 500)
    stop = tmp_path / "stop"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(yard_path), lineage["plan_version_id"], str(stop)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        registry = yard_path / "registry.db"
        deadline = time.monotonic() + 60
        while count_runs(registry) < 600 and time.monotonic() < deadline:
            time.sleep(0.05)
        docs = [cli.ok("backup") for _ in range(3)]
        assert all(w.poll() is None for w in writers), "the writers were still writing"
    finally:
        stop.touch()
        outputs = [w.communicate(timeout=120) for w in writers]
    for writer, (_out, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, err
        assert "locked" not in err
    for doc in docs:
        record = doc["backup"]
        assert record["verified"] is True, record["checks"]
        copy = Path(record["path"])
        with closing(sqlite3.connect(copy)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert record["runs_before"] <= count_runs(copy) <= record["runs_after"]
        assert count_runs(copy) == record["counts"]["runs"]
        assert record["sha256"] == sha256(copy) and record["bytes"] == copy.stat().st_size
    # The runs kept coming while the backups ran.
    assert docs[-1]["backup"]["runs_after"] > docs[0]["backup"]["runs_before"]

    chosen = Path(docs[1]["backup"]["path"])
    total = count_runs(yard_path / "registry.db")
    restored = cli.ok("restore-db", str(chosen), "--yes")
    assert restored["verified"] is True and restored["migrated"] is False
    with runyard.open_yard(yard_path):  # this yard's current registry
        pass
    assert count_runs(yard_path / "registry.db") == docs[1]["backup"]["counts"]["runs"]
    assert count_runs(Path(restored["pre_restore"])) == total
    assert cli.ok("run", "list", "--limit", "1")["items"]


@only_sqlite
def test_backup_writes_a_verified_copy_and_its_record(yard_path, lineage, cli):
    add_runs(yard_path, lineage["plan_version_id"], 30)
    doc = cli.ok("backup")
    record, sidecar = doc["backup"], Path(doc["sidecar"])
    path = Path(record["path"])
    assert path.parent == yard_path / "backups"
    assert path.name.startswith("registry-") and path.name.endswith("Z.db")
    assert sidecar == Path(str(path) + ".json")
    assert json.loads(sidecar.read_text())["sha256"] == sha256(path)
    assert record["verified"] is True and record["engine"] == "sqlite"
    assert [c["name"] for c in record["checks"]] == [
        "sqlite_file",
        "integrity",
        "registry",
        "yard",
        "revision",
        "counts",
        "runs_count",
    ]
    assert record["counts"]["runs"] == 30 and record["revision"] == schema.HEAD_REVISION
    assert record["sql_dump"] is None
    # A single self-contained file: no -wal/-shm, no partial left behind.
    assert names(yard_path / "backups") == {path.name, sidecar.name}
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"

    human = cli("backup")
    assert human.exit_code == 0, human.stderr
    assert "verified" in human.stdout and "runs_count" in human.stdout
    assert len(backup_core.list_backups(settings_of(yard_path))) == 2  # a unique name each


@only_sqlite
def test_sql_dump_loads_into_a_fresh_database(yard_path, lineage, cli, tmp_path):
    add_runs(yard_path, lineage["plan_version_id"], 25)
    record = cli.ok("backup", "--sql")["backup"]
    dump = Path(record["sql_dump"])
    assert dump.name == Path(record["path"]).name.removesuffix(".db") + ".sql.gz"
    assert record["sql_dump_sha256"] == sha256(dump)
    script = gzip.decompress(dump.read_bytes()).decode()
    fresh = tmp_path / "fresh.db"
    with closing(sqlite3.connect(fresh)) as conn:
        conn.executescript(script)
    assert count_runs(fresh) == record["counts"]["runs"] == 25


@only_sqlite
def test_keep_prunes_old_verified_backups_never_failed_ones(yard_path, lineage, cli):
    made = [Path(cli.ok("backup", "--sql")["backup"]["path"]) for _ in range(4)]
    oldest_sidecar = Path(str(made[0]) + ".json")
    failed = json.loads(oldest_sidecar.read_text())
    failed["verified"] = False
    failed["checks"][-1] = {"name": "runs_count", "ok": False, "detail": "a test said so"}
    oldest_sidecar.write_text(json.dumps(failed))

    doc = cli.ok("backup", "--keep", "2")
    new = Path(doc["backup"]["path"])
    assert doc["prune"] == {
        "keep": 2,
        "deleted": [str(made[2]), str(made[1])],
        "kept_failed": [str(made[0])],
    }
    left = names(yard_path / "backups")
    for gone in made[1:3]:
        assert not {gone.name, gone.name + ".json", gone.stem + ".sql.gz"} & left
    assert {made[0].name, made[0].name + ".json", made[0].stem + ".sql.gz"} <= left
    assert {made[3].name, new.name} <= left

    human = cli("backup", "--keep", "2")
    assert human.exit_code == 0, human.stderr
    assert f"failed verification, kept: {made[0]}" in human.stdout.replace("\n", "")
    listed = cli.ok("backup", "--list")
    assert [e["verified"] for e in listed] == [True, True, False]
    assert listed[1]["path"] == str(new)
    assert "a test said so" in listed[2]["problem"]


@only_sqlite
def test_prune_never_deletes_the_protected_backup(yard_path, cli):
    made = [Path(cli.ok("backup")["backup"]["path"]) for _ in range(3)]
    result = backup_core.prune_backups(settings_of(yard_path), keep=1, protect=made[0])
    assert result.deleted == [str(made[1])]
    assert made[0].exists() and made[2].exists() and not made[1].exists()


@only_sqlite
def test_a_backup_that_fails_verification_exits_6_and_is_kept(yard_path, cli, monkeypatch):
    good = Path(cli.ok("backup")["backup"]["path"])
    monkeypatch.setattr(backup_core, "_count_runs", lambda conn: 10**9)  # "rows vanished"
    result = cli("backup", "--keep", "1", "--json")
    assert result.exit_code == 6
    doc = result.json
    assert doc["error"]["code"] == "registry_state"
    assert "failed verification" in doc["error"]["message"]
    assert doc["backup"]["verified"] is False and doc["prune"] is None
    failed = Path(doc["backup"]["path"])
    assert failed.exists() and good.exists()  # kept for inspection; nothing pruned
    assert json.loads(Path(doc["sidecar"]).read_text())["verified"] is False
    human = cli("backup")
    assert human.exit_code == 6 and "failed verification" in human.stderr
    monkeypatch.undo()
    entries = backup_core.list_backups(settings_of(yard_path))
    assert [e.verified for e in entries] == [False, False, True]
    assert backup_core.last_good_backup(settings_of(yard_path)) == entries[2].created_at


@only_sqlite
def test_list_newest_first_and_last_good_backup(yard_path, cli):
    settings = settings_of(yard_path)
    assert cli.ok("backup", "--list") == []
    assert backup_core.last_good_backup(settings) is None
    records = [cli.ok("backup")["backup"] for _ in range(2)]
    listed = cli.ok("backup", "--list")
    assert [e["path"] for e in listed] == [r["path"] for r in reversed(records)]
    assert set(listed[0]) >= {"created_at", "bytes", "verified", "path"}
    assert listed[0]["verified"] is True and listed[0]["bytes"] == records[1]["bytes"]
    assert (
        backup_core.last_good_backup(settings).isoformat().replace("+00:00", "Z")
        == (records[1]["created_at"])
    )
    # A copy without its record (a backup killed half-way) is listed, not trusted.
    orphan = yard_path / "backups" / "registry-20000101T000000Z.db"
    shutil.copy(records[0]["path"], orphan)
    human = cli("backup", "--list")
    assert human.exit_code == 0
    assert "registry-20000101T000000Z.db" in human.stdout and "NO" in human.stdout
    assert cli.ok("backup", "--list")[-1]["problem"].startswith("no record")
    assert cli("backup", "--list", "--keep", "1").exit_code == 5
    assert cli("backup", "--keep", "0").exit_code == 5  # invalid, like every bad value


# --- PostgreSQL backups -------------------------------------------------------------------


@only_postgresql
def test_postgresql_backup_is_a_verified_pg_dump(yard_path, lineage, cli):
    add_runs(yard_path, lineage["plan_version_id"], 12)
    doc = cli.ok("backup")
    record = doc["backup"]
    path = Path(record["path"])
    assert path.suffix == ".dump" and record["engine"] == "postgresql"
    assert record["verified"] is True, record["checks"]
    assert {c["name"] for c in record["checks"]} == {"pg_restore_list", "tables"}
    listing = subprocess.run(
        ["pg_restore", "--list", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert " TABLE DATA " in listing and " runs " in listing
    assert path.read_bytes()[:5] == b"PGDMP"  # the custom format
    assert cli.ok("backup", "--list")[0]["path"] == str(path)
    assert cli("backup", "--sql").exit_code == 5
    refused = cli("restore-db", str(path), "--yes", "--json")
    assert refused.exit_code == 4
    assert "pg_restore --clean" in refused.json["error"]["hint"]


@only_postgresql
def test_postgresql_backup_without_pg_dump_is_refused(yard_path, cli, tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = cli("backup", "--json")
    assert result.exit_code == 4
    error = result.json["error"]
    assert error["code"] == "refused" and "pg_dump" in error["message"]
    assert "postgresql-client-" in error["hint"]
    assert not (yard_path / "backups").exists() or not list((yard_path / "backups").iterdir())


@only_postgresql
def test_postgresql_backup_with_an_old_pg_dump_is_refused(yard_path, cli, tmp_path, monkeypatch):
    fake = tmp_path / "old-bin"
    fake.mkdir()
    for tool in ("pg_dump", "pg_restore"):
        (fake / tool).write_text(f"#!/bin/sh\necho '{tool} (PostgreSQL) 9.6.24'\n")
        (fake / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    result = cli("backup", "--json")
    assert result.exit_code == 4
    assert "older than the server" in result.json["error"]["message"]


def test_pg_environment_takes_the_url_apart():
    url = make_url("postgresql+psycopg://ops:s3cret@db.example:6543/reg?options=-csearch_path%3Dx")
    env = backup_core.pg_environment(url)
    assert (env["PGHOST"], env["PGPORT"], env["PGUSER"], env["PGDATABASE"]) == (
        "db.example",
        "6543",
        "ops",
        "reg",
    )
    assert env["PGPASSWORD"] == "s3cret" and env["PGOPTIONS"] == "-csearch_path=x"
    no_password = backup_core.pg_environment(make_url("postgresql+psycopg://ops@h/reg"))
    assert no_password.get("PGPASSWORD") == os.environ.get("PGPASSWORD")


# --- restore-db ---------------------------------------------------------------------------


def other_yard_backup(tmp_path: Path) -> Path:
    other = tmp_path / "other"
    runyard.init_yard(other)
    return Path(Cli(other).ok("backup")["backup"]["path"])


def future_backup(backup: Path, tmp_path: Path) -> Path:
    future = tmp_path / "future.db"
    shutil.copy(backup, future)
    with closing(sqlite3.connect(future)) as conn:
        conn.execute(f"UPDATE {schema.VERSION_TABLE} SET version_num = '9999_future'")
        conn.commit()
    return future


def foreign_sqlite(tmp_path: Path) -> Path:
    path = tmp_path / "customers.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
        conn.commit()
    return path


def garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.db"
    path.write_bytes(os.urandom(8192))
    return path


def torn(backup: Path, tmp_path: Path) -> Path:
    """A backup cut short, with a valid SQLite header."""
    path = tmp_path / "torn.db"
    data = backup.read_bytes()
    path.write_bytes(data[:4096] + os.urandom(len(data) - 4096))
    return path


@only_sqlite
@pytest.mark.parametrize(
    "make,exit_code,code,words",
    [
        (lambda b, t: t / "nope.db", 5, "invalid", "no such file"),
        (lambda b, t: garbage(t), 5, "invalid", "not an SQLite database"),
        (torn, 5, "invalid", "cannot be restored"),
        (lambda b, t: foreign_sqlite(t), 5, "invalid", "not a runyard registry"),
        (future_backup, 4, "refused", "9999_future"),
        (lambda b, t: other_yard_backup(t), 4, "refused", "another yard"),
    ],
    ids=["missing", "garbage", "torn", "not-a-registry", "newer-schema", "other-yard"],
)
def test_restore_db_refuses_bad_files_and_changes_nothing(
    yard_path, lineage, cli, tmp_path, make, exit_code, code, words
):
    add_runs(yard_path, lineage["plan_version_id"], 5)
    backup = Path(cli.ok("backup")["backup"]["path"])
    candidate = make(backup, tmp_path)
    registry = yard_path / "registry.db"
    before, files = sha256(registry), names(yard_path)
    result = cli("restore-db", str(candidate), "--yes", "--json")
    assert result.exit_code == exit_code, result.stdout
    assert result.json["error"]["code"] == code
    assert words in result.json["error"]["message"]
    assert sha256(registry) == before and names(yard_path) == files
    assert count_runs(registry) == 5


@only_sqlite
def test_restore_db_refuses_a_busy_yard(yard_path, cli):
    backup = Path(cli.ok("backup")["backup"]["path"])
    registry = yard_path / "registry.db"
    before, files = sha256(registry), names(yard_path)
    with yard_lock(yard_path, "archive"):
        result = cli("restore-db", str(backup), "--yes", "--json")
    assert result.exit_code == 4
    assert "busy" in result.json["error"]["message"]
    assert sha256(registry) == before and names(yard_path) == files


@only_sqlite
def test_restore_db_refuses_while_the_registry_is_open_elsewhere(yard_path, lineage, cli):
    add_runs(yard_path, lineage["plan_version_id"], 3)
    backup = Path(cli.ok("backup")["backup"]["path"])
    add_runs(yard_path, lineage["plan_version_id"], 2)
    files = names(yard_path)
    with runyard.open_yard(yard_path) as server, server.read() as conn:  # a web server, say
        conn.exec_driver_sql("SELECT 1")
        result = cli("restore-db", str(backup), "--yes", "--json")
    assert result.exit_code == 4, result.stdout
    assert "open in another process" in result.json["error"]["message"]
    assert names(yard_path) - {"registry.db-wal", "registry.db-shm"} == files - {
        "registry.db-wal",
        "registry.db-shm",
    }
    assert count_runs(yard_path / "registry.db") == 5
    with closing(sqlite3.connect(yard_path / "registry.db")) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@only_sqlite
def test_restore_db_needs_yes_without_a_terminal(yard_path, cli):
    backup = Path(cli.ok("backup")["backup"]["path"])
    before = sha256(yard_path / "registry.db")
    result = cli("restore-db", str(backup))
    assert result.exit_code == 4 and "--yes" in result.stderr
    assert sha256(yard_path / "registry.db") == before


RUNYARD_CLI = (
    "from runyard.cli.main import app\n"
    "from runyard.cli import backup_cmd\n"
    "if 'backup' not in {c.name for c in app.registered_commands}:\n"
    "    backup_cmd.register(app)\n"
    "app()\n"
)


def in_a_terminal(args: list[str], answer: bytes) -> tuple[int, str]:
    """Run ``runyard ARGS`` on a pseudo-terminal, answer its question; (exit code, output)."""
    import pty
    import select

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNYARD_CLI, *args], stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    seen, answered = b"", False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"[y/N]" in seen:
            os.write(master, answer)
            answered = True
        if proc.poll() is not None and not ready:
            break
    os.close(master)
    return proc.wait(timeout=60), seen.decode(errors="replace")


@only_sqlite
def test_restore_db_asks_in_a_terminal(yard_path, lineage, cli):
    add_runs(yard_path, lineage["plan_version_id"], 2)
    backup = cli.ok("backup")["backup"]["path"]
    add_runs(yard_path, lineage["plan_version_id"], 1)
    before = sha256(yard_path / "registry.db")
    args = ["--yard", str(yard_path), "restore-db", backup]
    code, output = in_a_terminal(args, b"n\n")
    assert code == 1 and "Replace the registry" in output
    assert sha256(yard_path / "registry.db") == before
    code, output = in_a_terminal(args, b"y\n")
    assert code == 0, output
    assert count_runs(yard_path / "registry.db") == 2


@only_sqlite
def test_restore_db_round_trip_reports_the_newer_runs(yard_path, lineage, cli):
    add_runs(yard_path, lineage["plan_version_id"], 10)
    backup = Path(cli.ok("backup")["backup"]["path"])
    add_runs(yard_path, lineage["plan_version_id"], 4)
    newer = {p.name for p in (yard_path / "runs").iterdir()}
    doc = cli.ok("restore-db", str(backup), "--yes")
    assert doc["verified"] is True and doc["migrated"] is False
    assert doc["sha256"] == sha256(backup) and doc["counts"]["runs"] == 10
    kept = Path(doc["pre_restore"])
    assert kept.parent == yard_path and kept.name.startswith("registry.db.pre-restore-")
    with closing(sqlite3.connect(kept)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert count_runs(kept) == 14
    assert count_runs(yard_path / "registry.db") == 10
    with runyard.open_yard(yard_path):
        pass
    with closing(sqlite3.connect(yard_path / "registry.db")) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert not [n for n in names(yard_path) if n.endswith(".tmp")]
    # The backups' records survived the swap.
    assert cli.ok("backup", "--list")[0]["path"] == str(backup)

    check_or_skip()
    assert doc["check"]["available"] is True and doc["check"]["ok"] is False
    assert doc["check"]["by_kind"] == {"unknown_folder": 4}
    registered = {r["run_id"] for r in cli.ok("run", "list", "--limit", "1000")["items"]}
    assert {m["run_id"] for m in doc["check"]["mismatches"]} == newer - registered
    assert "runyard rebuild" in doc["check"]["hint"]
    human = cli("restore-db", str(kept), "--yes")
    assert human.exit_code == 0, human.stderr
    assert "agree" in human.stdout  # the kept registry knows every folder
    assert count_runs(yard_path / "registry.db") == 14


@only_sqlite
def test_restore_db_over_a_corrupt_registry_keeps_its_bytes(yard_path, lineage, cli):
    add_runs(yard_path, lineage["plan_version_id"], 6)
    backup = Path(cli.ok("backup")["backup"]["path"])
    registry = yard_path / "registry.db"
    broken = b"SQLite format 3\x00" + os.urandom(registry.stat().st_size - 16)
    registry.write_bytes(broken)
    doc = cli.ok("restore-db", str(backup), "--yes")
    assert Path(doc["pre_restore"]).read_bytes() == broken
    assert "could not be read" in doc["pre_restore_note"]
    assert count_runs(registry) == 6
    with runyard.open_yard(yard_path):
        pass


@only_sqlite
def test_restore_db_migrates_an_older_schema(yard_path, tmp_path):
    from alembic import command
    from alembic.config import Config

    old = tmp_path / "old.db"
    engine = make_engine(sqlite_url(old))
    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS_DIR))
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, schema.REVISIONS[-2])
        conn.commit()
    engine.dispose()
    with closing(sqlite3.connect(old)) as conn:
        conn.execute(
            "INSERT INTO runyard_meta (key, value) VALUES ('yard_id', ?)",
            (settings_of(yard_path).yard_id,),
        )
        conn.commit()
    doc = Cli(yard_path).ok("restore-db", str(old), "--yes")
    assert doc["migrated"] is True
    assert (doc["from_revision"], doc["to_revision"]) == (
        schema.REVISIONS[-2],
        schema.HEAD_REVISION,
    )
    with runyard.open_yard(yard_path):  # a current registry again
        pass
