"""``runyard check``: a clean yard passes; each kind of mismatch is found, alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from runyard.cli import check_cmd
from runyard.cli.main import app
from runyard.durability.check import KINDS
from tests.conftest import Cli

if "check" not in {command.name for command in app.registered_commands}:
    check_cmd.register(app)  # until main.py registers it

KEEP_NOTHING = ("--keep-recent-minutes", "0", "--keep-last-runs", "0")


def _run(cli: Cli, plan: str, run_id: str, group: str | None = None) -> None:
    cli.ok("run", "start", "--plan", plan, "--run-id", run_id, *(["--group", group] * bool(group)))
    cli.ok("run", "finish", run_id, "--status", "succeeded")


def _archive(cli: Cli, group: str) -> dict[str, Any]:
    doc = cli.ok("archive", "--group", group, "--run", "--yes", *KEEP_NOTHING)
    assert doc["status"] == "complete" and doc["summary"]["moved"] > 0, doc
    return doc


@pytest.fixture
def built(cli: Cli, lineage: dict[str, str], yard_path: Path) -> dict[str, Any]:
    """Active runs x1 and x2; a1 and a2 archived (batch b1); r1 archived (batch b2) and
    restored; a legacy run without a manifest."""
    plan = lineage["plan_version_id"]
    for run_id in ("x1", "x2"):
        _run(cli, plan, run_id)
    for run_id in ("a1", "a2"):
        _run(cli, plan, run_id, group="old")
    _run(cli, plan, "r1", group="back")
    b1 = _archive(cli, "old")
    b2 = _archive(cli, "back")
    cli.ok("restore", "--report", b2["report_path"], "--run")
    (yard_path / "runs" / "legacy-1").mkdir()
    (yard_path / "runs" / "legacy-1" / "out.txt").write_text("old")
    assert cli.ok("run", "import", str(yard_path / "runs" / "legacy-1"))["legacy"] == 1
    return {
        "cli": cli,
        "plan": plan,
        "runs": yard_path / "runs",
        "b1": b1["batch_id"],
        "b1_runs": yard_path / "_archive" / b1["batch_id"] / "runs",
        "b1_report": Path(b1["report_path"]),
        "b2": b2["batch_id"],
        "b2_dir": yard_path / "_archive" / b2["batch_id"],
    }


def _failing(cli: Cli) -> dict[str, Any]:
    """Run ``check --json``: exit 6, the document on stdout, the error on stderr."""
    result = cli("check", "--json")
    assert result.exit_code == 6, (result.stdout, result.stderr)
    doc = result.json
    assert doc["ok"] is False
    assert set(doc) == {
        "ok",
        "counts",
        "mismatches",
        "runs_checked",
        "folders_seen",
        "objects_seen",
    }
    assert list(doc["counts"]) == list(KINDS)
    assert sum(doc["counts"].values()) == len(doc["mismatches"])
    assert "error: the registry and the disk disagree" in result.stderr
    return doc


def _only(doc: dict[str, Any], kind: str) -> list[tuple[str | None, str | None]]:
    """(run_id, path) of each mismatch, after checking that all are of ``kind``."""
    assert {m["kind"] for m in doc["mismatches"]} == {kind}, doc["mismatches"]
    assert doc["counts"][kind] == len(doc["mismatches"])
    return [(m["run_id"], m["path"]) for m in doc["mismatches"]]


def test_clean_yard_with_archived_restored_and_legacy_runs(built):
    cli = built["cli"]
    doc = cli.ok("check")
    assert doc == {
        "ok": True,
        "counts": dict.fromkeys(KINDS, 0),
        "mismatches": [],
        "runs_checked": 6,
        "folders_seen": 6,  # x1 x2 r1 legacy-1 in the runs root, a1 a2 in batch b1
        "objects_seen": 0,  # no batch in an archive store
    }
    text = cli("check")
    assert text.exit_code == 0
    assert "Registry and disk agree: 6 runs, 6 folders." in text.stdout


def test_an_empty_yard_is_clean(cli):
    assert cli.ok("check")["runs_checked"] == 0


def test_missing_active(built):
    shutil.rmtree(built["runs"] / "x1")
    doc = _failing(built["cli"])
    assert _only(doc, "missing_active") == [("x1", "runs/x1")]
    assert "active, but its folder is missing" in doc["mismatches"][0]["detail"]


def test_unknown_folder_in_runs_root_and_in_a_batch(built):
    (built["runs"] / "stray").mkdir()
    (built["b1_runs"] / "stray-archived").mkdir()
    (built["runs"] / ".hidden").mkdir()  # not a run: ignored
    (built["runs"] / "notes.txt").write_text("a file, not a run folder")
    doc = _failing(built["cli"])
    assert _only(doc, "unknown_folder") == [
        ("stray-archived", f"_archive/{built['b1']}/runs/stray-archived"),
        ("stray", "runs/stray"),
    ]
    assert doc["folders_seen"] == 8


def test_missing_archived(built):
    shutil.rmtree(built["b1_runs"] / "a1")
    doc = _failing(built["cli"])
    assert _only(doc, "missing_archived") == [("a1", f"_archive/{built['b1']}/runs/a1")]
    assert f"archived in batch {built['b1']}" in doc["mismatches"][0]["detail"]


def test_in_both_places(built):
    shutil.copytree(built["b1_runs"] / "a1", built["runs"] / "a1", symlinks=True)
    doc = _failing(built["cli"])
    assert _only(doc, "in_both_places") == [("a1", "runs/a1")]
    assert f"archived at _archive/{built['b1']}/runs/a1" in doc["mismatches"][0]["detail"]


def test_a_run_moved_back_by_hand_is_missing_from_its_batch(built):
    shutil.move(built["b1_runs"] / "a1", built["runs"] / "a1")
    doc = _failing(built["cli"])
    assert _only(doc, "missing_archived") == [("a1", f"_archive/{built['b1']}/runs/a1")]
    assert "a folder of it is at runs/a1" in doc["mismatches"][0]["detail"]


def _set_status(report: Path, status: str) -> None:
    data = json.loads(report.read_text())
    data["status"] = status
    report.write_text(json.dumps(data))


def test_incomplete_reports(built):
    _set_status(built["b1_report"], "in_progress")
    (restore_report,) = built["b2_dir"].glob("restore_report_*.json")
    _set_status(restore_report, "in_progress")
    doc = _failing(built["cli"])
    assert sorted(_only(doc, "incomplete_report")) == sorted(
        [
            (None, f"_archive/{built['b1']}/archive_report.json"),
            (None, f"_archive/{built['b2']}/{restore_report.name}"),
        ]
    )
    assert all("runyard recover" in m["detail"] for m in doc["mismatches"])
    assert "runyard recover" in built["cli"]("check").stderr  # the hint says so too


def _edit_manifest(folder: Path, **changes: str) -> None:
    data = json.loads((folder / "run.json").read_text())
    data.update(changes)
    (folder / "run.json").write_text(json.dumps(data))


def test_manifest_mismatch(built):
    _edit_manifest(built["runs"] / "x1", status="failed")
    _edit_manifest(built["runs"] / "x2", plan_version_id="pv-somebody-else")
    _edit_manifest(built["runs"] / "r1", yard_id="yd-another-yard")
    (built["b1_runs"] / "a1" / "run.json").write_text("{not json")
    (built["b1_runs"] / "a2" / "run.json").unlink()  # not legacy: it must have one
    doc = _failing(built["cli"])
    by_run = {m["run_id"]: m for m in doc["mismatches"]}
    assert sorted(_only(doc, "manifest_mismatch")) == [
        ("a1", f"_archive/{built['b1']}/runs/a1/run.json"),
        ("a2", f"_archive/{built['b1']}/runs/a2/run.json"),
        ("r1", "runs/r1/run.json"),
        ("x1", "runs/x1/run.json"),
        ("x2", "runs/x2/run.json"),
    ]
    assert "status 'failed' (registry: 'succeeded')" in by_run["x1"]["detail"]
    assert "plan_version_id 'pv-somebody-else'" in by_run["x2"]["detail"]
    assert "yard_id 'yd-another-yard'" in by_run["r1"]["detail"]
    assert "cannot be read: not valid JSON" in by_run["a1"]["detail"]
    assert "no run.json" in by_run["a2"]["detail"]


def test_leftovers_of_interrupted_moves(built):
    (built["runs"] / ".x9.partial").mkdir()
    (built["b1_runs"] / ".a1.deleting").mkdir()
    doc = _failing(built["cli"])
    assert _only(doc, "leftover") == [
        ("a1", f"_archive/{built['b1']}/runs/.a1.deleting"),
        ("x9", "runs/.x9.partial"),
    ]
    assert all("runyard recover" in m["detail"] for m in doc["mismatches"])


def test_purged_runs_are_expected_to_be_absent(built):
    built["cli"].ok("purge", "--older-than", "0", "--run", "--yes")
    assert not (built["b1_runs"] / "a1").exists()
    doc = built["cli"].ok("check")
    assert doc["ok"] is True and doc["folders_seen"] == 4


def test_the_table_and_the_summary(built):
    shutil.rmtree(built["runs"] / "x1")
    (built["runs"] / "stray").mkdir()
    result = built["cli"]("check")
    assert result.exit_code == 6
    for text in ("missing_active", "unknown_folder", "runs/stray", "x1"):
        assert text in result.stdout
    assert "2 mismatches (missing_active 1, unknown_folder 1) in 6 runs, 6 folders." in (
        result.stdout
    )
    assert "error: the registry and the disk disagree: 2 mismatches" in result.stderr
