"""fsops: scans that identify a tree, moves that never lose or half-move one, recovery.

Cross-filesystem tests use /dev/shm (tmpfs) as the other filesystem; where it is not
one, they skip with a loud reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runyard.errors import Conflict, Invalid, Refused
from runyard.lifecycle import fsops, movers
from runyard.lifecycle.fsops import (
    TreeScan,
    finish_interrupted_move,
    move_tree,
    partial_path,
    rename_noreplace,
    same_filesystem,
    scan_tree,
    tombstone_path,
)
from tests.trees import DirSpec, FileSpec, LinkSpec, build, make_outside, remove, trees

SHM = Path("/dev/shm")
T0 = 1_600_000_000_000_000_000

# Hypothesis runs many examples in one test call; each example makes (and removes)
# its own folder under the fixture's folder, so the fixture never needs resetting.
EXAMPLES = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def other_fs(tmp_path: Path) -> Iterator[Path]:
    """A per-test folder on a filesystem other than ``tmp_path``'s, removed afterwards."""
    if not SHM.is_dir() or same_filesystem(SHM, tmp_path):
        pytest.skip(
            "CROSS-FILESYSTEM MOVES NOT TESTED: /dev/shm is missing or on the same "
            f"filesystem as {tmp_path}"
        )
    folder = Path(tempfile.mkdtemp(prefix="runyard-test-fsops-", dir=SHM))
    try:
        yield folder
    finally:
        remove(folder)


@pytest.fixture(params=["same_fs", "cross_fs"])
def archive_root(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Where runs are archived to: on tmp_path's filesystem, or on another one."""
    if request.param == "same_fs":
        return tmp_path / "archive"
    return Path(request.getfixturevalue("other_fs")) / "archive"


SAMPLE = DirSpec(
    {
        "run.json": FileSpec(b'{"run_id": "r1"}', 0o644, T0),
        "frames": DirSpec(
            {
                "big.bin": FileSpec(bytes(range(256)) * 6000, 0o600, T0 + 1),
                "ready.flag": FileSpec(b"", 0o444, T0 + 2),
                "empty": DirSpec({}, 0o700, T0 + 3),
            },
            0o755,
            T0 + 4,
        ),
        "notes ü 日本.txt": FileSpec(b"unicode name", 0o640, T0 + 5),
        "capcut_draft": LinkSpec("outside_abs", T0 + 6),
        "sibling": LinkSpec("text", T0 + 7, "../neighbour"),
        "self": LinkSpec("inside", T0 + 8),
        "gone": LinkSpec("dangling_rel", T0 + 9),
    },
    0o755,
    T0 + 10,
)


def make_run(base: Path, spec: DirSpec = SAMPLE, name: str = "r1") -> tuple[Path, Path]:
    """Build ``spec`` at ``base/runs/<name>`` with its outside folder; (run, outside)."""
    outside = base / "project"
    if not outside.exists():
        make_outside(outside)
    (base / "runs").mkdir(parents=True, exist_ok=True)
    run = base / "runs" / name
    build(spec, run, outside)
    return run, outside


def parent_state(path: Path) -> TreeScan:
    """The scan of the folder holding ``path``: covers ``path`` whatever it is, and any
    sibling (a partial copy, a tombstone) that appears next to it."""
    return scan_tree(path.parent)


# --- scan_tree -----------------------------------------------------------------------------


def test_scan_counts_and_identifies_a_tree(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path)
    scan = scan_tree(run)
    assert scan.content_hashed and scan.digest.startswith("sha256:")
    assert scan.files == 4
    assert scan.bytes == len(b'{"run_id": "r1"}') + 256 * 6000 + len(b"unicode name")
    assert scan.newest_mtime_ns == T0 + 10  # the root is the newest here
    assert dict(scan.symlinks) == {
        "capcut_draft": str(tmp_path / "project"),
        "sibling": "../neighbour",
        "self": ".",
        "gone": "no-such-entry",
    }
    by_path = {e.path: e for e in scan.entries}
    assert by_path["frames/ready.flag"].mode == 0o444
    assert by_path["frames/empty"].kind == "dir"
    assert by_path["."].mtime_ns == T0 + 10
    assert scan_tree(run) == scan  # deterministic


def test_newest_mtime_sees_deep_changes_and_the_root(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path)
    deep = run / "frames" / "empty"
    os.utime(deep, ns=(T0 + 99, T0 + 99))
    assert scan_tree(run).newest_mtime_ns == T0 + 99
    os.utime(run, ns=(T0 + 500, T0 + 500))
    assert scan_tree(run).newest_mtime_ns == T0 + 500


def _chmod(run: Path) -> None:
    os.chmod(run / "run.json", 0o600)


def _touch(run: Path) -> None:
    os.utime(run / "run.json", ns=(T0, T0 + 1))


def _same_size_content(run: Path) -> None:
    (run / "run.json").write_bytes(b'{"run_id": "r2"}')
    os.utime(run / "run.json", ns=(T0, T0))


def _relink(run: Path) -> None:
    (run / "self").unlink()
    os.symlink("/", run / "self")
    os.utime(run / "self", ns=(T0 + 8, T0 + 8), follow_symlinks=False)


def _rename(run: Path) -> None:
    os.rename(run / "frames" / "ready.flag", run / "frames" / "ready.flah")
    os.utime(run / "frames", ns=(T0 + 4, T0 + 4))


def _add_empty_dir(run: Path) -> None:
    os.mkdir(run / "frames" / "empty" / "new")
    os.utime(run / "frames" / "empty", ns=(T0 + 3, T0 + 3))


def _root_mtime(run: Path) -> None:
    os.utime(run, ns=(T0, T0 + 11))


@pytest.mark.parametrize(
    "change",
    [_chmod, _touch, _same_size_content, _relink, _rename, _add_empty_dir, _root_mtime],
)
def test_digest_covers_type_mode_mtime_content_link_text_and_names(
    tmp_path: Path, change: Callable[[Path], None]
) -> None:
    run, _ = make_run(tmp_path)
    before = scan_tree(run)
    change(run)
    assert scan_tree(run).digest != before.digest


def test_cheap_scan_reads_no_content_and_says_so(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path)
    full, cheap = scan_tree(run), scan_tree(run, hash_content=False)
    assert not cheap.content_hashed
    assert cheap.digest.startswith("meta-sha256:") and cheap.digest == full.metadata_digest
    assert all(e.sha256 is None for e in cheap.entries)
    assert (cheap.bytes, cheap.files, cheap.symlinks) == (full.bytes, full.files, full.symlinks)
    _same_size_content(run)  # same size and mtime: only the content differs
    assert scan_tree(run, hash_content=False).digest == cheap.digest
    assert scan_tree(run).digest != full.digest


@given(
    path=st.text(min_size=1),
    kind=st.sampled_from(["dir", "file", "symlink"]),
    mode=st.integers(0, 0o7777),
    size=st.integers(0, 2**63),
    mtime=st.integers(-(2**63), 2**63),
    last=st.one_of(st.none(), st.text()),
    content=st.booleans(),
)
def test_canonical_line_is_the_json_of_its_fields(
    path: str, kind: fsops.Kind, mode: int, size: int, mtime: int, last: str | None, content: bool
) -> None:
    """Digests recorded in reports stay comparable: the fast line builder must produce
    exactly the JSON text the digest format is defined by."""
    entry = fsops.Entry(path, kind, mode, size, mtime, sha256=last, link=last)
    shown = entry.link if kind == "symlink" else (entry.sha256 if content else None)
    fields = [path, kind, f"{mode:o}", size, mtime, shown or ""]
    expected = json.dumps(fields, ensure_ascii=True, separators=(",", ":")) + "\n"
    assert entry.canonical(content) == expected


def test_scan_lists_a_fifo_without_opening_it(tmp_path: Path) -> None:
    """Opening a fifo blocks until a writer comes: the scan (content hashes included)
    must only lstat it, or it would hang holding the yard lock."""
    run, _ = make_run(tmp_path)
    os.mkfifo(run / "frames" / "pipe", 0o640)
    scan = scan_tree(run)  # would block forever if it opened the fifo
    pipe = next(e for e in scan.entries if e.path == "frames/pipe")
    assert (pipe.kind, pipe.mode, pipe.size) == ("fifo", 0o640, 0)


def test_scan_does_not_follow_links_to_special_files_outside(tmp_path: Path) -> None:
    run, outside = make_run(tmp_path)
    os.mkfifo(outside / "assets" / "pipe")  # reachable only through capcut_draft
    scan = scan_tree(run)
    assert not any(e.path.startswith("capcut_draft/") for e in scan.entries)


def test_scan_refuses_a_symlink_root(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path)
    os.symlink(run, tmp_path / "alias")
    with pytest.raises(Invalid, match="symlink"):
        scan_tree(tmp_path / "alias")


# --- round trips (hypothesis) --------------------------------------------------------------


def _round_trip(spec: DirSpec, base: Path, archive: Path, method: str) -> None:
    run, outside = make_run(base, spec)
    original, outside_before = scan_tree(run), scan_tree(outside)
    dst = archive / "batch" / "runs" / "r1"
    moved = move_tree(run, dst, original)
    assert moved.method == method
    assert not os.path.lexists(run)
    assert moved.scan.digest == original.digest == scan_tree(dst).digest
    assert dst.joinpath("capcut_draft").is_symlink()
    assert not any(e.path.startswith("capcut_draft/") for e in moved.scan.entries)
    assert {s["path"]: s["resolves_after_move"] for s in moved.symlinks}["capcut_draft"]
    back = move_tree(dst, run, original)
    assert back.method == method
    assert not os.path.lexists(dst)
    assert scan_tree(run).digest == original.digest
    assert scan_tree(outside) == outside_before  # never copied, never deleted through a link
    leftovers = [p for p in (partial_path(dst), partial_path(run)) if os.path.lexists(p)]
    assert not leftovers


@EXAMPLES
@given(spec=trees)
def test_round_trip_on_one_filesystem_is_exact(tmp_path: Path, spec: DirSpec) -> None:
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        _round_trip(spec, base, base / "archive", "rename")
    finally:
        remove(base)


@EXAMPLES
@given(spec=trees)
def test_round_trip_across_filesystems_is_exact(
    tmp_path: Path, other_fs: Path, spec: DirSpec
) -> None:
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    archive = Path(tempfile.mkdtemp(dir=other_fs))
    try:
        _round_trip(spec, base, archive, "copy")
    finally:
        remove(base)
        remove(archive)


def test_links_are_judged_at_the_new_location(tmp_path: Path, archive_root: Path) -> None:
    run, _ = make_run(tmp_path)
    (tmp_path / "runs" / "neighbour").mkdir()  # ../neighbour resolves only in runs/
    assert os.path.exists(run / "sibling")
    result = move_tree(run, archive_root / "b1" / "r1")
    assert result.symlinks == [
        {"path": "capcut_draft", "target": str(tmp_path / "project"), "resolves_after_move": True},
        {"path": "gone", "target": "no-such-entry", "resolves_after_move": False},
        {"path": "self", "target": ".", "resolves_after_move": True},
        {"path": "sibling", "target": "../neighbour", "resolves_after_move": False},
    ]


def test_same_filesystem_looks_at_the_nearest_existing_ancestor(
    tmp_path: Path, other_fs: Path
) -> None:
    assert same_filesystem(tmp_path / "no" / "such" / "dir", tmp_path)
    assert not same_filesystem(other_fs / "not" / "yet", tmp_path / "x")


# --- never overwrite, never move the wrong thing ----------------------------------------------


def _occupy(dst: Path, kind: str) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if kind == "empty_dir":
        dst.mkdir()
    elif kind == "dir":
        dst.mkdir()
        (dst / "other.txt").write_text("someone else's run")
    elif kind == "file":
        dst.write_text("a file")
    else:
        os.symlink("/nonexistent-runyard-test", dst)


@pytest.mark.parametrize("kind", ["empty_dir", "dir", "file", "dangling_symlink"])
def test_never_overwrites_an_existing_destination(
    tmp_path: Path, archive_root: Path, kind: str
) -> None:
    run, _ = make_run(tmp_path)
    dst = archive_root / "b1" / "r1"
    _occupy(dst, kind)
    src_before, dst_before = parent_state(run), parent_state(dst)
    with pytest.raises(Conflict, match="already exists"):
        move_tree(run, dst)
    assert parent_state(run) == src_before
    assert parent_state(dst) == dst_before


@pytest.mark.parametrize("kind", ["empty_dir", "file"])
def test_rename_noreplace_refuses_in_the_kernel(tmp_path: Path, kind: str) -> None:
    """What a plain os.rename would do silently: replace an empty folder or a file."""
    run, _ = make_run(tmp_path)
    dst = tmp_path / "elsewhere" / "r1"
    _occupy(dst, kind if kind == "file" else "empty_dir")
    if kind == "file":
        (tmp_path / "src.txt").write_text("mine")
        with pytest.raises(Conflict):
            rename_noreplace(tmp_path / "src.txt", dst)
        assert dst.read_text() == "a file"
        return
    before = parent_state(run)
    with pytest.raises(Conflict):
        rename_noreplace(run, dst)
    assert parent_state(run) == before
    assert dst.is_dir() and not any(dst.iterdir())


def test_refuses_a_missing_or_symlinked_source_or_a_move_into_itself(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path)
    with pytest.raises(Invalid, match="does not exist"):
        move_tree(tmp_path / "runs" / "nope", tmp_path / "a" / "nope")
    os.symlink(run, tmp_path / "runs" / "alias")
    with pytest.raises(Invalid, match="symlink"):
        move_tree(tmp_path / "runs" / "alias", tmp_path / "a" / "alias")
    with pytest.raises(Invalid, match="into itself"):
        move_tree(run, run / "frames" / "inner")
    assert (tmp_path / "runs" / "alias").is_symlink()
    assert not (tmp_path / "a").exists()


def test_a_leftover_partial_blocks_a_new_move(tmp_path: Path, archive_root: Path) -> None:
    run, _ = make_run(tmp_path)
    dst = archive_root / "b1" / "r1"
    partial_path(dst).mkdir(parents=True)
    before = scan_tree(run)
    with pytest.raises(Conflict, match="interrupted move"):
        move_tree(run, dst)
    assert scan_tree(run) == before and not os.path.lexists(dst)


def test_a_tree_changed_since_its_scan_is_not_moved(tmp_path: Path, archive_root: Path) -> None:
    run, _ = make_run(tmp_path)
    planned = scan_tree(run)
    _same_size_content(run)
    changed = scan_tree(run)
    dst = archive_root / "b1" / "r1"
    with pytest.raises(Refused, match=r"changed since it was scanned.*run\.json"):
        move_tree(run, dst, planned)
    assert scan_tree(run) == changed
    assert not os.path.lexists(dst) and not os.path.lexists(partial_path(dst))


def test_a_cheap_planned_scan_is_checked_on_metadata(tmp_path: Path, archive_root: Path) -> None:
    run, _ = make_run(tmp_path)
    planned = scan_tree(run, hash_content=False)
    _touch(run)
    with pytest.raises(Refused, match="changed since it was scanned"):
        move_tree(run, archive_root / "b1" / "r1", planned)
    os.utime(run / "run.json", ns=(T0, T0))
    assert move_tree(run, archive_root / "b1" / "r1", planned).scan.metadata_digest == (
        planned.metadata_digest
    )


def test_fifos_sockets_and_hard_links_move_exactly(tmp_path: Path, archive_root: Path) -> None:
    """A tool's leftover fifo or socket moves as what it is (made anew across
    filesystems, never opened), and two names of one file stay one file."""
    run, _ = make_run(tmp_path)
    os.mkfifo(run / "frames" / "pipe", 0o640)
    os.mknod(run / "frames" / "sock", 0o600 | stat.S_IFSOCK)
    os.link(run / "run.json", run / "frames" / "run-copy.json")
    before = scan_tree(run)
    dst = archive_root / "b1" / "r1"
    result = move_tree(run, dst, expected=scan_tree(run, hash_content=False))
    assert result.scan.digest == before.digest == scan_tree(dst).digest
    assert stat.S_ISFIFO(os.lstat(dst / "frames" / "pipe").st_mode)
    assert stat.S_ISSOCK(os.lstat(dst / "frames" / "sock").st_mode)
    assert os.stat(dst / "run.json").st_ino == os.stat(dst / "frames" / "run-copy.json").st_ino
    assert os.stat(dst / "run.json").st_nlink == 2
    assert not os.path.lexists(run)


@pytest.mark.parametrize("planned", [None, "cheap", "full"])
def test_a_copy_that_does_not_verify_is_discarded(
    tmp_path: Path, other_fs: Path, monkeypatch: pytest.MonkeyPatch, planned: str | None
) -> None:
    """The copy is compared with the source byte for byte, whatever it was planned from:
    a flipped byte (same size, same mtime) is caught and named, and the source stays."""
    run, _ = make_run(tmp_path)
    before = scan_tree(run)
    real_copy = fsops._copy_tree

    def corrupting_copy(src: Path, src_st: os.stat_result, partial: Path) -> list[fsops.Entry]:
        copied = real_copy(src, src_st, partial)
        _flip_a_byte(partial / "frames" / "big.bin")
        return copied

    monkeypatch.setattr(fsops, "_copy_tree", corrupting_copy)
    dst = other_fs / "archive" / "r1"
    with pytest.raises(Refused, match=r"does not match the source.*frames/big\.bin"):
        expected = {"cheap": scan_tree(run, hash_content=False), "full": before}.get(planned or "")
        move_tree(run, dst, expected)
    assert scan_tree(run) == before
    assert not os.path.lexists(dst) and not os.path.lexists(partial_path(dst))
    assert list(dst.parent.iterdir()) == []


def _flip_a_byte(victim: Path) -> None:
    """Change one byte of ``victim``, keeping its size and times."""
    stat_before = victim.stat()
    with open(victim, "r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(victim, ns=(stat_before.st_atime_ns, stat_before.st_mtime_ns))


def test_a_source_changed_since_its_digest_is_not_copied_across(
    tmp_path: Path, other_fs: Path
) -> None:
    """The kernel copy is checked against the planned digest, so a source rewritten since
    (same size, same mtime) is refused as changed, not blamed on the copy."""
    run, _ = make_run(tmp_path)
    planned = scan_tree(run)
    _flip_a_byte(run / "frames" / "big.bin")
    changed = scan_tree(run)
    dst = other_fs / "archive" / "r1"
    with pytest.raises(Refused, match=r"changed since it was scanned.*frames/big\.bin"):
        move_tree(run, dst, planned)
    assert scan_tree(run) == changed
    assert not os.path.lexists(dst) and list(dst.parent.iterdir()) == []


def test_a_source_written_to_while_it_is_copied_stays(
    tmp_path: Path, other_fs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write to the source during the copy is caught by the comparison; one just after
    it (a late log line) would be lost with the source: the source's metadata is checked
    once more before it is let go."""
    run, _ = make_run(tmp_path)
    real_copy, real_verify = fsops._copy_tree, fsops._verify_copy

    def copy_then_append(src: Path, src_st: os.stat_result, partial: Path) -> list[fsops.Entry]:
        copied = real_copy(src, src_st, partial)
        with open(run / "run.json", "ab") as late:
            late.write(b"\n")
        return copied

    def verify_then_append(src: Path, partial: Path, source: list[fsops.Entry]) -> TreeScan:
        verified = real_verify(src, partial, source)
        with open(run / "frames" / "ready.flag", "ab") as late:
            late.write(b"\n")
        return verified

    dst = other_fs / "archive" / "r1"
    for patched, name, message in (
        (copy_then_append, "_copy_tree", r"does not match the source.*run\.json"),
        (verify_then_append, "_verify_copy", "changed while it was copied"),
    ):
        planned = scan_tree(run)
        with monkeypatch.context() as patch:
            patch.setattr(fsops, name, patched)
            with pytest.raises(Refused, match=message):
                move_tree(run, dst, planned)
        assert not os.path.lexists(dst) and list(dst.parent.iterdir()) == []
    assert (run / "run.json").read_bytes().endswith(b"\n")
    assert (run / "frames" / "ready.flag").read_bytes() == b"\n"


def test_a_recorded_digest_is_checked_like_a_scan(tmp_path: Path, archive_root: Path) -> None:
    """Restore passes the digest from the archive report, not a scan."""
    run, _ = make_run(tmp_path)
    recorded = scan_tree(run).digest
    _same_size_content(run)
    with pytest.raises(Refused, match="changed since it was recorded"):
        move_tree(run, archive_root / "b1" / "r1", recorded)
    assert not os.path.lexists(archive_root / "b1" / "r1")
    now = scan_tree(run)
    moved = move_tree(run, archive_root / "b1" / "r1", now.digest)
    assert moved.scan.digest == now.digest


def test_deleting_the_source_does_not_follow_links(tmp_path: Path, other_fs: Path) -> None:
    run, outside = make_run(tmp_path)
    os.symlink(outside / "assets", run / "frames" / "assets_link")
    outside_before = scan_tree(outside)
    result = move_tree(run, other_fs / "archive" / "r1")
    assert result.method == "copy" and not os.path.lexists(run)
    assert not os.path.lexists(tombstone_path(run))
    assert scan_tree(outside) == outside_before


def test_a_file_that_grows_while_it_is_copied_is_refused(
    tmp_path: Path, other_fs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel copies as many bytes as lstat said; what was written to the file after
    that is found when the source is read to its end, and the move is refused."""
    run, _ = make_run(tmp_path)
    big = run / "frames" / "big.bin"
    real_copy = fsops._kernel_copy

    def grow_then_copy(fd_in: int, fd_out: int, size: int) -> None:
        if os.fstat(fd_in).st_ino == big.stat().st_ino:
            with open(big, "ab") as late:
                late.write(b"more")
        real_copy(fd_in, fd_out, size)

    monkeypatch.setattr(fsops, "_kernel_copy", grow_then_copy)
    dst = other_fs / "archive" / "r1"
    with pytest.raises(Refused, match=r"does not match the source.*frames/big\.bin"):
        move_tree(run, dst)
    assert big.read_bytes().endswith(b"more")
    assert not os.path.lexists(dst) and list(dst.parent.iterdir()) == []


# --- comparing content: _same_content ------------------------------------------------------

CHUNK = fsops.CHUNK
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 7]


@pytest.fixture(params=["libc_memcmp", "python_compare"])
def compare(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of comparing two buffers: libc's memcmp (through ctypes, without the
    GIL) and the fallback where there is no C library to load."""
    if request.param == "python_compare":
        monkeypatch.setattr(fsops, "_MEMCMP", None)
    else:
        assert fsops._MEMCMP is not None, "libc's memcmp did not load"
    return str(request.param)


def _pair(folder: Path, first: bytes, second: bytes) -> tuple[str, str]:
    a, b = folder / "a.bin", folder / "b.bin"
    a.write_bytes(first)
    b.write_bytes(second)
    return str(a), str(b)


@pytest.mark.parametrize("size", SIZES)
def test_same_content_hashes_identical_files_of_any_size(
    tmp_path: Path, compare: str, size: int
) -> None:
    data = os.urandom(size)
    assert fsops._same_content(*_pair(tmp_path, data, data)) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("size", "at"),
    [
        (1, 0),
        (5, 4),
        (CHUNK, 0),
        (CHUNK, CHUNK - 1),
        (2 * CHUNK + 7, CHUNK + 3),
        (2 * CHUNK + 7, 2 * CHUNK + 6),
    ],
)
def test_same_content_finds_one_changed_byte_anywhere(
    tmp_path: Path, compare: str, size: int, at: int
) -> None:
    data = bytearray(os.urandom(size))
    first = bytes(data)
    data[at] ^= 0x01
    assert fsops._same_content(*_pair(tmp_path, first, bytes(data))) is None


@pytest.mark.parametrize("size", SIZES)
def test_same_content_refuses_files_of_different_lengths(
    tmp_path: Path, compare: str, size: int
) -> None:
    data = os.urandom(size + 1)
    for first, second in ((data[:size], data), (data, data[:size])):
        assert fsops._same_content(*_pair(tmp_path, first, second)) is None


def test_same_content_compares_only_what_it_read_this_time(tmp_path: Path, compare: str) -> None:
    """The buffers are reused: after a long file, a short pair that differs only in its
    last byte is still told apart (stale bytes beyond it never count)."""
    big = os.urandom(CHUNK - 3)
    assert fsops._same_content(*_pair(tmp_path, big, big)) is not None
    other = bytes([big[9] ^ 0xFF])  # never the same byte (b"?" was, once in 256 runs)
    assert fsops._same_content(*_pair(tmp_path, big[:10], big[:9] + other)) is None
    assert fsops._same_content(*_pair(tmp_path, big[:10], big[:10])) == (
        hashlib.sha256(big[:10]).hexdigest()
    )


# --- deleting sources: remove_tombstones and the background remover ------------------------


def _tombstones(tmp_path: Path, names: list[str]) -> list[Path]:
    tombs = []
    for name in names:
        run, _ = make_run(tmp_path, name=name)
        tomb = tombstone_path(run)
        os.rename(run, tomb)
        tombs.append(tomb)
    return tombs


def test_remove_tombstones_fsyncs_first_and_deletes_every_one_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Their folder is fsynced once before anything is deleted (the renames that made
    them tombstones are durable first) and once after; a tombstone that cannot be
    deleted (here a symlink, never followed) is raised after the others are gone."""
    first, second = _tombstones(tmp_path, ["r1", "r2"])
    outside = tmp_path / "project"
    outside_before = scan_tree(outside)
    bad = tombstone_path(tmp_path / "runs" / "r3")
    os.symlink(outside, bad)
    calls: list[tuple[str, Path]] = []
    real_fsync, real_remove = fsops.fsync_dir, fsops.remove_tree

    def fsync(path: Path) -> None:
        calls.append(("fsync", path))
        real_fsync(path)

    def remove_tree(path: Path) -> None:
        calls.append(("remove", path))
        real_remove(path)

    monkeypatch.setattr(fsops, "fsync_dir", fsync)
    monkeypatch.setattr(fsops, "remove_tree", remove_tree)
    with pytest.raises(Invalid, match="symlink"):
        fsops.remove_tombstones([first, bad, second])
    runs = tmp_path / "runs"
    assert calls == [
        ("fsync", runs),
        ("remove", first),
        ("remove", bad),
        ("remove", second),
        ("fsync", runs),
    ]
    assert sorted(p.name for p in runs.iterdir()) == [bad.name]
    assert scan_tree(outside) == outside_before


def test_the_background_remover_deletes_every_source_and_raises_a_failure(
    tmp_path: Path, other_fs: Path
) -> None:
    """Moves that hand their tombstones to ``movers.source_remover`` leave no source
    behind once its block ends; a tombstone it could not delete is raised there."""
    runs = [make_run(tmp_path, name=f"r{i}")[0] for i in range(6)]
    digests = [scan_tree(run).digest for run in runs]
    with movers.source_remover(2) as remove:
        assert remove is not None
        for run in runs:
            move_tree(run, other_fs / "archive" / run.name, remove_source=remove)
    assert list((tmp_path / "runs").iterdir()) == []
    assert [scan_tree(other_fs / "archive" / run.name).digest for run in runs] == digests

    bad = tombstone_path(tmp_path / "runs" / "r9")
    os.symlink(tmp_path / "project", bad)
    [good] = _tombstones(tmp_path, ["r8"])
    with pytest.raises(Invalid, match="symlink"), movers.source_remover(2) as remove:
        assert remove is not None
        remove(bad)
        remove(good)
    assert not os.path.lexists(good) and os.path.islink(bad)


# --- finish_interrupted_move -----------------------------------------------------------------


def test_finish_not_moved_removes_the_partial_copy(tmp_path: Path, other_fs: Path) -> None:
    run, _ = make_run(tmp_path)
    before = scan_tree(run)
    dst = other_fs / "archive" / "r1"
    dst.parent.mkdir()
    build(SAMPLE, partial_path(dst), tmp_path / "project")
    assert finish_interrupted_move(run, dst, before.digest) == "not_moved"
    assert scan_tree(run) == before
    assert list(dst.parent.iterdir()) == []


def test_finish_moved_checks_the_digest_and_removes_the_tombstone(tmp_path: Path) -> None:
    base, _ = make_run(tmp_path)
    digest = scan_tree(base).digest
    src, dst = tmp_path / "runs" / "r2", tmp_path / "archive" / "r2"
    dst.parent.mkdir()
    os.rename(base, dst)
    build(SAMPLE, tombstone_path(src), tmp_path / "project")
    assert finish_interrupted_move(src, dst, digest) == "moved"
    assert scan_tree(dst).digest == digest
    assert not os.path.lexists(tombstone_path(src))
    assert finish_interrupted_move(src, dst, None) == "moved"


def test_finish_moved_refuses_a_destination_that_does_not_verify(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path)
    digest = scan_tree(run).digest
    dst = tmp_path / "archive" / "r1"
    dst.parent.mkdir()
    os.rename(run, dst)
    _same_size_content(dst)
    build(SAMPLE, tombstone_path(run), tmp_path / "project")
    before = parent_state(dst)
    with pytest.raises(Refused, match="does not match the recorded digest"):
        finish_interrupted_move(run, dst, digest)
    assert parent_state(dst) == before
    assert os.path.lexists(tombstone_path(run))


def test_finish_both_identical_removes_the_source(tmp_path: Path, other_fs: Path) -> None:
    run, outside = make_run(tmp_path)
    digest = scan_tree(run).digest
    dst = other_fs / "archive" / "r1"
    dst.parent.mkdir()
    build(SAMPLE, dst, outside)
    assert finish_interrupted_move(run, dst, digest) == "settled_both"
    assert not os.path.lexists(run) and not os.path.lexists(tombstone_path(run))
    assert scan_tree(dst).digest == digest
    assert scan_tree(outside).files == 1


def test_finish_both_different_keeps_both(tmp_path: Path, other_fs: Path) -> None:
    run, outside = make_run(tmp_path)
    digest = scan_tree(run).digest
    dst = other_fs / "archive" / "r1"
    dst.parent.mkdir()
    build(SAMPLE, dst, outside)
    _same_size_content(run)  # the source changed after it was copied
    src_before, dst_before = parent_state(run), parent_state(dst)
    with pytest.raises(Refused, match=r"differ.*kept both"):
        finish_interrupted_move(run, dst, digest)
    assert (parent_state(run), parent_state(dst)) == (src_before, dst_before)


def test_finish_both_identical_but_not_as_recorded_keeps_both(tmp_path: Path) -> None:
    run, outside = make_run(tmp_path)
    dst = tmp_path / "archive" / "r1"
    dst.parent.mkdir()
    build(SAMPLE, dst, outside)
    src_before, dst_before = parent_state(run), parent_state(dst)
    with pytest.raises(Refused, match="recorded digest"):
        finish_interrupted_move(run, dst, "sha256:" + "0" * 64)
    assert (parent_state(run), parent_state(dst)) == (src_before, dst_before)


def test_finish_neither_is_a_missing_run(tmp_path: Path) -> None:
    src, dst = tmp_path / "runs" / "r1", tmp_path / "archive" / "r1"
    with pytest.raises(Refused, match="run missing"):
        finish_interrupted_move(src, dst, None)


def test_finish_only_a_partial_is_an_alarm_that_deletes_nothing(
    tmp_path: Path, other_fs: Path
) -> None:
    src, dst = tmp_path / "runs" / "r1", other_fs / "archive" / "r1"
    dst.parent.mkdir(parents=True)
    make_outside(tmp_path / "project")
    build(SAMPLE, partial_path(dst), tmp_path / "project")
    before = parent_state(dst)
    with pytest.raises(Refused, match=r"run missing.*\.r1\.partial"):
        finish_interrupted_move(src, dst, None)
    assert parent_state(dst) == before


# --- real crashes ----------------------------------------------------------------------------

MOVER = "import sys, pathlib; from runyard.lifecycle.fsops import move_tree; " + (
    "move_tree(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]))"
)


def _mover(src: Path, dst: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_TEST_CRASH")}
    return subprocess.run(
        [sys.executable, "-c", MOVER, str(src), str(dst)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_sigkill_at_every_step_boundary_then_finish(tmp_path: Path, archive_root: Path) -> None:
    run, outside = make_run(tmp_path)
    original, outside_before = scan_tree(run), scan_tree(outside)
    dst = archive_root / "b1" / "r1"
    log = tmp_path / f"crash-{uuid.uuid4().hex}.log"
    assert _mover(run, dst, RUNYARD_TEST_CRASH_LOG=str(log)).returncode == 0
    labels = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
    move_tree(dst, run)  # back, for the next round
    assert scan_tree(run).digest == original.digest
    cross = archive_root.is_relative_to(SHM)
    if cross:
        copy_steps = ["fsops.copy.started"] + ["fsops.copy.file"] * original.files
        after = ["copy.done", "verify.done", "partial.renamed", "src.tombstoned", "src.deleted"]
        assert labels == copy_steps + [f"fsops.{step}" for step in after]
    else:
        assert labels == ["fsops.rename.before", "fsops.rename.after"]
    outcomes: set[str] = set()
    for k in range(1, len(labels) + 1):
        done = _mover(run, dst, RUNYARD_TEST_CRASH_AT=str(k))
        assert done.returncode == -signal.SIGKILL, (k, labels[k - 1], done.stderr)
        outcome = finish_interrupted_move(run, dst, original.digest if k % 2 else None)
        outcomes.add(outcome)
        present = [p for p in (run, dst) if os.path.lexists(p)]
        assert len(present) == 1, (k, labels[k - 1], present)
        assert scan_tree(present[0]).digest == original.digest, (k, labels[k - 1])
        for leftover in (partial_path(dst), tombstone_path(run)):
            assert not os.path.lexists(leftover), (k, labels[k - 1], leftover)
        if present[0] == dst:
            move_tree(dst, run)
    assert outcomes == ({"not_moved", "moved", "settled_both"} if cross else {"not_moved", "moved"})
    assert scan_tree(outside) == outside_before


def test_a_digest_recorded_before_hard_links_counted_still_verifies(tmp_path: Path) -> None:
    """Batches archived before runyard recorded hard links carry digests without them:
    restore and recover must still accept the tree they describe."""
    run, _ = make_run(tmp_path)
    os.link(run / "run.json", run / "frames" / "run-again.json")
    scan = scan_tree(run)
    plain = [dataclasses.replace(e, hardlink=None) for e in scan.entries]
    older = fsops._tree_digest(plain, content=True)
    assert older != scan.digest and scan.agrees_with(older)
    move_tree(run, tmp_path / "archive" / "r1", expected=older)
    assert (tmp_path / "archive" / "r1" / "frames" / "run-again.json").exists()


def test_xattrs_a_move_keeps_are_the_owners_unless_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not root, only user attributes and ACLs are copied (a security or trusted one
    could not be set again); root keeps every namespace."""
    if os.geteuid() != 0:
        pytest.skip("NOT TESTED: setting a trusted.* attribute needs root")
    path = tmp_path / "f"
    path.write_bytes(b"x")
    os.setxattr(path, "user.origin", b"cam")
    try:
        os.setxattr(path, "trusted.runyard", b"t")
    except OSError as exc:
        pytest.skip(f"NOT TESTED: {tmp_path} keeps no trusted.* attributes ({exc.strerror})")
    assert set(fsops.read_xattrs(str(path))) >= {"user.origin", "trusted.runyard"}
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert fsops.read_xattrs(str(path)) == {"user.origin": b"cam"}
