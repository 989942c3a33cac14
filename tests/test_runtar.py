"""runtar: a run folder as one PAX tar stream and back, exactly and safely.

Round trips compare ``fsops.scan_tree`` digests (type, mode, size, content, link text,
nanosecond mtime and hard links of every entry) or, for hostile trees, ``exact_state``
(which adds extended attributes and link counts). Hostile archives are built by hand
with ``tarfile``; each must be refused with nothing left beside the target and nothing
made outside it.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import random
import stat
import tarfile
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from runyard.errors import Conflict, Invalid, NotFound, Refused
from runyard.lifecycle import runtar
from runyard.lifecycle.fsops import scan_tree
from runyard.lifecycle.runtar import (
    TarExtracted,
    TarMismatch,
    TarWritten,
    UnsafeMember,
    extract_run_tar,
    leftover_unpackings,
    write_run_tar,
)
from tests.trees import (
    DirSpec,
    SpecialSpec,
    build,
    build_into,
    exact_state,
    hostile_trees,
    make_outside,
    remove,
    trees,
)

T0 = 1_700_000_000_123_456_789
EXAMPLES = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
ODD = os.fsdecode(b"caf\xe9-\xff\xfe")  # Latin-1 bytes: not UTF-8


def tar_of(folder: Path) -> tuple[bytes, TarWritten]:
    out = io.BytesIO()
    written = write_run_tar(folder, out.write)
    return out.getvalue(), written


def extract(data: bytes, target: Path, **kwargs: object) -> TarExtracted:
    return extract_run_tar(io.BytesIO(data), target, **kwargs)  # type: ignore[arg-type]


def members_of(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def keeps_user_xattrs(folder: Path) -> bool:
    try:
        os.setxattr(folder, "user.runyard-test", b"1")
        os.removexattr(folder, "user.runyard-test")
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise
    return True


def nothing_left(target: Path) -> None:
    """The target was not made and no unpacking folder remains beside it."""
    assert not os.path.lexists(target)
    assert leftover_unpackings(target) == []
    assert not [p for p in target.parent.iterdir() if p.name.startswith(runtar.TEMP_PREFIX)]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    make_outside(folder)
    return folder


# --- round trips ----------------------------------------------------------------------------


@EXAMPLES
@given(spec=trees)
def test_round_trip_is_exact(tmp_path: Path, outside: Path, spec: DirSpec) -> None:
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        build(spec, base / "run", outside)
        before = scan_tree(base / "run")
        outside_before = exact_state(outside)
        data, written = tar_of(base / "run")
        assert (written.size, written.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        assert written.scan.digest == before.digest
        assert written.members == len(before.entries)
        assert written.content_bytes == before.bytes

        restored = extract(data, base / "back", expected_sha256=written.sha256)
        assert scan_tree(base / "back").digest == before.digest
        assert restored.scan.digest == before.digest
        assert (restored.size, restored.sha256) == (written.size, written.sha256)
        assert (restored.members, restored.content_bytes) == (written.members, before.bytes)
        assert exact_state(outside) == outside_before  # links were never followed
        nothing_left(base / "elsewhere")
    finally:
        remove(base)


@EXAMPLES
@given(spec=hostile_trees())
def test_hostile_trees_come_back_exactly_or_are_refused_before_a_byte(
    tmp_path: Path, outside: Path, spec: DirSpec
) -> None:
    if not keeps_user_xattrs(tmp_path):
        pytest.skip(f"{tmp_path} keeps no user extended attributes")
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        (base / "run").mkdir()
        build_into(spec, base / "run", outside)
        before = exact_state(base / "run")
        if any(stat.S_ISFIFO(s[0]) or stat.S_ISSOCK(s[0]) for s in before.values()):
            sent: list[bytes] = []
            with pytest.raises(Invalid, match="a run archived to a store holds only"):
                write_run_tar(base / "run", sent.append)
            assert sent == []
            return
        data, written = tar_of(base / "run")
        extract(data, base / "back", expected_sha256=written.sha256, expected_size=len(data))
        assert exact_state(base / "back") == before
    finally:
        remove(base)


def test_the_same_tree_gives_the_same_bytes(tmp_path: Path, outside: Path) -> None:
    spec = DirSpec({"b": DirSpec(), "a": DirSpec()}, 0o755, T0)
    build(spec, tmp_path / "run", outside)
    (tmp_path / "run" / "a" / "f").write_bytes(b"x" * 5000)
    first, _ = tar_of(tmp_path / "run")
    second, _ = tar_of(tmp_path / "run")
    assert first == second
    names = [m.name for m in members_of(first)]
    assert names == [".", "a", "a/f", "b"]  # the folder's own entry, then sorted


def test_names_and_link_texts_that_are_not_utf8_keep_their_bytes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / ODD).mkdir(parents=True)
    (run / ODD / ODD).write_bytes(b"odd")
    os.symlink(ODD, run / "link")
    os.symlink(os.fsdecode(b"/abs/\x80\x81"), run / ODD / "abs")
    data, _ = tar_of(run)
    assert b"hdrcharset=BINARY" in data
    assert os.fsencode(ODD) in data
    extract(data, tmp_path / "back")
    back = os.fsencode(tmp_path / "back")
    assert sorted(os.listdir(back)) == sorted([b"link", os.fsencode(ODD)])
    assert os.readlink(back + b"/link") == os.fsencode(ODD)
    assert os.readlink(back + b"/" + os.fsencode(ODD) + b"/abs") == b"/abs/\x80\x81"
    assert scan_tree(tmp_path / "back").digest == scan_tree(run).digest


def test_symlinks_are_kept_as_written_and_never_followed(tmp_path: Path, outside: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    texts = {
        "capcut_draft": str(outside),  # an absolute link to a project outside the run
        "dangling_abs": "/nonexistent-runyard/x",
        "dangling_rel": "missing",
        "escaping": "../../outside/assets",
        "loop": "loop",
        "to_file_outside": str(outside / "assets" / "clip.bin"),
    }
    for name, text in texts.items():
        os.symlink(text, run / name)
    data, written = tar_of(run)
    assert written.content_bytes == 0  # nothing behind a link was read
    assert b"external project data" not in data
    extract(data, tmp_path / "back")
    for name, text in texts.items():
        assert os.readlink(tmp_path / "back" / name) == text
    assert scan_tree(tmp_path / "back").digest == scan_tree(run).digest


def test_modes_empty_folders_and_nanosecond_mtimes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "empty").mkdir(parents=True)
    (run / "ro").mkdir()
    files = {"ro/f444": 0o444, "f600": 0o600, "f755": 0o755, "f4755": 0o4755}
    for rel, mode in files.items():
        (run / rel).write_bytes(rel.encode())
        os.chmod(run / rel, mode)
    os.symlink("f600", run / "link")
    times = {"empty": T0 + 1, "ro/f444": T0 + 2, "f600": -1_500_000_001, "link": T0 + 4}
    times |= {"f755": 0, "f4755": T0 + 6, "ro": T0 + 7, ".": T0 + 8}
    for rel, ns in times.items():
        os.utime(run / rel, ns=(ns, ns), follow_symlinks=False)
    os.chmod(run / "ro", 0o555)
    os.chmod(run / "empty", 0o700)
    extract(tar_of(run)[0], tmp_path / "back")
    for rel, ns in times.items():
        assert os.lstat(tmp_path / "back" / rel).st_mtime_ns == ns, rel
    for rel, mode in {**files, "ro": 0o555, "empty": 0o700}.items():
        assert stat.S_IMODE(os.lstat(tmp_path / "back" / rel).st_mode) == mode, rel
    assert os.listdir(tmp_path / "back" / "empty") == []
    assert scan_tree(tmp_path / "back").digest == scan_tree(run).digest
    os.chmod(run / "ro", 0o755)
    os.chmod(tmp_path / "back" / "ro", 0o755)


def test_every_file_and_folder_is_fsynced_before_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = [
        (_info("d", tarfile.DIRTYPE), None),
        (_info("d/readable", mode=0o444), b"r"),
        (_info("d/write-only", mode=0o200), b"w"),  # cannot be opened again: synced at once
        (_info("d/none", mode=0o000), b"n"),
        (_info("d/second", tarfile.LNKTYPE, "d/readable"), None),
    ]
    synced: set[int] = set()
    real_fsync, real_rename = os.fsync, runtar.fsops.rename_noreplace

    def recording(fd: int) -> None:
        synced.add(os.fstat(fd).st_ino)
        real_fsync(fd)

    def checked_rename(src: Path, dst: Path) -> None:
        inodes = {
            os.lstat(os.path.join(d, n)).st_ino for d, ns, fs in os.walk(src) for n in ns + fs
        }
        assert inodes | {os.lstat(src).st_ino} <= synced
        real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", recording)
    monkeypatch.setattr(runtar.fsops, "rename_noreplace", checked_rename)
    extract(hand_tar(members), tmp_path / "back")
    back = tmp_path / "back" / "d"
    assert stat.S_IMODE(os.lstat(back / "none").st_mode) == 0o000
    assert stat.S_IMODE(os.lstat(back / "write-only").st_mode) == 0o200


def test_mtime_records_are_exact() -> None:
    for ns in (0, 1, T0, -1, -1_500_000_000, 10**18 + 7):
        text = runtar._mtime_text(ns)
        info = tarfile.TarInfo("x")
        info.pax_headers = {"mtime": text}
        assert runtar._member_mtime_ns(info) == ns, text
    assert runtar._mtime_text(T0) == "1700000000.123456789"


def test_hard_links_within_the_run_stay_one_inode(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "sub").mkdir(parents=True)
    (run / "a").write_bytes(b"shared by three")
    os.link(run / "a", run / "sub" / "b")
    os.link(run / "a", run / "sub" / "c")
    (run / "x").write_bytes(b"shared by two")
    os.link(run / "x", run / "y")
    (tmp_path / "kept-outside").write_bytes(b"one name in the run")
    os.link(tmp_path / "kept-outside", run / "z")  # its other name is not in the run
    data, written = tar_of(run)
    types = {m.name: m.type for m in members_of(data)}
    assert [n for n, t in types.items() if t == tarfile.LNKTYPE] == ["sub/b", "sub/c", "y"]
    assert written.content_bytes == len(b"shared by three") + len(b"shared by two") + 19
    back = tmp_path / "back"
    extract(data, back)
    three = {os.stat(back / p).st_ino for p in ("a", "sub/b", "sub/c")}
    assert len(three) == 1 and os.stat(back / "a").st_nlink == 3
    assert os.stat(back / "x").st_ino == os.stat(back / "y").st_ino
    assert os.stat(back / "z").st_nlink == 1
    assert scan_tree(back).digest == scan_tree(run).digest


def test_extended_attributes_are_kept(tmp_path: Path) -> None:
    if not keeps_user_xattrs(tmp_path):
        pytest.skip(f"{tmp_path} keeps no user extended attributes")
    run = tmp_path / "run"
    (run / "d").mkdir(parents=True)
    (run / "f").write_bytes(b"content")
    os.setxattr(run / "f", "user.binary", b"\xff\x00\n=\x80")
    os.setxattr(run / "f", "user.text", "é".encode())
    os.setxattr(run / "d", "user.folder", b"")
    os.chmod(run / "f", 0o444)  # attributes must be set before the mode takes writing away
    data, _ = tar_of(run)
    assert b"SCHILY.xattr.user.binary=" in data
    extract(data, tmp_path / "back")
    assert os.getxattr(tmp_path / "back" / "f", "user.binary") == b"\xff\x00\n=\x80"
    assert os.getxattr(tmp_path / "back" / "f", "user.text") == "é".encode()
    assert os.getxattr(tmp_path / "back" / "d", "user.folder") == b""
    assert exact_state(tmp_path / "back") == exact_state(run)


def test_a_filesystem_that_cannot_keep_an_attribute_fails_the_restore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = hand_tar([(_info("f", pax={"SCHILY.xattr.user.k": "v"}), b"x")])

    def unsupported(*_: object) -> None:
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", unsupported)
    with pytest.raises(Refused, match=r"user\.k.*nothing was restored") as caught:
        extract(data, tmp_path / "back")
    assert caught.value.hint and "extended attributes" in caught.value.hint
    nothing_left(tmp_path / "back")
    extract(hand_tar([(_info("f"), b"x")]), tmp_path / "plain")  # none held: none needed


# --- what is refused while writing ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_fifos_and_sockets_are_refused_before_a_byte_is_sent(tmp_path: Path, kind: str) -> None:
    run = tmp_path / "run"
    (run / "sub").mkdir(parents=True)
    (run / "a").write_bytes(b"a")
    # A socket file as a tool leaves one (binding one would limit the path's length).
    os.mknod(run / "sub" / "pipe", 0o600 | (stat.S_IFIFO if kind == "fifo" else stat.S_IFSOCK))
    sent: list[bytes] = []
    with pytest.raises(Invalid, match=rf"sub/pipe is a {kind}; .*nothing was archived"):
        write_run_tar(run, sent.append)
    assert sent == []


def test_a_symlink_or_missing_folder_is_not_a_run(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    with pytest.raises(Invalid, match="symlink"):
        write_run_tar(tmp_path / "link", lambda _: None)
    with pytest.raises(NotFound):
        write_run_tar(tmp_path / "missing", lambda _: None)


def test_a_folder_that_changes_while_it_is_read_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "a").write_bytes(b"a" * 10)

    def meddling(data: bytes) -> None:
        (run / "late").write_bytes(b"new")

    with pytest.raises(Refused, match="changed while it was archived"):
        write_run_tar(run, meddling)


def test_writing_keeps_memory_bounded_and_streams(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    size = 200 << 20
    with open(run / "big.bin", "wb") as f:
        f.truncate(size)  # sparse: quick to make, read as 200 MiB of zeros
    (run / "small").write_bytes(b"s")
    pieces = 0
    largest = 0
    tar_hash = hashlib.sha256()

    def discard(data: bytes) -> None:
        nonlocal pieces, largest
        pieces += 1
        largest = max(largest, len(data))
        tar_hash.update(data)

    tracemalloc.start()
    try:
        written = write_run_tar(run, discard)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak / 2**20:.1f} MiB"
    assert written.size > size and written.sha256 == tar_hash.hexdigest()
    assert pieces > 100 and largest <= 2 << 20  # the sink got it in pieces, as it was read


@pytest.mark.slow
def test_unpacking_keeps_memory_bounded(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "big.bin", "wb") as f:
        f.truncate(200 << 20)
    with open(tmp_path / "run.tar", "wb") as out:
        written = write_run_tar(run, out.write)
    tracemalloc.start()
    try:
        with open(tmp_path / "run.tar", "rb") as source:
            extract_run_tar(source, tmp_path / "back", written.sha256, written.size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak / 2**20:.1f} MiB"
    assert os.path.getsize(tmp_path / "back" / "big.bin") == 200 << 20


# --- hostile archives -----------------------------------------------------------------------


def _info(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    link: str = "",
    mode: int = 0o644,
    pax: dict[str, str] | None = None,
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = kind, link, mode, 1_600_000_000
    info.pax_headers = pax or {}
    return info


def hand_tar(members: list[tuple[tarfile.TarInfo, bytes | None]], root: bool = True) -> bytes:
    """A PAX tar made by ``tarfile`` itself from the members as given (nothing checked)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if root:
            tar.addfile(_info(".", tarfile.DIRTYPE, mode=0o755))
        for info, content in members:
            info.size = len(content or b"")
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return out.getvalue()


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Path]:
    """A folder outside the target that hostile members aim at; it must not change."""
    folder = tmp_path / "canary"
    (folder / "inner").mkdir(parents=True)
    (folder / "passwd").write_bytes(b"root:x:0:0")
    before = exact_state(folder)
    siblings = sorted(os.listdir(tmp_path))
    yield folder
    assert exact_state(folder) == before
    assert sorted(os.listdir(tmp_path)) == siblings


def _hostile_cases(canary: Path) -> dict[str, list[tuple[tarfile.TarInfo, bytes | None]]]:
    dir_ = tarfile.DIRTYPE
    return {
        "dotdot": [(_info("../x"), b"evil")],
        "absolute": [(_info(str(canary / "x")), b"evil")],
        "absolute_etc": [(_info("/etc/x"), b"evil")],
        "climbing": [(_info("a", dir_), None), (_info("a/../../x"), b"evil")],
        "empty_component": [(_info("a", dir_), None), (_info("a//x"), b"evil")],
        "dot_component": [(_info("a", dir_), None), (_info("a/./x"), b"evil")],
        "nul_in_name": [(_info("x", pax={"path": "a\x00b"}), b"evil")],
        "through_symlink": [
            (_info("a", tarfile.SYMTYPE, str(canary / "inner")), None),
            (_info("a/evil"), b"evil"),
        ],
        "through_symlink_dir": [
            (_info("a", tarfile.SYMTYPE, str(canary / "inner")), None),
            (_info("a/evil", dir_), None),
        ],
        "through_relative_symlink": [
            (_info("a", tarfile.SYMTYPE, "../../canary/inner"), None),
            (_info("a/evil"), b"evil"),
        ],
        "parent_not_made_first": [(_info("a/x"), b"evil"), (_info("a", dir_), None)],
        "parent_is_a_file": [(_info("a"), b"file"), (_info("a/x"), b"evil")],
        "hardlink_to_etc_passwd": [(_info("x", tarfile.LNKTYPE, "/etc/passwd"), None)],
        "hardlink_outside": [(_info("x", tarfile.LNKTYPE, str(canary / "passwd")), None)],
        "hardlink_climbing": [(_info("x", tarfile.LNKTYPE, "../canary/passwd"), None)],
        "hardlink_to_later": [(_info("x", tarfile.LNKTYPE, "y"), None), (_info("y"), b"y")],
        "hardlink_to_nothing": [(_info("x", tarfile.LNKTYPE, "nothing"), None)],
        "hardlink_to_folder": [(_info("d", dir_), None), (_info("x", tarfile.LNKTYPE, "d"), None)],
        "hardlink_to_symlink": [
            (_info("s", tarfile.SYMTYPE, str(canary / "passwd")), None),
            (_info("x", tarfile.LNKTYPE, "s"), None),
        ],
        "chardev": [(_info("null", tarfile.CHRTYPE), None)],
        "blockdev": [(_info("sda", tarfile.BLKTYPE), None)],
        "fifo": [(_info("pipe", tarfile.FIFOTYPE), None)],
        "contiguous": [(_info("c", tarfile.CONTTYPE), b"data")],
        "duplicate_file": [(_info("x"), b"one"), (_info("x"), b"two")],
        "duplicate_folder": [(_info("d", dir_), None), (_info("d", dir_), None)],
        "file_then_symlink": [(_info("x"), b"one"), (_info("x", tarfile.SYMTYPE, "/"), None)],
        "duplicate_root": [(_info(".", dir_), None)],
        "root_as_file": [(_info("."), b"x")],
        "empty_link_text": [(_info("s", tarfile.SYMTYPE, ""), None)],
    }


HOSTILE = sorted(_hostile_cases(Path("/c")))


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_members_are_refused_and_leave_nothing(
    tmp_path: Path, canary: Path, case: str
) -> None:
    data = hand_tar(_hostile_cases(canary)[case])
    with pytest.raises(UnsafeMember, match=r"the tar member .* is refused") as caught:
        extract(data, tmp_path / "back")
    assert caught.value.code == "unsafe_tar_member"
    nothing_left(tmp_path / "back")
    assert not os.path.lexists("/etc/x")


def test_a_symlink_member_with_attributes_is_refused(tmp_path: Path, canary: Path) -> None:
    link = _info("s", tarfile.SYMTYPE, "t", pax={"SCHILY.xattr.user.k": "v"})
    with pytest.raises(Refused, match="extended attribute"):
        extract(hand_tar([(link, None)]), tmp_path / "back")
    nothing_left(tmp_path / "back")


def test_a_tar_made_elsewhere_without_a_root_member_unpacks(tmp_path: Path) -> None:
    data = hand_tar([(_info("d", tarfile.DIRTYPE), None), (_info("d/f"), b"x")], root=False)
    extract(data, tmp_path / "back")
    assert (tmp_path / "back" / "d" / "f").read_bytes() == b"x"


@pytest.fixture
def sample(tmp_path: Path, outside: Path) -> tuple[bytes, TarWritten]:
    run = tmp_path / "run"
    (run / "sub").mkdir(parents=True)
    (run / "a").write_bytes(b"a" * 3000)
    (run / "sub" / "b").write_bytes(os.urandom(70_000))
    os.symlink(outside, run / "capcut_draft")
    return tar_of(run)


def _boundaries(data: bytes) -> list[int]:
    """Where each member's header starts (after the first), and where the end marker does."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        ends = [m.offset_data + -(-m.size // 512) * 512 for m in members]
    return ends


def test_a_stream_cut_short_anywhere_is_refused(
    tmp_path: Path, sample: tuple[bytes, TarWritten]
) -> None:
    data, written = sample
    cuts = {0, 100, 512, 1500, 4000, 50_000, len(data) - 1024 - 1, len(data) - 1024 + 300}
    cuts |= set(_boundaries(data))  # a cut between members looks like a whole tar to tarfile
    for cut in sorted(cuts):
        with pytest.raises(TarMismatch):
            extract(data[:cut], tmp_path / "back")
        nothing_left(tmp_path / "back")
        with pytest.raises(TarMismatch):
            extract(data[:cut], tmp_path / "back", expected_sha256=written.sha256)
        nothing_left(tmp_path / "back")
    assert len(data) % tarfile.RECORDSIZE == 0
    extract(data[: _boundaries(data)[-1] + 1024], tmp_path / "ok")  # the padding is optional


@pytest.mark.parametrize("garbage", [b"\x01" * 512, b"garbage after the end", b"\0" * 511 + b"x"])
def test_data_after_the_end_is_refused(
    tmp_path: Path, sample: tuple[bytes, TarWritten], garbage: bytes
) -> None:
    data, _ = sample
    with pytest.raises(TarMismatch, match="data after the tar's end"):
        extract(data + garbage, tmp_path / "back")
    nothing_left(tmp_path / "back")
    end = _boundaries(data)[-1]
    with pytest.raises(TarMismatch):  # a garbled header between members: tarfile just stops
        extract(data[:end] + garbage + data[end:], tmp_path / "back")
    nothing_left(tmp_path / "back")


@pytest.mark.parametrize("data", [b"", b"not a tar at all" * 100, b"\0" * 10240])
def test_a_stream_that_is_not_a_tar_is_refused(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(TarMismatch) as caught:
        extract(data, tmp_path / "back")
    assert caught.value.code == "tar_mismatch"
    nothing_left(tmp_path / "back")


def test_a_wrong_checksum_size_or_tree_is_refused(
    tmp_path: Path, sample: tuple[bytes, TarWritten]
) -> None:
    data, written = sample
    wrong = {
        "expected_sha256": hashlib.sha256(b"other").hexdigest(),
        "expected_size": len(data) + 1,
        "expected_digest": "sha256:" + "0" * 64,
    }
    for key, value in wrong.items():
        with pytest.raises(TarMismatch, match=r"not the (expected|recorded)"):
            extract(data, tmp_path / "back", **{key: value})
        nothing_left(tmp_path / "back")
    with pytest.raises(TarMismatch, match="longer than the expected"):
        extract(data, tmp_path / "back", expected_size=len(data) - 512)
    nothing_left(tmp_path / "back")
    flipped = bytearray(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        flipped[tar.getmember("a").offset_data + 100] ^= 1  # a bit of a's content
    with pytest.raises(TarMismatch, match="SHA-256"):
        extract(bytes(flipped), tmp_path / "back", expected_sha256=written.sha256)
    nothing_left(tmp_path / "back")
    done = extract(
        data,
        tmp_path / "back",
        expected_sha256=written.sha256.upper(),
        expected_size=written.size,
        expected_digest=written.scan.digest,
    )
    assert done.scan.digest == written.scan.digest


def test_an_existing_target_is_never_overwritten(
    tmp_path: Path, sample: tuple[bytes, TarWritten]
) -> None:
    data, _ = sample
    (tmp_path / "empty").mkdir()
    os.symlink("nowhere", tmp_path / "dangling")
    for name in ("empty", "dangling", "run"):
        before = exact_state(tmp_path / name) if name != "dangling" else None
        with pytest.raises(Conflict):
            extract(data, tmp_path / name)
        if before is not None:
            assert exact_state(tmp_path / name) == before
    with pytest.raises(NotFound):
        extract(data, tmp_path / "missing" / "back")


def test_a_target_made_meanwhile_wins_the_rename(
    tmp_path: Path, sample: tuple[bytes, TarWritten], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _ = sample
    real_check = runtar._check_tree

    def someone_else_restores(*args: object) -> None:
        real_check(*args)  # type: ignore[arg-type]
        (tmp_path / "back").mkdir()

    monkeypatch.setattr(runtar, "_check_tree", someone_else_restores)
    with pytest.raises(Conflict):
        extract(data, tmp_path / "back")
    assert os.listdir(tmp_path / "back") == []
    assert leftover_unpackings(tmp_path / "back") == []


class _Failing(io.RawIOBase):
    """A download that breaks after ``after`` bytes."""

    def __init__(self, data: bytes, after: int, error: BaseException) -> None:
        self.data, self.after, self.error, self.pos = data, after, error, 0

    def read(self, size: int = -1) -> bytes:
        if self.pos >= self.after:
            raise self.error
        chunk = self.data[self.pos : min(self.pos + size, self.after)]
        self.pos += len(chunk)
        return chunk


@pytest.mark.parametrize("error", [ConnectionResetError(104, "reset"), KeyboardInterrupt()])
def test_a_download_that_breaks_leaves_nothing(
    tmp_path: Path, sample: tuple[bytes, TarWritten], error: BaseException
) -> None:
    data, _ = sample
    source = _Failing(data, 40_000, error)
    with pytest.raises((Refused, KeyboardInterrupt)):
        extract_run_tar(source, tmp_path / "back")  # type: ignore[arg-type]
    nothing_left(tmp_path / "back")


class _Dribble:
    """A stream that answers each read with a few hundred bytes at most, as a socket
    may: the unpacker asks again until it has what it needs."""

    def __init__(self, data: bytes, seed: int) -> None:
        self.data, self.pos = data, 0
        self.rng = random.Random(seed)

    def read(self, size: int = -1) -> bytes:
        size = len(self.data) if size < 0 else size
        chunk = self.data[self.pos : self.pos + min(size, self.rng.randint(1, 700))]
        self.pos += len(chunk)
        return chunk


@pytest.mark.parametrize("seed", range(3))
def test_a_stream_that_answers_in_dribbles_unpacks_exactly(
    tmp_path: Path, sample: tuple[bytes, TarWritten], seed: int
) -> None:
    data, written = sample
    done = extract_run_tar(
        _Dribble(data, seed),  # type: ignore[arg-type]
        tmp_path / "back",
        expected_sha256=written.sha256,
        expected_size=written.size,
        expected_digest=written.scan.digest,
    )
    assert (done.size, done.sha256) == (written.size, written.sha256)
    assert scan_tree(tmp_path / "back").digest == written.scan.digest


def test_a_header_record_too_big_to_be_runyards_is_refused(tmp_path: Path) -> None:
    """A PAX record of megabytes (names and attributes are never that long) is refused
    before it is read into memory."""
    huge = _info("x", pax={"comment": "a" * (2 << 20)})
    with pytest.raises(TarMismatch, match="header record"):
        extract(hand_tar([(huge, b"x")]), tmp_path / "back")
    nothing_left(tmp_path / "back")


def test_leftover_unpackings_are_found_by_their_prefix(tmp_path: Path) -> None:
    target = tmp_path / "r1"
    crashed = tmp_path / f"{runtar.temp_prefix(target)}0123abcd"
    crashed.mkdir()
    (tmp_path / f"{runtar.temp_prefix(tmp_path / 'r10')}ffff0000").mkdir()
    (tmp_path / f"{runtar.temp_prefix(tmp_path / 'r1-x')}ffff0000").mkdir()  # "r1-" too
    assert leftover_unpackings(target) == [crashed]
    assert leftover_unpackings(tmp_path / "nowhere" / "r1") == []
    long = tmp_path / ("n" * 255)
    assert len(os.fsencode(runtar.temp_prefix(long))) + 8 <= 255


def test_other_tools_read_the_tar(tmp_path: Path, sample: tuple[bytes, TarWritten]) -> None:
    data, _ = sample
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:  # random access, not stream mode
        assert {m.name for m in tar} == {".", "a", "capcut_draft", "sub", "sub/b"}
        assert tar.extractfile("a").read() == b"a" * 3000  # type: ignore[union-attr]


def test_a_special_member_in_a_tree_from_trees_spec_is_refused(tmp_path: Path) -> None:
    spec = DirSpec({"p": SpecialSpec("fifo", 0o644, T0)})  # type: ignore[dict-item]
    (tmp_path / "run").mkdir()
    build_into(spec, tmp_path / "run", tmp_path)
    with pytest.raises(Invalid, match="p is a fifo"):
        write_run_tar(tmp_path / "run", lambda _: None)
