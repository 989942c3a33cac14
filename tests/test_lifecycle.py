"""archive → restore → recover on a realistic workspace of the video preset's shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import runyard
from runyard.lifecycle.fsops import scan_tree
from tests.conftest import Cli, tree_snapshot, video_plan

OLD = time.time() - 3 * 86400


def _age(root: Path, when: float = OLD) -> None:
    """Set every mtime under ``root`` (links included, not followed) to ``when``."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (when, when), follow_symlinks=False)
    os.utime(root, (when, when))


@pytest.fixture
def ws(tmp_path: Path, db_url: str | None, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A video-preset workspace: 2 channels × 2 episodes × 3 takes, references, legacy runs,
    a kept, a recent, a running and a pinned run, and capcut_draft symlinks."""
    if db_url is not None:
        monkeypatch.setenv("RUNYARD_DB", db_url)
    root = tmp_path / "workspaces"
    project = tmp_path / "capcut_projects" / "CH01-001"
    project.mkdir(parents=True)
    (project / "draft.json").write_text("{}")
    runyard.init_yard(root, preset="video")
    cli = Cli(root)
    plan_id = video_plan(cli, tmp_path)
    runs_root = root / "video" / "runs"
    for ch in ("CH01", "CH02"):
        for ep in ("001", "002"):
            for take in (1, 2, 3):
                run_id = f"{ch}-{ep}-take{take}"
                cli.ok(
                    "run",
                    "start",
                    "--plan",
                    plan_id,
                    "--run-id",
                    run_id,
                    "--group",
                    f"{ch}/{ep}",
                )
                folder = runs_root / run_id
                (folder / "render").mkdir()
                (folder / "render" / "final.mp4").write_bytes(os.urandom(2048))
                (folder / "notes 日本語.txt").write_text("memo")
                os.symlink(project, folder / "capcut_draft")
                os.symlink("../shared-assets", folder / "assets")
                cli.ok("run", "finish", run_id, "--status", "succeeded")
            status = root / "scripts" / ch / ep / "status.json"
            status.parent.mkdir(parents=True)
            status.write_text(json.dumps({"metadata": {"video_run_id": f"{ch}-{ep}-take1"}}))
    (root / "scripts" / "CH02" / "002" / "status.json").write_text("{broken")
    for legacy in ("192", "api_upload_1", "jinsei_03", "CH02-special"):
        (runs_root / legacy).mkdir()
        (runs_root / legacy / "out.txt").write_text(legacy)
    running = cli.ok("run", "start", "--plan", plan_id, "--run-id", "misc-running")
    pinned = cli.ok("run", "start", "--plan", plan_id, "--run-id", "misc-pinned")
    cli.ok("run", "finish", pinned["run_id"], "--status", "succeeded")
    cli.ok("run", "pin", pinned["run_id"])
    kept = cli.ok("run", "start", "--plan", plan_id, "--run-id", "misc-kept")
    cli.ok("run", "finish", kept["run_id"], "--status", "failed")
    (runs_root / "misc-kept" / ".keep").write_text("")
    recent = cli.ok("run", "start", "--plan", plan_id, "--run-id", "misc-recent")
    cli.ok("run", "finish", recent["run_id"], "--status", "succeeded")
    old = cli.ok("run", "start", "--plan", plan_id, "--run-id", "misc-old")
    cli.ok("run", "finish", old["run_id"], "--status", "succeeded")
    _age(runs_root)
    os.utime(runs_root / "misc-recent" / "run.json")  # changed just now
    return {
        "root": root,
        "cli": cli,
        "runs": runs_root,
        "project": project,
        "running": running["run_id"],
    }


def _plan(ws: dict, *args: str) -> dict:
    return ws["cli"].ok("archive", *args)


def test_dry_run_reports_every_guard_and_changes_nothing(ws):
    before = tree_snapshot(ws["root"] / "video")
    doc = _plan(ws, "--all")
    assert Path(doc["report_path"]).parent == ws["root"] / "logs" / "regression"
    assert Path(doc["report_path"]).name.startswith("archive_dryrun_")
    archive = {e["run_id"] for e in doc["entries"]}
    skips = {s["run_id"]: {r["code"] for r in s["reasons"]} for s in doc["skips"]}
    # Each episode keeps its 2 newest takes (2, 3) and its adopted take 1: nothing of it
    # moves. Legacy folders and the old unscoped run do.
    assert archive == {"192", "api_upload_1", "jinsei_03", "CH02-special", "misc-old"}
    assert "adopted" in skips["CH01-001-take1"]
    assert skips["CH01-001-take3"] == {"keep_last_runs"}
    assert "reference_unreadable" in skips["CH02-002-take1"]  # fail safe: whole group
    assert "reference_unreadable" in skips["CH02-002-take2"]
    assert skips["misc-running"] >= {"in_progress"}
    assert "pinned" in skips["misc-pinned"]
    assert "keep_marker" in skips["misc-kept"]
    assert "recent_change" in skips["misc-recent"]
    assert any("CH02/002" in p for p in doc["problems"])
    assert doc["summary"]["to_archive"] == len(doc["entries"])
    assert tree_snapshot(ws["root"] / "video") == before
    # The unregistered legacy folders are still unknown to the registry after a dry run.
    assert ws["cli"]("run", "show", "192").exit_code == 3


def test_scopes(ws):
    unscoped = {e["run_id"] for e in _plan(ws, "--all", "--unscoped-only")["entries"]}
    assert "misc-old" in unscoped and "CH01-001-take2" not in unscoped
    legacy = {e["run_id"] for e in _plan(ws, "--all", "--legacy")["entries"]}
    assert legacy == {"192", "api_upload_1", "jinsei_03", "CH02-special"}
    group = _plan(ws, "--group", "CH01/001", "--keep-last-runs", "1")
    assert {e["run_id"] for e in group["entries"]} == {"CH01-001-take2"}
    assert _plan(ws, "--all", "--older-than", "30")["entries"] == []
    both = ws["cli"]("archive", "--all", "--group", "CH01/001", "--json")
    assert both.exit_code == 5
    assert ws["cli"]("archive", "--json").exit_code == 5


def test_archive_then_restore_is_exact(ws):
    runs = ws["runs"]
    scans = {p.name: scan_tree(p).digest for p in runs.iterdir()}
    doc = ws["cli"].ok("archive", "--all", "--run", "--yes", "--reason", "test")
    moved = [e for e in doc["entries"] if e["status"] == "moved"]
    assert moved and doc["status"] == "complete"
    report_path = Path(doc["report_path"])
    batch = doc["batch_id"]
    assert report_path == ws["root"] / "video" / "_archive" / batch / "archive_report.json"
    for entry in moved:
        assert not (runs / entry["run_id"]).exists()
        archived = ws["root"] / entry["dst"]
        assert archived.is_dir() and entry["src"] == f"video/runs/{entry['run_id']}"
        assert entry["digest"] == scans[entry["run_id"]]
        shown = ws["cli"].ok("run", "show", entry["run_id"])
        assert shown["location"] == "archived" and shown["archive_batch_id"] == batch
    legacy = ws["cli"].ok("run", "show", "192")
    assert legacy["legacy"] is True  # registered before it moved
    log = ws["cli"].ok("log")["items"][0]
    assert log["kind"] == "archive" and log["moved"] == len(moved)
    assert (ws["root"] / "logs" / "regression" / "CLEANUP_LOG.md").read_text().count("archive")

    restored = ws["cli"].ok("restore", "--report", str(report_path), "--run")
    assert restored["restored"] == len(moved)
    assert Path(restored["report_path"]).parent == report_path.parent
    for entry in moved:
        assert scan_tree(runs / entry["run_id"]).digest == scans[entry["run_id"]]
        assert ws["cli"].ok("run", "show", entry["run_id"])["location"] == "active"
        link = runs / entry["run_id"] / "capcut_draft"
        if link.is_symlink():
            assert Path(os.readlink(link)) == ws["project"]
    assert ws["project"].is_dir()  # the external project was never copied or moved


def test_partial_restore_and_never_overwrite(ws):
    doc = ws["cli"].ok("archive", "--all", "--legacy", "--run", "--yes")
    report = doc["report_path"]
    one = ws["cli"].ok("restore", "--report", report, "--only-run-id", "192", "--run")
    assert [(e["run_id"], e["status"]) for e in one["entries"]] == [("192", "restored")]
    (ws["runs"] / "api_upload_1").mkdir()
    (ws["runs"] / "api_upload_1" / "new.txt").write_text("someone else's")
    result = ws["cli"]("restore", "--report", report, "--run", "--json")
    assert result.exit_code == 4
    statuses = {e["run_id"]: e["status"] for e in result.json["entries"]}
    assert statuses["api_upload_1"] == "conflict"
    assert (ws["runs"] / "api_upload_1" / "new.txt").read_text() == "someone else's"
    archived = ws["root"] / next(e["dst"] for e in doc["entries"] if e["run_id"] == "api_upload_1")
    assert (archived / "out.txt").read_text() == "api_upload_1"
    assert ws["cli"]("restore", "--report", report, "--only-run-id", "nope").exit_code == 5
    # The execution log agrees with the exit code, and counts what came back.
    first, second = (i for i in reversed(ws["cli"].ok("log")["items"]) if i["kind"] == "restore")
    assert (first["status"], first["moved"], first["bytes"]) == ("complete", 1, 3)  # "192"
    assert (second["status"], second["skipped"]) == ("conflicts", 1)


def test_restoring_a_purged_run_says_it_was_purged(ws):
    cli = ws["cli"]
    doc = cli.ok("archive", "--all", "--legacy", "--run", "--yes")
    cli.ok("purge", "--older-than", "0", "--run", "--yes")
    result = cli.ok("restore", "--report", doc["report_path"], "--only-run-id", "192")
    assert [(e["status"], e["error"]) for e in result["entries"]] == [
        ("not_archived", "purged: deleted from this batch by `runyard purge`")
    ]


def test_dry_run_restore_changes_nothing(ws):
    doc = ws["cli"].ok("archive", "--all", "--legacy", "--run", "--yes")
    before = tree_snapshot(ws["root"] / "video")
    dry = ws["cli"].ok("restore", "--report", doc["report_path"])
    assert Path(dry["report_path"]).name.startswith("restore_dryrun_")
    assert tree_snapshot(ws["root"] / "video") == before


@pytest.mark.parametrize(
    "tamper", ["dotdot", "absolute", "elsewhere", "other_yard", "bad_run_id", "symlinked_parent"]
)
def test_tampered_reports_touch_nothing(ws, tmp_path, tamper):
    doc = ws["cli"].ok("archive", "--all", "--legacy", "--run", "--yes")
    report_path = Path(doc["report_path"])
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "precious.txt").write_text("do not touch")
    data = json.loads(report_path.read_text())
    entry = data["entries"][0]
    if tamper == "dotdot":
        entry["src"] = "video/runs/../../../canary/x"
    elif tamper == "absolute":
        entry["dst"] = str(canary)
    elif tamper == "elsewhere":
        entry["src"] = "scripts/CH01/001"
    elif tamper == "other_yard":
        data["yard_id"] = "yd-someoneelse"
    elif tamper == "bad_run_id":
        entry["run_id"] = "../canary"
    elif tamper == "symlinked_parent":
        runs_dir = report_path.parent / "video" / "runs"
        moved_to = report_path.parent / "video" / "runs-real"
        runs_dir.rename(moved_to)
        os.symlink(canary, runs_dir)
    report_path.write_text(json.dumps(data))
    before = tree_snapshot(tmp_path)
    result = ws["cli"]("restore", "--report", str(report_path), "--run", "--json")
    assert result.exit_code == 4, result.stdout
    assert tree_snapshot(tmp_path) == before


def test_run_all_needs_yes_when_not_interactive(ws):
    before = tree_snapshot(ws["root"] / "video")
    result = ws["cli"]("archive", "--all", "--run")
    assert result.exit_code == 4 and "--yes" in result.stderr
    assert tree_snapshot(ws["root"] / "video") == before


def test_busy_yard_is_refused(ws):
    from runyard.lifecycle.lock import yard_lock

    with yard_lock(ws["root"], "test"):
        result = ws["cli"]("archive", "--all", "--legacy", "--run", "--yes")
    assert result.exit_code == 4 and "busy" in result.stderr


def test_recover_with_nothing_to_do(ws):
    assert ws["cli"].ok("recover") == {"settled": [], "alarms": [], "removed_temp_files": []}


def test_recover_removes_a_report_temp_file_a_crash_left(ws):
    """A process killed between writing a report's temporary file and renaming it leaves
    ``.archive_report.json.<pid>.tmp``; recover removes it, and only such files."""
    cli = ws["cli"]
    done = cli.ok("archive", "--all", "--legacy", "--run", "--yes")
    batch = ws["root"] / "video" / "_archive" / done["batch_id"]
    leftovers = [
        batch / ".archive_report.json.4242.tmp",
        batch / ".archive_report.json.4242.0a1b2c3d.tmp",
        batch / ".restore_report_x.json.7.tmp",
    ]
    for temp in leftovers:
        temp.write_text("{half")
    other = batch / ".someone-elses.tmp"
    other.write_text("not ours")
    report_before = (batch / "archive_report.json").read_bytes()
    result = cli.ok("recover")
    assert sorted(result["removed_temp_files"]) == sorted(
        str(p.relative_to(ws["root"])) for p in leftovers
    )
    assert not any(p.exists() for p in leftovers) and other.read_text() == "not ours"
    assert (batch / "archive_report.json").read_bytes() == report_before
    text = cli("recover")
    assert text.exit_code == 0 and "Nothing to recover." in text.stdout


def test_retention_archives_the_oldest_eligible_above_the_cap(ws, monkeypatch):
    cli = ws["cli"]
    assert cli("retention", "--json").exit_code == 5  # no cap set
    active = len(cli.ok("run", "list", "--location", "active", "--limit", "1000")["items"])
    monkeypatch.setenv("RUNYARD_MAX_RUNS", str(active - 2))
    before = tree_snapshot(ws["root"] / "video")
    dry = cli.ok("retention")
    assert dry["excess"] == 2 and len(dry["entries"]) == 2
    assert tree_snapshot(ws["root"] / "video") == before
    done = cli.ok("retention", "--run")
    moved = {e["run_id"] for e in done["entries"] if e["status"] == "moved"}
    assert len(moved) == 2 and done["reason"] == "retention"
    # The two oldest of the eligible runs (the fixture made misc-old last; the legacy
    # folders are unregistered and old) — never a guarded one.
    assert not moved & {"misc-pinned", "misc-kept", "misc-recent", "misc-running"}
    for run_id in moved:
        assert (
            ws["root"] / next(e["dst"] for e in done["entries"] if e["run_id"] == run_id)
        ).is_dir()  # archived, not deleted
    assert cli.ok("log")["items"][0]["kind"] == "retention"


def test_retention_run_recovers_first_even_under_the_cap(ws, monkeypatch):
    """A cron job is often the first to come by after a crash: it settles the batch
    before finding nothing over the cap."""
    cli = ws["cli"]
    doc = cli.ok("archive", "--all", "--legacy", "--run", "--yes")
    report_path = Path(doc["report_path"])
    data = json.loads(report_path.read_text())
    data["status"] = "in_progress"
    data["entries"][0]["status"] = "pending"
    report_path.write_text(json.dumps(data))
    monkeypatch.setenv("RUNYARD_MAX_RUNS", "1000")
    done = cli.ok("retention", "--run")
    assert done["excess"] == 0
    assert done["recovered"] == [f"{doc['batch_id']}/{data['entries'][0]['run_id']}: moved"]
    assert json.loads(report_path.read_text())["status"] == "recovered"


def test_retention_run_with_nothing_eligible_says_so(ws, monkeypatch):
    cli = ws["cli"]
    monkeypatch.setenv("RUNYARD_MAX_RUNS", "1")
    cli.ok("archive", "--all", "--legacy", "--run", "--yes")
    cli.ok("archive", "--all", "--run", "--yes")  # the guards keep the rest
    result = cli("retention", "--run")
    assert result.exit_code == 0, result.stderr
    assert "Nothing to archive" in result.stdout and "dry run" not in result.stdout
    assert "still" in result.stdout and "over the cap" in result.stdout


def test_purge_deletes_only_old_unpinned_archived_runs(ws):
    cli = ws["cli"]
    doc = cli.ok("archive", "--all", "--legacy", "--run", "--yes")
    cli.ok("run", "pin", "192")
    before = tree_snapshot(ws["root"] / "video")
    assert cli.ok("purge", "--older-than", "30")["entries"] == []  # the batch is too young
    dry = cli.ok("purge", "--older-than", "0")
    assert {e["run_id"]: e["status"] for e in dry["entries"]}["192"] == "skipped"
    assert tree_snapshot(ws["root"] / "video") == before
    assert cli("purge", "--older-than", "0", "--run").exit_code == 4  # needs --yes
    done = cli.ok("purge", "--older-than", "0", "--run", "--yes")
    deleted = {e["run_id"] for e in done["entries"] if e["status"] == "deleted"}
    assert deleted == {"api_upload_1", "jinsei_03", "CH02-special"}
    for entry in doc["entries"]:
        exists = (ws["root"] / entry["dst"]).exists()
        assert exists == (entry["run_id"] == "192")
    assert cli.ok("run", "show", "jinsei_03")["location"] == "purged"
    assert cli.ok("run", "show", "192")["location"] == "archived"
    assert Path(done["report_path"]).name.startswith("purge_report_")


def test_archive_across_filesystems(ws, tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("LOUD: /dev/shm is missing or on the same filesystem; cross-fs untested")
    archive_root = shm / f"runyard-test-{os.getpid()}-{tmp_path.name}"
    toml = ws["root"] / "runyard.toml"
    toml.write_text(
        toml.read_text().replace(
            'archive_root = "video/_archive"', f'archive_root = "{archive_root}"'
        )
    )
    try:
        scans = {p.name: scan_tree(p).digest for p in ws["runs"].iterdir()}
        doc = ws["cli"].ok("archive", "--all", "--run", "--yes")
        moved = [e for e in doc["entries"] if e["status"] == "moved"]
        assert moved and all(e["method"] == "copy" for e in moved)
        assert Path(doc["report_path"]).is_relative_to(archive_root)
        back = ws["cli"].ok("restore", "--report", doc["report_path"], "--run")
        assert back["restored"] == len(moved)
        for entry in moved:
            assert scan_tree(ws["runs"] / entry["run_id"]).digest == scans[entry["run_id"]]
    finally:
        import shutil

        shutil.rmtree(archive_root, ignore_errors=True)


def test_an_alarm_is_raised_until_someone_acts(ws):

    cli = ws["cli"]
    doc = cli.ok("archive", "--all", "--legacy", "--run", "--yes")
    report_path = Path(doc["report_path"])
    data = json.loads(report_path.read_text())
    data["status"] = "in_progress"
    data["entries"][0]["status"] = "moving"
    data["entries"][1]["status"] = "pending"  # moved, but the journal had not said so yet
    report_path.write_text(json.dumps(data))
    lost = ws["root"] / data["entries"][0]["dst"]
    kept = lost.with_name(f"{lost.name}.aside")
    lost.rename(kept)  # the run is nowhere: neither in the runs root nor in the batch
    settled = []
    for _ in range(2):
        result = cli("recover", "--json")
        assert result.exit_code == 4
        assert any("run missing" in a for a in result.json["alarms"])
        settled.append(result.json["settled"])
    # The pending entry is settled once; the report, kept open by the alarm, does not
    # make the next recover count it again.
    assert settled == [[f"{doc['batch_id']}/{data['entries'][1]['run_id']}: moved"], []]
    for command in (
        ("archive", "--all", "--legacy", "--run", "--yes"),
        ("purge", "--older-than", "0", "--run", "--yes"),
    ):
        blocked = cli(*command)
        assert blocked.exit_code == 4 and "could not be settled" in blocked.stderr, command
    assert kept.is_dir() and all((ws["root"] / e["dst"]).is_dir() for e in data["entries"][1:])
    log = (ws["root"] / "logs" / "regression" / "CLEANUP_LOG.md").read_text()
    assert "| recover | failed |" in log
    kept.rename(lost)  # someone found it
    result = cli.ok("recover")
    assert result["alarms"] == [] and result["settled"] == [
        f"{doc['batch_id']}/{data['entries'][0]['run_id']}: moved"
    ]
    entry = json.loads(report_path.read_text())["entries"][0]
    assert entry["status"] == "moved" and entry["error"] is None


def test_busy_names_the_holder_only_while_it_is_alive(ws):
    from runyard.lifecycle.lock import LOCK_NAME, yard_lock

    lock_file = ws["root"] / LOCK_NAME
    with yard_lock(ws["root"], "purge"):
        result = ws["cli"]("recover")
        assert result.exit_code == 4 and f"pid {os.getpid()} (purge) holds" in result.stderr
    assert lock_file.read_text() == ""  # released: the name is cleared
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)",
            str(lock_file),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        lock_file.write_text("pid 999999999 (archive)")  # left by a runyard killed long ago
        result = ws["cli"]("recover")
        assert result.exit_code == 4 and "another process holds" in result.stderr
    finally:
        holder.kill()
        holder.wait()


def test_folders_that_are_not_run_ids_are_reported(ws):
    (ws["runs"] / "old render").mkdir()
    doc = _plan(ws, "--all", "--legacy")
    skip = next(s for s in doc["skips"] if s["run_id"] == "old render")
    assert skip["reasons"][0]["code"] == "invalid_run_id"
    done = ws["cli"].ok("archive", "--all", "--legacy", "--run", "--yes")
    assert (ws["runs"] / "old render").is_dir()
    assert "old render" not in {e["run_id"] for e in done["entries"]}


def test_cleanup_log_says_who_and_what(ws):
    import getpass

    ws["cli"].ok("archive", "--all", "--legacy", "--run", "--yes", "--reason", "monthly")
    line = (ws["root"] / "logs" / "regression" / "CLEANUP_LOG.md").read_text().splitlines()[-1]
    assert getpass.getuser() in line and "monthly" in line and "archive" in line
    assert "`runyard" in line
