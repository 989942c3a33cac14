"""Issue 13's contract for the lifecycle, one test per promise that main used to break:
odd names, special files, swapped folders, a failed start, cross-filesystem fidelity,
errors that name the right thing."""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import runyard
from runyard.config import load_settings
from runyard.lifecycle import report as report_module
from runyard.lifecycle.fsops import same_filesystem
from tests.conftest import Cli, video_plan
from tests.trees import exact_state, remove

SHM = Path("/dev/shm")
GUARDS_OFF = ("--keep-recent-minutes", "0", "--keep-last-runs", "0")
ODD = os.fsdecode(b"take\xff\xfe")  # a name that is not UTF-8


@pytest.fixture
def yard(tmp_path: Path, db_url: str | None, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    if db_url is not None:
        monkeypatch.setenv("RUNYARD_DB", db_url)
    root = tmp_path / "yard"
    runyard.init_yard(root, preset="video")
    cli = Cli(root)
    plan_id = video_plan(cli, tmp_path)
    settings = load_settings(root)
    return {"cli": cli, "root": root, "plan": plan_id, "settings": settings}


def _run(ws: dict[str, Any], run_id: str, group: str | None = None) -> Path:
    args = ["run", "start", "--plan", ws["plan"], "--run-id", run_id]
    ws["cli"].ok(*args, *(["--group", group] if group else []))
    folder: Path = ws["settings"].runs_root / run_id
    (folder / "frames").mkdir()
    (folder / "frames" / "0001.png").write_bytes(b"png" * 100)
    ws["cli"].ok("run", "finish", run_id, "--status", "succeeded")
    return folder


def _archive(ws: dict[str, Any], *run_ids: str, run: bool = True) -> Any:
    args = ["archive", *[a for r in run_ids for a in ("--run-id", r)], *GUARDS_OFF]
    return ws["cli"](*args, *(["--run"] if run else []), "--json")


# --- 1. names and link targets that are not UTF-8 ---------------------------------------------


def test_a_link_target_that_is_not_utf8_archives_restores_and_recovers(yard):
    """The bug that stuck yards: a symlink whose target is not UTF-8 made the archive move
    every run and then crash writing its report; recover, restore and archive crashed the
    same way from then on."""
    folder = _run(yard, "r1")
    os.symlink(os.fsdecode(b"/tmp/\xff\xfe-project"), folder / ODD)
    (folder / f"{ODD}.txt").write_bytes(b"odd")
    before = exact_state(folder)
    moved = _archive(yard, "r1")
    assert moved.exit_code == 0, moved.stdout
    doc = moved.json
    [link] = [s for s in doc["entries"][0]["symlinks"] if s["path"] != "capcut_draft"]
    assert link["path"] == "take\\xff\\xfe" and link["target"] == "/tmp/\\xff\\xfe-project"
    assert report_module.SymlinkDoc.model_validate(link).exact_target() == os.fsdecode(
        b"/tmp/\xff\xfe-project"
    )
    report = Path(doc["report_path"])
    assert report.read_bytes().decode("utf-8")  # a report is always UTF-8 JSON
    yard["cli"].ok("recover")
    restored = yard["cli"].ok("restore", "--report", str(report), "--run")
    assert restored["restored"] == 1
    assert exact_state(folder) == before


def test_a_reason_that_is_not_utf8_is_refused_before_any_batch(yard):
    _run(yard, "r1")
    result = yard["cli"]("archive", "--run-id", "r1", *GUARDS_OFF, "--run", "--reason", ODD)
    assert result.exit_code == 5 and "UTF-8" in result.stderr
    archive_root: Path = yard["settings"].archive_root
    assert not archive_root.exists() or not any(archive_root.iterdir())
    assert (yard["settings"].runs_root / "r1").is_dir()


def test_a_folder_name_that_is_not_utf8_is_a_skip_not_a_crash(yard):
    _run(yard, "r1")
    (yard["settings"].runs_root / ODD).mkdir()
    result = yard["cli"]("archive", "--all", *GUARDS_OFF, "--json")
    assert result.exit_code == 0, result.stderr
    [skip] = [s for s in result.json["skips"] if s["reasons"][0]["code"] == "invalid_run_id"]
    assert skip["run_id"] == "take\\xff\\xfe"
    check = yard["cli"]("check", "--json")
    assert check.exit_code == 6
    [mismatch] = check.json["mismatches"]
    assert mismatch["kind"] == "unknown_folder"
    assert os.fsdecode(__import__("base64").b64decode(mismatch["path_b64"])).endswith(ODD)


# --- 3. files that are not regular files ------------------------------------------------------


def test_fifos_and_sockets_in_a_run_move_and_come_back(yard):
    folder = _run(yard, "r1")
    os.mkfifo(folder / "frames" / "progress.fifo")
    os.mknod(folder / "ffmpeg.sock", 0o600 | 0o140000)
    before = exact_state(folder)
    moved = _archive(yard, "r1")
    assert moved.exit_code == 0, moved.stdout
    yard["cli"].ok("restore", "--report", moved.json["report_path"], "--run")
    assert exact_state(folder) == before


# --- 4. folders swapped behind runyard's back -------------------------------------------------


@pytest.mark.parametrize("swap", ["deleted", "symlink"])
def test_restore_of_a_vanished_or_swapped_run_fails_and_the_registry_says_missing(
    yard, tmp_path, swap
):
    _run(yard, "r1")
    _run(yard, "r2")
    doc = _archive(yard, "r1", "r2").json
    archived = yard["settings"].run_dir("r1", doc["batch_id"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    remove(archived)
    if swap == "symlink":
        os.symlink(elsewhere, archived)
    result = yard["cli"]("restore", "--report", doc["report_path"], "--run", "--json")
    assert result.exit_code == 4, result.stdout
    statuses = {e["run_id"]: e["status"] for e in result.json["entries"]}
    assert statuses == {"r1": "failed", "r2": "restored"}
    assert result.json["failed"] == 1
    assert yard["cli"].ok("run", "show", "r1")["location"] == "missing"
    assert not any(elsewhere.iterdir())  # nothing written through the link
    check = yard["cli"]("check", "--json")
    assert check.exit_code == 6
    kinds = {m["kind"] for m in check.json["mismatches"]}
    assert "marked_missing" in kinds
    if swap == "symlink":
        assert "swapped_for_symlink" in kinds


def test_an_active_run_swapped_for_a_symlink_is_skipped_and_checked(yard, tmp_path):
    folder = _run(yard, "r1")
    _run(yard, "r2")
    real = tmp_path / "moved-away"
    folder.rename(real)
    os.symlink(real, folder)
    result = _archive(yard, "r1", "r2")
    assert result.exit_code == 4, result.stdout  # r2 moved; r1 needs a person
    assert [e["run_id"] for e in result.json["entries"]] == ["r2"]
    [skip] = result.json["skips"]
    assert skip["reasons"][0]["code"] == "swapped_for_symlink"
    assert (real / "frames" / "0001.png").exists() and folder.is_symlink()
    check = yard["cli"]("check", "--json")
    assert check.exit_code == 6
    assert {m["kind"] for m in check.json["mismatches"]} == {"swapped_for_symlink"}


@pytest.mark.parametrize("root", ["runs_root", "archive_root"])
def test_a_root_that_is_a_symlink_is_refused_and_checked(yard, tmp_path, root):
    _run(yard, "r1")
    path: Path = getattr(yard["settings"], root)
    path.mkdir(parents=True, exist_ok=True)
    real = tmp_path / f"real-{root}"
    path.rename(real)
    os.symlink(real, path)
    for args in (("archive", "--all", *GUARDS_OFF), ("recover",), ("purge", "--older-than", "0")):
        result = yard["cli"](*args)
        assert result.exit_code == 4 and "is a symlink" in result.stderr, (args, result.stderr)
    check = yard["cli"]("check", "--json")
    assert check.exit_code == 6
    assert "symlinked_root" in {m["kind"] for m in check.json["mismatches"]}


def test_purge_never_reports_deleted_what_it_did_not_delete(yard, tmp_path):
    _run(yard, "r1")
    doc = _archive(yard, "r1").json
    archived = yard["settings"].run_dir("r1", doc["batch_id"])
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "data").write_bytes(b"do not delete")
    remove(archived)
    os.symlink(keep, archived)
    result = yard["cli"]("purge", "--older-than", "0", "--run", "--yes", "--json")
    assert result.exit_code == 0, result.stdout
    [entry] = result.json["entries"]
    assert entry["status"] == "skipped" and "symlink" in entry["reason"]
    assert result.json["deleted"] == 0
    assert (keep / "data").read_bytes() == b"do not delete" and archived.is_symlink()


# --- 6. a failed start leaves nothing behind --------------------------------------------------


def test_a_report_that_cannot_be_written_leaves_no_batch_folder(yard, monkeypatch):
    _run(yard, "r1")

    def full_disk(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(report_module, "write_atomic", full_disk)
    result = _archive(yard, "r1")
    assert result.exit_code == 1 and result.json["error"]["code"] == "os_error"
    archive_root: Path = yard["settings"].archive_root
    assert not archive_root.exists() or not any(archive_root.iterdir())
    assert (yard["settings"].runs_root / "r1" / "frames" / "0001.png").exists()


# --- 7. cross-filesystem moves keep what a rename keeps ---------------------------------------


@pytest.fixture
def shm_archive(yard: dict[str, Any], tmp_path: Path) -> Iterator[Path]:
    if not SHM.is_dir() or same_filesystem(SHM, tmp_path):
        pytest.skip("CROSS-FILESYSTEM NOT TESTED: /dev/shm is missing or on the same filesystem")
    folder = Path(tempfile.mkdtemp(prefix="runyard-hostile-", dir=SHM))
    _set_archive_root(yard, folder / "archive")
    yield folder
    remove(folder)


def _set_archive_root(ws: dict[str, Any], path: Path) -> None:
    toml = ws["root"] / "runyard.toml"
    toml.write_text(
        toml.read_text().replace('archive_root = "video/_archive"', f'archive_root = "{path}"')
    )
    ws["settings"] = load_settings(ws["root"])


def test_xattrs_and_hard_links_survive_a_move_across_filesystems(yard, shm_archive):
    folder = _run(yard, "r1")
    os.setxattr(folder / "frames" / "0001.png", "user.origin", b"camera-2")
    os.setxattr(folder / "frames", "user.note", b"take 1")
    os.link(folder / "frames" / "0001.png", folder / "poster.png")
    before = exact_state(folder)
    moved = _archive(yard, "r1")
    assert moved.exit_code == 0, moved.stdout
    assert moved.json["entries"][0]["method"] == "copy"
    archived = yard["settings"].run_dir("r1", moved.json["batch_id"])
    assert os.getxattr(archived / "frames" / "0001.png", "user.origin") == b"camera-2"
    yard["cli"].ok("restore", "--report", moved.json["report_path"], "--run")
    assert exact_state(folder) == before


@pytest.fixture
def ramfs_archive(yard: dict[str, Any], tmp_path: Path) -> Iterator[Path]:
    """An archive root on ramfs, which keeps no user extended attributes (root only)."""
    if os.geteuid() != 0:
        pytest.skip("NOT TESTED: mounting a ramfs (a filesystem without xattrs) needs root")
    mount = tmp_path / "ramfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "ramfs", "ramfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"NOT TESTED: cannot mount a ramfs: {done.stderr.decode().strip()}")
    _set_archive_root(yard, mount / "archive")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_destination_that_would_lose_xattrs_is_a_skip_in_the_dry_run(yard, ramfs_archive):
    """One odd run never stops the batch: the others move, the exit code says so."""
    odd = _run(yard, "r1")
    os.setxattr(odd / "frames" / "0001.png", "user.origin", b"camera-2")
    _run(yard, "r2")
    dry = _archive(yard, "r1", "r2", run=False)
    assert dry.exit_code == 0
    [skip] = dry.json["skips"]
    assert skip["run_id"] == "r1" and skip["reasons"][0]["code"] == "cannot_keep"
    assert "extended attributes" in skip["reasons"][0]["message"]
    result = _archive(yard, "r1", "r2")
    assert result.exit_code == 4
    assert [e["run_id"] for e in result.json["entries"]] == ["r2"]
    assert result.json["summary"]["problems"] == 1
    assert os.getxattr(odd / "frames" / "0001.png", "user.origin") == b"camera-2"


# --- 9. errors name the right thing -----------------------------------------------------------


def test_archive_of_an_unknown_run_or_group_is_not_found(yard):
    _run(yard, "r1", group="CH01/001")
    result = yard["cli"]("archive", "--run-id", "nope", "--json")
    assert result.exit_code == 3 and result.json["error"]["code"] == "not_found"
    assert "run list" in result.json["error"]["hint"]
    result = yard["cli"]("archive", "--group", "CH09/999", "--json")
    assert result.exit_code == 3 and "CH09/999" in result.json["error"]["message"]
    assert yard["cli"]("archive", "--group", "CH01/001", *GUARDS_OFF).exit_code == 0
