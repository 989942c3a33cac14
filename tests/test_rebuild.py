"""``runyard rebuild``: the registry recreated from the disk, the same as it was, twice."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

import runyard
from runyard.examples.psi import example_path
from tests.conftest import Cli

OLD = time.time() - 3 * 86400
LISTS = (
    ("run", "list", "--limit", "1000"),
    ("scenario", "list"),
    ("config", "list"),
    ("plan", "list"),
)
# Child tables first: what a lost registry no longer has (its meta rows stay, as after
# `runyard db upgrade` of an empty database).
TABLES = (
    "run_kpis",
    "run_tags",
    "plan_params",
    "config_values",
    "aggregates",
    "jobs",
    "executions",
    "runs",
    "plan_versions",
    "config_versions",
    "scenarios",
    "scenario_data",
)


def _age(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (OLD, OLD), follow_symlinks=False)
    os.utime(root, (OLD, OLD))


def _state(cli: Cli) -> dict[str, Any]:
    """What the registry says, but the runs' sizes: a size is a measurement, which a
    rebuild takes again (a pin rewrites run.json after the run was measured)."""
    state = {" ".join(args): cli.ok(*args) for args in LISTS}
    for listed in state.values():
        for item in listed.get("items", []) if isinstance(listed, dict) else []:
            if isinstance(item, dict) and "size_bytes" in item:
                assert item["size_bytes"] is None or item["size_bytes"] >= 0
                item.pop("size_bytes")
    return state


def _empty_registry(yard_path: Path) -> None:
    with runyard.open_yard(yard_path) as yard, yard.write() as conn:
        for table in TABLES:
            conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
def busy_yard(cli: Cli, yard_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Scenarios (one with data), configs, plans, runs made by jobs and by hand, a pinned
    run, a legacy folder, an archive batch, a restored run and an aggregate."""
    monkeypatch.setenv("RUNYARD_SKIP_SIMULATION", "1")
    cli.ok("scenario", "add", "small", "--data", str(example_path("small.json")))
    cli.ok("scenario", "add", "plain", "--description", "no data")
    base = cli.ok("config", "add", str(example_path("config-base.json")), "--name", "base")
    lean = cli.ok("config", "add", str(example_path("config-lean.json")))
    plans = [
        cli.ok("plan", "create", "--scenario", "small", "--config", base["config_version_id"]),
        cli.ok(
            "plan",
            "create",
            "--scenario",
            "plain",
            "--config",
            lean["config_version_id"],
            "--param",
            "horizon=4",
            "--label",
            "lean",
        ),
        cli.ok("plan", "create", "--scenario", "small", "--config", lean["config_version_id"]),
    ]
    for _ in range(3):
        cli.ok("plan", "run", plans[0]["plan_version_id"], "--wait")
    for group in ("CH01/001", "CH01/002", "CH01/002"):
        run = cli.ok("run", "start", "--plan", plans[1]["plan_version_id"], "--group", group)
        cli.ok(
            "run",
            "finish",
            run["run_id"],
            "--status",
            "succeeded",
            "--summary",
            '{"fill_rate": 0.9, "total_cost": 12.5}',
        )
    (yard_path / "runs" / "192").mkdir()
    (yard_path / "runs" / "192" / "out.txt").write_text("legacy")
    _age(yard_path / "runs")  # before the import: a legacy run's times are its folder's
    cli.ok("run", "import", "--all")
    archived = cli.ok(
        "archive",
        "--all",
        "--keep-recent-minutes",
        "0",
        "--keep-last-runs",
        "1",
        "--run",
        "--yes",
    )
    moved = [e["run_id"] for e in archived["entries"] if e["status"] == "moved"]
    assert len(moved) >= 3
    cli.ok("restore", "--report", archived["report_path"], "--only-run-id", moved[0], "--run")
    cli.ok("run", "pin", moved[1])
    monkeypatch.delenv("RUNYARD_SKIP_SIMULATION")
    runs = cli.ok("run", "list", "--plan", plans[1]["plan_version_id"])["items"]
    assert runs
    cli.ok("job", "aggregate", "--plan", plans[1]["plan_version_id"], "--wait")
    return {"plans": plans, "moved": moved, "batch": archived["batch_id"]}


def test_a_lost_registry_comes_back_the_same(cli, yard_path, busy_yard):
    before = _state(cli)
    locations = {r["location"] for r in before["run list --limit 1000"]["items"]}
    assert locations == {"active", "archived"}
    _empty_registry(yard_path)
    assert cli.ok("run", "list")["items"] == []
    done = cli.ok("rebuild")
    assert done["changed"] and done["problems"] == []
    assert done["inserted"]["runs"] == len(before["run list --limit 1000"]["items"])
    assert done["inserted"]["aggregates"] == 1
    assert _state(cli) == before
    shown = cli.ok("plan", "show", busy_yard["plans"][1]["plan_version_id"])
    assert len(shown["aggregates"]) == 1
    again = cli.ok("rebuild")
    assert not again["changed"] and again["inserted"] == dict.fromkeys(again["inserted"], 0)
    assert _state(cli) == before


@pytest.mark.parametrize("backend", ["sqlite"])  # the registry file is SQLite's
def test_a_deleted_sqlite_file_comes_back(cli, yard_path, busy_yard):
    before = _state(cli)
    for name in ("registry.db", "registry.db-wal", "registry.db-shm"):
        (yard_path / name).unlink(missing_ok=True)
    assert cli("run", "list", "--json").exit_code == 6  # no registry: commands refuse
    dry = cli.ok("rebuild", "--dry-run")
    assert dry["dry_run"] and dry["inserted"]["runs"] == len(
        before["run list --limit 1000"]["items"]
    )
    assert not (yard_path / "registry.db").exists()  # the dry run made nothing
    cli.ok("rebuild")
    assert _state(cli) == before


def test_dry_run_changes_nothing(cli, yard_path, busy_yard):
    _empty_registry(yard_path)
    dry = cli.ok("rebuild", "--dry-run")
    assert dry["changed"] and dry["inserted"]["runs"] > 0
    assert cli.ok("run", "list")["items"] == []
    assert cli.ok("scenario", "list")["items"] == []


def test_runs_found_elsewhere_are_relocated(cli, yard_path, busy_yard):
    """A registry restored from an old backup says a run is active; the disk says it was
    archived since: rebuild believes the disk."""
    run_id = busy_yard["moved"][2]
    with runyard.open_yard(yard_path) as yard, yard.write() as conn:
        conn.execute(
            text("UPDATE runs SET location = 'active', archive_batch_id = NULL WHERE run_id = :r"),
            {"r": run_id},
        )
    done = cli.ok("rebuild")
    assert done["runs_relocated"] == 1 and done["inserted"]["runs"] == 0
    shown = cli.ok("run", "show", run_id)
    assert shown["location"] == "archived" and shown["archive_batch_id"] == busy_yard["batch"]


def test_unreadable_manifests_are_reported_and_folders_without_one_are_legacy(cli, yard_path):
    runs_root = yard_path / "runs"
    (runs_root / "broken").mkdir()
    (runs_root / "broken" / "run.json").write_text("{not json")
    (runs_root / "found-later").mkdir()
    (runs_root / "found-later" / "frames.bin").write_bytes(b"\0" * 10)
    (runs_root / "bad name!").mkdir()
    done = cli.ok("rebuild")
    assert done["inserted"]["runs"] == 1 and done["legacy_runs"] == 1
    problems = " | ".join(done["problems"])
    assert "broken" in problems and "not valid JSON" in problems
    assert "bad name!" in problems
    shown = cli.ok("run", "show", "found-later")
    assert shown["legacy"] is True and shown["status"] == "unknown"
    assert cli("run", "show", "broken", "--json").exit_code == 3


def test_rebuild_prints_a_table_for_people(cli, yard_path, busy_yard):
    _empty_registry(yard_path)
    result = cli("rebuild")
    assert result.exit_code == 0, result.stderr
    assert "added" in result.stdout and "plan_versions" in result.stdout
    again = cli("rebuild")
    assert "Nothing to rebuild" in again.stdout
    assert json.loads(cli("rebuild", "--json").stdout)["changed"] is False
