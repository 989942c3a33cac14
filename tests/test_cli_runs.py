"""runyard run …: the plan-centric rule, ids, manifests, status moves, listing, import."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from runyard.manifest import read_manifest


def test_start_without_plan_is_the_closed_legacy_path(cli, lineage, snapshot):
    before = snapshot()
    result = cli("run", "start", "--json")
    assert result.exit_code == 4
    assert result.json["error"]["code"] == "legacy_path_closed"
    assert "runyard plan create" in result.json["error"]["hint"]
    human = cli("run", "start")
    assert "legacy path" in human.stderr and "runyard plan create" in human.stderr
    unknown = cli("run", "start", "--plan", "pv-nope", "--json")
    assert unknown.exit_code == 3 and "runyard plan create" in unknown.json["error"]["hint"]
    assert snapshot() == before


def test_start_records_lineage_folder_and_manifest(cli, lineage, yard_path):
    run = cli.ok(
        "run",
        "start",
        "--plan",
        lineage["plan_version_id"],
        "--group",
        "CH01/003",
        "--tag",
        "owner=ops",
        "--tag",
        "note=a=b",
    )
    assert next(iter(run)) == "run_id"
    for key in ("plan_version_id", "config_version_id", "scenario_id"):
        assert run[key] == lineage[key]
    assert run["status"] == "running" and run["group"] == "CH01/003"
    assert run["tags"] == {"owner": "ops", "note": "a=b"}
    folder = yard_path / "runs" / run["run_id"]
    assert Path(run["path"]) == folder and folder.is_dir()
    manifest = read_manifest(folder)
    assert manifest is not None and manifest.schema_version == 1
    assert manifest.run_id == run["run_id"]
    assert manifest.plan_version_id == lineage["plan_version_id"]
    assert manifest.scenario_id == lineage["scenario_id"]
    assert manifest.status == "running" and manifest.group == "CH01/003"
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_generated_ids_sort_by_creation(cli, lineage):
    ids = [cli.ok("run", "start", "--plan", lineage["plan_version_id"])["run_id"] for _ in range(5)]
    assert ids == sorted(ids)
    listed = [r["run_id"] for r in cli.ok("run", "list")["items"]]
    assert listed == sorted(ids, reverse=True)


def test_invalid_run_ids_create_nothing(cli, lineage, snapshot):
    before = snapshot()
    for bad in ["../escape", "a/b", ".hidden", "-dash", "a..b", "sp ace", "x" * 129, "日本"]:
        result = cli(
            "run", "start", "--plan", lineage["plan_version_id"], "--run-id", bad, "--json"
        )
        assert result.exit_code == 5, bad
        assert result.json["error"]["code"] == "invalid"
        assert "run id" in result.json["error"]["message"]
    assert snapshot() == before
    assert not (Path(cli.yard_path).parent / "escape").exists()


def test_duplicate_run_id_refused(cli, lineage, snapshot):
    cli.ok("run", "start", "--plan", lineage["plan_version_id"], "--run-id", "r1")
    before = snapshot()
    again = cli("run", "start", "--plan", lineage["plan_version_id"], "--run-id", "r1")
    assert again.exit_code == 4 and "already exists" in again.stderr
    assert snapshot() == before


def test_existing_folder_refused_and_kept(cli, lineage, yard_path, snapshot):
    folder = yard_path / "runs" / "mine"
    folder.mkdir()
    (folder / "data.txt").write_text("precious")
    before = snapshot()
    result = cli("run", "start", "--plan", lineage["plan_version_id"], "--run-id", "mine")
    assert result.exit_code == 4 and "run import" in result.stderr
    assert snapshot() == before


def test_locked_scenario_refuses_run(cli, lineage, snapshot):
    cli.ok("scenario", "lock", "base")
    before = snapshot()
    result = cli("run", "start", "--plan", lineage["plan_version_id"], "--json")
    assert result.exit_code == 4 and result.json["error"]["code"] == "locked"
    assert snapshot() == before
    cli.ok("scenario", "unlock", "base")
    assert cli.ok("run", "start", "--plan", lineage["plan_version_id"])["status"] == "running"


def test_finish_updates_registry_and_manifest(cli, lineage, tmp_path):
    run = cli.ok("run", "start", "--plan", lineage["plan_version_id"])
    summary_file = tmp_path / "summary.json"
    summary_file.write_text(json.dumps({"cost": 12.5}))
    finished = cli.ok(
        "run", "finish", run["run_id"], "--status", "succeeded", "--summary", f"@{summary_file}"
    )
    assert finished["status"] == "succeeded" and finished["summary"] == {"cost": 12.5}
    assert finished["finished_at"] is not None
    manifest = read_manifest(Path(run["path"]))
    assert manifest.status == "succeeded" and manifest.summary == {"cost": 12.5}
    assert cli.ok("run", "show", run["run_id"]) == finished


def test_finish_failed_with_error_and_inline_summary(cli, lineage):
    run = cli.ok("run", "start", "--plan", lineage["plan_version_id"])
    done = cli.ok(
        "run",
        "finish",
        run["run_id"],
        "--status",
        "failed",
        "--summary",
        '{"step": 3}',
        "--error",
        "solver diverged",
    )
    assert done["status"] == "failed" and done["error"] == "solver diverged"
    assert done["summary"] == {"step": 3}


def test_status_moves_only_forward(cli, lineage, snapshot):
    run = cli.ok("run", "start", "--plan", lineage["plan_version_id"])
    cli.ok("run", "finish", run["run_id"], "--status", "cancelled")
    before = snapshot()
    for status in ("succeeded", "failed", "cancelled"):
        again = cli("run", "finish", run["run_id"], "--status", status, "--json")
        assert again.exit_code == 4 and again.json["error"]["code"] == "conflict"
    bad_status = cli("run", "finish", run["run_id"], "--status", "running")
    assert bad_status.exit_code == 2  # not a choice
    assert snapshot() == before


def test_bad_finish_input_changes_nothing(cli, lineage, snapshot):
    run = cli.ok("run", "start", "--plan", lineage["plan_version_id"])
    before = snapshot()
    for summary in ("not json", "[1]", "@/no/such/file.json"):
        result = cli("run", "finish", run["run_id"], "--status", "succeeded", "--summary", summary)
        assert result.exit_code == 5, summary
    assert cli("run", "finish", "nope", "--status", "succeeded").exit_code == 3
    assert cli("run", "finish", "../x", "--status", "succeeded").exit_code == 5
    assert snapshot() == before


def test_finish_refused_when_folder_missing(cli, lineage, snapshot):
    import shutil

    run = cli.ok("run", "start", "--plan", lineage["plan_version_id"])
    shutil.rmtree(run["path"])
    before = snapshot()
    result = cli("run", "finish", run["run_id"], "--status", "succeeded")
    assert result.exit_code == 4 and "missing" in result.stderr
    assert snapshot() == before


def test_pin_and_unpin(cli, lineage):
    run = cli.ok("run", "start", "--plan", lineage["plan_version_id"])
    assert cli.ok("run", "pin", run["run_id"])["pinned"] is True
    assert cli.ok("run", "show", run["run_id"])["pinned"] is True
    assert cli.ok("run", "unpin", run["run_id"])["pinned"] is False
    assert cli("run", "pin", "nope").exit_code == 3


def test_list_filters(cli, lineage):
    plan_a = lineage["plan_version_id"]
    cli.ok("scenario", "add", "east")
    plan_b = cli.ok(
        "plan", "create", "--scenario", "east", "--config", lineage["config_version_id"]
    )["plan_version_id"]
    a1 = cli.ok("run", "start", "--plan", plan_a, "--group", "CH01/001")["run_id"]
    a2 = cli.ok("run", "start", "--plan", plan_a, "--group", "CH01/002")["run_id"]
    b1 = cli.ok("run", "start", "--plan", plan_b, "--group", "CH01/001")["run_id"]
    cli.ok("run", "finish", a1, "--status", "succeeded")
    cli.ok("run", "finish", b1, "--status", "failed")

    def ids(*args):
        return [r["run_id"] for r in cli.ok("run", "list", *args)["items"]]

    assert ids() == [b1, a2, a1]
    assert ids("--plan", plan_a) == [a2, a1]
    assert ids("--scenario", "east") == [b1]
    assert ids("--scenario", lineage["scenario_id"]) == [a2, a1]
    assert ids("--config", lineage["config_version_id"]) == [b1, a2, a1]
    assert ids("--status", "succeeded") == [a1]
    assert ids("--status", "running") == [a2]
    assert ids("--group", "CH01/001") == [b1, a1]
    assert ids("--group", "CH01/001", "--status", "failed") == [b1]
    assert ids("--location", "active") == [b1, a2, a1]
    assert ids("--location", "archived") == []
    assert ids("--no-legacy") == [b1, a2, a1]
    assert ids("--legacy") == []
    assert ids("--since", "2000-01-01") == [b1, a2, a1]
    assert ids("--until", "2000-01-01") == []
    assert ids("--since", "2999-01-01T00:00:00+09:00") == []
    for key in ("plan_version_id", "config_version_id", "scenario_id"):
        assert all(key in r for r in cli.ok("run", "list")["items"])


def test_list_unknown_filter_values(cli, lineage):
    assert cli("run", "list", "--plan", "pv-nope").exit_code == 3
    assert cli("run", "list", "--scenario", "nope").exit_code == 3
    assert cli("run", "list", "--since", "yesterday").exit_code == 5
    assert cli("run", "list", "--after", "garbage!").exit_code == 5
    assert cli("run", "list", "--limit", "0").exit_code == 5
    assert cli("run", "list", "--status", "sideways").exit_code == 2


def test_keyset_pages_cover_everything_once(cli, lineage):
    made = [
        cli.ok("run", "start", "--plan", lineage["plan_version_id"])["run_id"] for _ in range(7)
    ]
    seen, cursor = [], None
    while True:
        args = ["run", "list", "--limit", "3"] + (["--after", cursor] if cursor else [])
        page = cli.ok(*args)
        seen += [r["run_id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(made, reverse=True)


def test_group_pattern_from_config(cli, lineage, yard_path):
    toml = yard_path / "runyard.toml"
    toml.write_text(
        toml.read_text().replace(
            "# group_pattern = '^(?P<channel>CH\\d+)-(?P<episode>\\d+)'",
            "group_pattern = '^(?P<channel>CH\\d+)-(?P<episode>\\d+)'",
        )
    )
    run = cli.ok("run", "start", "--plan", lineage["plan_version_id"], "--run-id", "CH02-007-x")
    assert run["group"] == "CH02/007"
    other = cli.ok("run", "start", "--plan", lineage["plan_version_id"], "--run-id", "misc-1")
    assert other["group"] is None
    explicit = cli.ok(
        "run",
        "start",
        "--plan",
        lineage["plan_version_id"],
        "--run-id",
        "CH03-001",
        "--group",
        "special",
    )
    assert explicit["group"] == "special"


def test_import_manifest_legacy_and_corrupt(cli, lineage, yard_path):
    runs_root = yard_path / "runs"
    # A run recorded here, then forgotten by the registry: export its manifest, re-import.
    recorded = cli.ok(
        "run", "start", "--plan", lineage["plan_version_id"], "--run-id", "rec-1", "--group", "g1"
    )
    cli.ok("run", "finish", "rec-1", "--status", "succeeded", "--summary", '{"k": 1}')
    manifest_text = (runs_root / "rec-1" / "run.json").read_text()
    (runs_root / "rec-2").mkdir()
    (runs_root / "rec-2" / "run.json").write_text(manifest_text.replace("rec-1", "rec-2"))
    legacy = runs_root / "192"
    legacy.mkdir()
    (legacy / "out.mp4").write_bytes(b"\0" * 10)
    old = time.time() - 86400 * 3
    os.utime(legacy, (old, old))
    corrupt = runs_root / "api_broken"
    corrupt.mkdir()
    (corrupt / "run.json").write_text("{not json")
    legacy_before = sorted(p.name for p in legacy.iterdir())

    result = cli(
        "run",
        "import",
        str(runs_root / "rec-2"),
        str(legacy),
        str(corrupt),
        str(runs_root / "rec-1"),
        "--json",
    )
    assert result.exit_code == 5  # one folder failed; the rest went in
    doc = result.json
    outcomes = {o["run_id"]: o["outcome"] for o in doc["items"]}
    assert outcomes == {
        "rec-2": "imported",
        "192": "legacy",
        "api_broken": "error",
        "rec-1": "already_registered",
    }
    assert (doc["imported"], doc["legacy"], doc["errors"], doc["already_registered"]) == (
        1,
        1,
        1,
        1,
    )
    bad = next(o for o in doc["items"] if o["run_id"] == "api_broken")
    assert "not valid JSON" in bad["message"]

    rec2 = cli.ok("run", "show", "rec-2")
    assert rec2["plan_version_id"] == lineage["plan_version_id"]
    assert rec2["scenario_id"] == recorded["scenario_id"]
    assert rec2["status"] == "succeeded" and rec2["summary"] == {"k": 1}
    assert rec2["group"] == "g1" and rec2["legacy"] is False
    leg = cli.ok("run", "show", "192")
    assert leg["legacy"] is True and leg["plan_version_id"] is None
    assert leg["status"] == "unknown"
    assert abs(_epoch(leg["started_at"]) - old) < 2  # from the folder's mtime
    assert not (legacy / "run.json").exists()  # a legacy folder is never written to
    assert sorted(p.name for p in legacy.iterdir()) == legacy_before
    assert cli.ok("run", "list", "--legacy")["items"][0]["run_id"] == "192"
    with_again = cli("run", "import", "--all", "--json")
    assert with_again.json["imported"] == 0 and with_again.json["legacy"] == 0


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_import_refuses_folders_outside_runs_root(cli, lineage, yard_path, tmp_path, snapshot):
    outside = tmp_path / "elsewhere" / "r9"
    outside.mkdir(parents=True)
    before = snapshot()
    result = cli("run", "import", str(outside), str(yard_path / "runs" / "missing"), "--json")
    assert result.exit_code == 5
    messages = [o["message"] for o in result.json["items"]]
    assert any("runs root" in m for m in messages)
    assert any("not a directory" in m for m in messages)
    assert snapshot() == before
    assert cli("run", "import").exit_code == 2  # usage: nothing to import


def test_import_manifest_with_unknown_plan(cli, lineage, yard_path):
    folder = yard_path / "runs" / "orphan"
    folder.mkdir()
    (folder / "run.json").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "run_id": "orphan",
                "plan_version_id": "pv-gone",
                "status": "succeeded",
                "started_at": "2026-01-01T00:00:00Z",
            }
        )
    )
    result = cli("run", "import", str(folder), "--json")
    assert result.exit_code == 5
    assert "pv-gone" in result.json["items"][0]["message"]
    assert cli("run", "show", "orphan").exit_code == 3


def test_import_manifest_whose_id_disagrees(cli, lineage, yard_path):
    folder = yard_path / "runs" / "named-a"
    folder.mkdir()
    (folder / "run.json").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "run_id": "named-b",
                "plan_version_id": None,
                "status": "succeeded",
                "started_at": "2026-01-01T00:00:00Z",
            }
        )
    )
    result = cli("run", "import", str(folder), "--json")
    assert result.exit_code == 5 and "does not match" in result.json["items"][0]["message"]


def test_import_refuses_a_manifest_of_another_yard(cli, lineage, yard_path):
    folder = yard_path / "runs" / "foreign"
    folder.mkdir()
    (folder / "run.json").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "yard_id": "yd-someoneelse",
                "run_id": "foreign",
                "plan_version_id": None,
                "status": "succeeded",
                "started_at": "2026-01-01T00:00:00Z",
            }
        )
    )
    result = cli("run", "import", str(folder), "--json")
    assert result.exit_code == 5 and "another yard" in result.json["items"][0]["message"]
    assert cli("run", "show", "foreign").exit_code == 3


def test_registered_id_gets_the_right_hint(cli, lineage):
    cli.ok("run", "start", "--plan", lineage["plan_version_id"], "--run-id", "take1")
    again = cli("run", "start", "--plan", lineage["plan_version_id"], "--run-id", "take1", "--json")
    assert again.exit_code == 4
    assert "already exists" in again.json["error"]["message"]
    assert "run import" not in again.json["error"].get("hint", "")


def test_filesystem_errors_are_reported_as_json(cli, lineage):
    run = cli.ok("run", "start", "--plan", lineage["plan_version_id"])
    manifest = Path(run["path"]) / "run.json"
    manifest.unlink()
    manifest.mkdir()  # a folder where the manifest should be
    result = cli("run", "finish", run["run_id"], "--status", "succeeded", "--json")
    assert result.exit_code == 1
    assert result.json["error"]["code"] == "os_error"
    assert cli.ok("run", "show", run["run_id"])["status"] == "running"


def test_import_reports_a_start_cut_off_by_a_crash(cli, lineage, yard_path):
    folder = yard_path / "runs" / "cut-off"
    folder.mkdir()
    (folder / ".run.json.4242.tmp").write_text('{"schema_version": 1, "run_id": "cut')
    result = cli("run", "import", str(folder), "--json")
    assert result.exit_code == 5
    assert "unfinished run.json" in result.json["items"][0]["message"]
    assert cli("run", "show", "cut-off").exit_code == 3
