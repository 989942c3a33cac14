"""``run.upload``: a file or a folder copied into a run's folder, links as links, never
outside the run, never over an existing file unless asked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import runyard
from runyard.errors import Conflict, Invalid, NotFound
from runyard.uploads import TEMP_PREFIX
from tests.trees import exact_state


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "out"
    (src / "sub" / "empty").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha")
    (src / "sub" / "b.bin").write_bytes(os.urandom(5000))
    os.chmod(src / "sub" / "b.bin", 0o640)
    os.symlink("a.txt", src / "rel-link")
    os.symlink("/etc/hostname", src / "abs-link")
    os.symlink("missing", src / "dangling")
    os.utime(src / "a.txt", ns=(1_600_000_000_000_000_000,) * 2)
    return src


def test_a_folder_and_a_file_are_copied_exactly(yard: runyard.Yard, lineage, tmp_path):
    src = _source(tmp_path)
    with yard.start_run(plan_version_id=lineage["plan_version_id"]) as run:
        placed = run.upload(src)
        single = run.upload(src / "a.txt", dest="nested/dir/copy.txt")
    assert placed == run.path / "out"
    assert exact_state(placed) == exact_state(src)
    assert os.readlink(placed / "abs-link") == "/etc/hostname"  # a link, not followed
    assert single.read_bytes() == b"alpha"
    assert run.result is not None and run.result.status.value == "succeeded"
    assert not [p for p in run.path.rglob("*") if p.name.startswith(TEMP_PREFIX)]


def test_an_existing_destination_is_kept_unless_replace(yard, lineage, tmp_path):
    src = _source(tmp_path)
    with yard.start_run(plan_version_id=lineage["plan_version_id"]) as run:
        run.upload(src / "a.txt", dest="x.txt")
        with pytest.raises(Conflict, match="already exists"):
            run.upload(src / "sub" / "b.bin", dest="x.txt")
        assert (run.path / "x.txt").read_bytes() == b"alpha"
        run.upload(src / "sub" / "b.bin", dest="x.txt", replace=True)
        assert (run.path / "x.txt").read_bytes() == (src / "sub" / "b.bin").read_bytes()
        run.upload(src, dest="x.txt", replace=True)  # a folder over a file, when asked
        assert (run.path / "x.txt" / "a.txt").is_file()


@pytest.mark.parametrize("dest", ["/abs", "../escape", "a/../../b", "", ".", "a\x00b"])
def test_destinations_outside_the_run_are_refused(yard, lineage, tmp_path, dest):
    src = _source(tmp_path)
    with yard.start_run(plan_version_id=lineage["plan_version_id"]) as run:
        before = exact_state(run.path)
        with pytest.raises(Invalid):
            run.upload(src / "a.txt", dest=dest)
        assert exact_state(run.path) == before


def test_never_through_a_symlink(yard, lineage, tmp_path):
    src = _source(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    with yard.start_run(plan_version_id=lineage["plan_version_id"]) as run:
        os.symlink(outside, run.path / "linked")
        os.symlink(outside / "f", run.path / "file-link")
        with pytest.raises(Invalid, match="symlink"):
            run.upload(src / "a.txt", dest="linked/a.txt")
        with pytest.raises(Conflict, match="symlink"):
            run.upload(src / "a.txt", dest="file-link", replace=True)
    assert list(outside.iterdir()) == []


def test_fifos_and_missing_sources_are_refused_before_copying(yard, lineage, tmp_path):
    src = _source(tmp_path)
    os.mkfifo(src / "sub" / "pipe")
    with yard.start_run(plan_version_id=lineage["plan_version_id"]) as run:
        with pytest.raises(Invalid, match="not a file, a folder or a link"):
            run.upload(src)
        assert not (run.path / "out").exists()
        with pytest.raises(NotFound):
            run.upload(tmp_path / "nope")
