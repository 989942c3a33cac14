"""Fixtures: a fresh yard per test, on SQLite and on a real PostgreSQL server.

PostgreSQL: ``RUNYARD_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``)
names a server; each test session (each xdist worker) makes its own database and each
test its own schema in it, so tests never share state. Without a reachable server the
PostgreSQL variants skip with a loud reason, unless ``RUNYARD_REQUIRE_PG=1`` (set by
``.ci/run``), which turns that skip into a failure.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from typer.testing import CliRunner

import runyard
from runyard.cli.main import app
from tests.helpers.seaweed import s3_bucket, s3_server  # noqa: F401

PG_URL = os.environ.get("RUNYARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("RUNYARD_REQUIRE_PG") == "1"
BACKENDS = ["sqlite", "postgresql"]

_pg_skip_reason: list[str] = []


def _psycopg_conninfo(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session; its SQLAlchemy URL (no driver)."""
    import psycopg

    name = f"runyard_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(_psycopg_conninfo(PG_URL), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = (
            f"PostgreSQL NOT REACHABLE at {PG_URL} ({str(exc).strip()}); "
            "the PostgreSQL variants of the registry and CLI tests did not run"
        )
        if REQUIRE_PG:
            pytest.fail("RUNYARD_REQUIRE_PG=1 but " + reason, pytrace=False)
        _pg_skip_reason.append(reason)
        pytest.skip(reason)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(_psycopg_conninfo(PG_URL), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_pg_schema(database_url: str) -> str:
    """A new empty schema in the session database; a URL whose connections use it."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_psycopg_conninfo(database_url), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    options = quote(f"-csearch_path={schema}")
    url = database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{url}?options={options}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _pg_skip_reason:
        terminalreporter.section("PostgreSQL tests SKIPPED", sep="!", red=True, bold=True)
        terminalreporter.line(_pg_skip_reason[0], red=True, bold=True)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No RUNYARD_* setting of the developer's shell leaks into a test."""
    for key in list(os.environ):
        if (
            key.startswith("RUNYARD_")
            and not key.startswith("RUNYARD_TEST_")
            and key != "RUNYARD_REQUIRE_PG"
        ):
            monkeypatch.delenv(key)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """None for SQLite (the yard's default file); a fresh schema's URL for PostgreSQL."""
    if backend == "sqlite":
        return None
    return fresh_pg_schema(request.getfixturevalue("pg_database"))


@pytest.fixture
def yard_path(tmp_path: Path, db_url: str | None, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A freshly initialised yard (planning preset) on the backend under test."""
    if db_url is not None:
        monkeypatch.setenv("RUNYARD_DB", db_url)
    path = tmp_path / "yard"
    runyard.init_yard(path)
    return path


@pytest.fixture
def yard(yard_path: Path) -> Iterator[runyard.Yard]:
    with runyard.open_yard(yard_path) as opened:
        yield opened


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


class Cli:
    """Runs ``runyard`` in-process with ``--yard`` set; ``cli("run", "list", "--json")``."""

    def __init__(self, yard_path: Path | None) -> None:
        self.yard_path = yard_path
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, yard: bool = True) -> CliResult:
        argv = [*(["--yard", str(self.yard_path)] if yard and self.yard_path else []), *args]
        result = self.runner.invoke(app, argv, input=input, catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    def ok(self, *args: str, input: str | None = None) -> Any:
        """Run with --json, assert exit 0, return the parsed document."""
        result = self(*args, "--json", input=input)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return result.json


@pytest.fixture
def cli(yard_path: Path) -> Cli:
    return Cli(yard_path)


@pytest.fixture
def lineage(cli: Cli, tmp_path: Path) -> dict[str, str]:
    """A scenario, a config version and a plan version in the yard under test."""
    scenario = cli.ok("scenario", "add", "base", "--description", "demo demand")
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"safety_stock_periods": 2, "lot_size": 10}))
    config = cli.ok("config", "add", str(config_file), "--name", "policy-v1")
    plan = cli.ok(
        "plan",
        "create",
        "--scenario",
        scenario["scenario_id"],
        "--config",
        config["config_version_id"],
        "--param",
        "horizon=52",
    )
    return {
        "scenario_id": scenario["scenario_id"],
        "config_version_id": config["config_version_id"],
        "plan_version_id": plan["plan_version_id"],
    }


def video_plan(cli: Cli, folder: Path) -> str:
    """The "episodes" scenario, a ``{"fps": 30}`` config version (its file written in
    ``folder``) and a plan version of the two, in the yard ``cli`` drives; the plan's id."""
    cli.ok("scenario", "add", "episodes")
    cfg = folder / "cfg.json"
    cfg.write_text('{"fps": 30}')
    cfg_id = cli.ok("config", "add", str(cfg))["config_version_id"]
    plan_id: str = cli.ok("plan", "create", "--scenario", "episodes", "--config", cfg_id)[
        "plan_version_id"
    ]
    return plan_id


def tree_snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (but the SQLite registry files) with its content."""
    out: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        if path.name.startswith("registry.db") or path.name == ".runyard.lock":
            continue
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = b"<link>" + os.readlink(path).encode()
        elif path.is_dir():
            out[rel] = b"<dir>"
        else:
            out[rel] = path.read_bytes()
    return out


def registry_snapshot(yard_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every registry table, in a stable order."""
    from sqlalchemy import select

    from runyard.db.tables import metadata

    with runyard.open_yard(yard_path) as opened, opened.read() as conn:
        return {
            name: sorted(tuple(str(v) for v in row) for row in conn.execute(select(table)))
            for name, table in metadata.tables.items()
        }


@dataclass
class Snapshot:
    files: dict[str, bytes]
    rows: dict[str, list[tuple[Any, ...]]]


@pytest.fixture
def snapshot(yard_path: Path) -> Any:
    """``snapshot()`` captures the yard's files and registry rows, to prove nothing changed."""

    def take() -> Snapshot:
        return Snapshot(tree_snapshot(yard_path), registry_snapshot(yard_path))

    return take
