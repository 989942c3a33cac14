"""runyard init and open_yard: what a yard is made of, and refusing to make a mess."""

from __future__ import annotations

import os

import pytest

import runyard
from runyard.errors import Conflict, RegistryStateError, YardNotFound
from tests.conftest import Cli, tree_snapshot


def test_init_creates_the_yard(tmp_path):
    result = Cli(None)("init", str(tmp_path / "y"), "--json", yard=False)
    assert result.exit_code == 0, result.stderr
    doc = result.json
    assert doc["yard_id"].startswith("yd-") and doc["preset"] == "planning"
    assert set(doc["created"]) == {"runyard.toml", "runs", "_archive", "logs", "registry.db"}
    for name in ("runs", "_archive", "logs"):
        assert (tmp_path / "y" / name).is_dir()
    human = Cli(None)("init", str(tmp_path / "z"), yard=False)
    assert "Created yard" in human.stdout and "registry.db" in human.stdout


def test_init_refuses_an_existing_yard(tmp_path):
    runyard.init_yard(tmp_path / "y")
    before = tree_snapshot(tmp_path)
    db_before = (tmp_path / "y" / "registry.db").read_bytes()
    result = Cli(None)("init", str(tmp_path / "y"), yard=False)
    assert result.exit_code == 4 and "already exists" in result.stderr
    assert tree_snapshot(tmp_path) == before
    assert (tmp_path / "y" / "registry.db").read_bytes() == db_before
    with pytest.raises(Conflict):
        runyard.init_yard(tmp_path / "y")


def test_init_bad_preset(tmp_path):
    result = Cli(None)("init", str(tmp_path / "y"), "--preset", "nope", yard=False)
    assert result.exit_code == 5 and "preset" in result.stderr
    assert not (tmp_path / "y").exists()


def test_failed_init_leaves_nothing(tmp_path, monkeypatch):
    """The registry cannot be created (PostgreSQL port closed): every new file is removed."""
    existing = tmp_path / "workspace"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    before = tree_snapshot(tmp_path)
    monkeypatch.setenv("RUNYARD_DB", "postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(RegistryStateError):
        runyard.init_yard(existing)
    assert tree_snapshot(tmp_path) == before
    with pytest.raises(RegistryStateError):
        runyard.init_yard(tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


def test_init_with_db_option_writes_it(tmp_path, request):
    from tests.conftest import fresh_pg_schema

    url = fresh_pg_schema(request.getfixturevalue("pg_database"))
    path = tmp_path / "y"
    doc = Cli(None)("init", str(path), "--db", url, "--json", yard=False).json
    assert doc["db_url_source"] == "runyard.toml db.url"
    assert "registry.db" not in doc["created"]
    assert not (path / "registry.db").exists()
    cli = Cli(path)
    assert cli.ok("scenario", "add", "pg-scenario")["name"] == "pg-scenario"
    assert cli.ok("db", "status")["db_url"].startswith("postgresql+psycopg://")


def test_video_preset_into_an_existing_workspace(tmp_path):
    ws = tmp_path / "workspaces"
    (ws / "video" / "runs" / "192").mkdir(parents=True)
    (ws / "video" / "runs" / "192" / "final.mp4").write_bytes(b"x" * 100)
    (ws / "scripts" / "CH01" / "003").mkdir(parents=True)
    (ws / "scripts" / "CH01" / "003" / "status.json").write_text('{"metadata": {}}')
    before = tree_snapshot(ws)
    doc = Cli(None)("init", str(ws), "--preset", "video", "--json", yard=False).json
    assert "video/runs" in doc["existing"]
    assert {"video/_archive", "logs", "logs/regression"} <= set(doc["created"])
    after = tree_snapshot(ws)
    for key, value in before.items():
        assert after[key] == value
    cli = Cli(ws)
    imported = cli.ok("run", "import", "--all")
    assert imported["legacy"] == 1


def test_open_yard_searches_upward(tmp_path, monkeypatch):
    runyard.init_yard(tmp_path / "y")
    deep = tmp_path / "y" / "runs" / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    with runyard.open_yard() as yard:
        assert yard.path == (tmp_path / "y").resolve()
    result = Cli(None)("scenario", "list", "--json", yard=False)
    assert result.exit_code == 0


def test_no_yard_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = Cli(None)("scenario", "list", yard=False)
    assert result.exit_code == 3
    assert "no yard found" in result.stderr and "runyard init" in result.stderr
    with pytest.raises(YardNotFound):
        runyard.open_yard()
    wrong = Cli(tmp_path)("run", "list", "--json")
    assert wrong.exit_code == 3 and wrong.json["error"]["code"] == "yard_not_found"


def test_runyard_yard_env(tmp_path, monkeypatch):
    runyard.init_yard(tmp_path / "y")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNYARD_YARD", str(tmp_path / "y"))
    assert Cli(None)("run", "list", "--json", yard=False).exit_code == 0
    monkeypatch.setenv("RUNYARD_YARD", str(tmp_path / "nowhere"))
    result = Cli(None)("run", "list", yard=False)
    assert result.exit_code == 3 and "RUNYARD_YARD" in result.stderr


def test_nothing_is_created_at_import_time(tmp_path):
    import subprocess
    import sys

    code = "import runyard, runyard.cli.main, runyard.registry.runs; print('ok')"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "RUNYARD_YARD": str(tmp_path)},
    )
    assert out.stdout.strip() == "ok", out.stderr
    assert list(tmp_path.iterdir()) == []


def test_console_script_runs(tmp_path):
    import shutil
    import subprocess

    exe = shutil.which("runyard") or os.path.join(
        os.path.dirname(__import__("sys").executable), "runyard"
    )
    out = subprocess.run(
        [exe, "init", str(tmp_path / "y"), "--json"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    version = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("runyard ")
    module = subprocess.run(
        [__import__("sys").executable, "-m", "runyard", "--help"], capture_output=True, text=True
    )
    assert module.returncode == 0 and "scenario" in module.stdout


def test_init_db_path_in_a_new_folder(tmp_path):
    doc = Cli(None)("init", str(tmp_path / "y"), "--db", "state/reg.db", "--json", yard=False).json
    assert (tmp_path / "y" / "state" / "reg.db").is_file()
    assert "state" in doc["created"]
    assert Cli(tmp_path / "y").ok("db", "status")["ok"] is True
