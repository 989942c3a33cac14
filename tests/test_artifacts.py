"""runyard.artifacts: listing a run folder without following links, serving only from inside."""

from __future__ import annotations

import os
from datetime import UTC
from pathlib import Path

import pytest

from runyard.artifacts import list_artifacts, media_type, resolve_artifact
from runyard.errors import Invalid, NotFound, Refused


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run folder with nested files, a link inside, links outside, and a secret beside it."""
    run = tmp_path / "runs" / "r1"
    (run / "out" / "deep").mkdir(parents=True)
    (run / "summary.json").write_text('{"a": 1}')
    (run / "psi.csv").write_text("sku,period\n")
    (run / "out" / "log.log").write_text("hello")
    (run / "out" / "deep" / "data.bin").write_bytes(b"\x00" * 10)
    (run / "out-b.txt").write_text("b")
    outside = tmp_path / "secret"
    (outside / "sub").mkdir(parents=True)
    (outside / "passwd").write_text("root")
    (outside / "sub" / "inner.txt").write_text("hidden")
    os.symlink(outside / "passwd", run / "leak")
    os.symlink(outside, run / "escape")
    os.symlink("summary.json", run / "alias.json")
    os.symlink("out", run / "outlink")
    return run


def test_lists_nested_in_path_order_without_following_links(run_dir):
    items, truncated = list_artifacts(run_dir)
    assert not truncated
    assert [a.path for a in items] == [
        "alias.json",
        "escape",
        "leak",
        "out",
        "out/deep",
        "out/deep/data.bin",
        "out/log.log",
        "out-b.txt",
        "outlink",
        "psi.csv",
        "summary.json",
    ]
    by_path = {a.path: a for a in items}
    assert by_path["escape"].kind == "symlink"
    assert by_path["escape"].link_target == str(run_dir.parent.parent / "secret")
    assert by_path["alias.json"].link_target == "summary.json"
    assert by_path["out"].kind == "dir" and by_path["out"].size == 0
    assert by_path["out/deep/data.bin"].size == 10
    assert by_path["out/deep/data.bin"].media_type == "application/octet-stream"
    assert by_path["summary.json"].media_type == "application/json"
    assert by_path["out/log.log"].media_type == "text/plain"
    assert by_path["summary.json"].modified_at.tzinfo == UTC
    assert not any("inner.txt" in a.path or "passwd" in a.path for a in items)


def test_truncates_at_the_limit(run_dir):
    items, truncated = list_artifacts(run_dir, limit=3)
    assert [a.path for a in items] == ["alias.json", "escape", "leak"]
    assert truncated
    everything, _ = list_artifacts(run_dir)
    exact, truncated = list_artifacts(run_dir, limit=len(everything))
    assert len(exact) == len(everything) and not truncated
    with pytest.raises(Invalid):
        list_artifacts(run_dir, limit=0)


def test_missing_folder_lists_nothing(tmp_path):
    assert list_artifacts(tmp_path / "nope") == ([], False)


def test_media_types():
    assert media_type("a.csv") == "text/csv"
    assert media_type("README.md") == "text/plain"
    assert media_type("NOTES.TXT") == "text/plain"
    assert media_type("blob") == "application/octet-stream"


def test_resolves_a_good_nested_file_and_a_link_inside(run_dir):
    assert (
        resolve_artifact(run_dir, "out/deep/data.bin")
        == (run_dir / "out" / "deep" / "data.bin").resolve()
    )
    assert resolve_artifact(run_dir, "alias.json") == (run_dir / "summary.json").resolve()
    assert resolve_artifact(run_dir, "outlink/log.log") == (run_dir / "out" / "log.log").resolve()


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("a\x00b", "NUL"),
        ("out\\log.log", "backslash"),
        ("../r1/summary.json", "'..'"),
        ("out/../summary.json", "'..'"),
        ("./summary.json", "'.'"),
        ("out//log.log", "empty component"),
        ("out/", "empty component"),
        ("x" * 5000, "at most"),
    ],
)
def test_malformed_paths_are_invalid(run_dir, path, words):
    with pytest.raises(Invalid) as err:
        resolve_artifact(run_dir, path)
    assert words in err.value.message


def test_links_out_of_the_run_are_refused(run_dir):
    with pytest.raises(Refused, match="outside the run's directory"):
        resolve_artifact(run_dir, "leak")
    with pytest.raises(Refused, match="outside the run's directory"):
        resolve_artifact(run_dir, "escape/sub/inner.txt")


def test_missing_and_non_files(run_dir, tmp_path):
    with pytest.raises(NotFound):
        resolve_artifact(run_dir, "nope.txt")
    with pytest.raises(NotFound):
        resolve_artifact(run_dir, "summary.json/inside")
    with pytest.raises(NotFound):
        resolve_artifact(tmp_path / "no-run", "summary.json")
    with pytest.raises(Invalid, match="directory"):
        resolve_artifact(run_dir, "out/deep")
    os.mkfifo(run_dir / "pipe")
    with pytest.raises(Invalid, match="not a regular file"):
        resolve_artifact(run_dir, "pipe")
    os.symlink("loop", run_dir / "loop")
    with pytest.raises(Refused):
        resolve_artifact(run_dir, "loop")


def test_a_run_folder_that_is_a_link_is_neither_listed_nor_served(run_dir, tmp_path):
    """A run folder swapped for a symlink (issue 13) may point anywhere: refused."""
    os.symlink(run_dir, tmp_path / "current")
    with pytest.raises(Refused, match="replaced by a symlink"):
        resolve_artifact(tmp_path / "current", "summary.json")
    with pytest.raises(Refused, match="replaced by a symlink"):
        list_artifacts(tmp_path / "current")


def test_a_run_folder_under_a_linked_parent_still_serves(run_dir, tmp_path):
    os.symlink(run_dir.parent, tmp_path / "linked-runs")
    assert (
        resolve_artifact(tmp_path / "linked-runs" / run_dir.name, "summary.json")
        == (run_dir / "summary.json").resolve()
    )
