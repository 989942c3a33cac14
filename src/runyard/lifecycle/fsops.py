"""Moving run folders so that none is ever lost, overwritten or half-moved.

This module owns the filesystem half of archive and restore: scanning a tree into a
digest that is its identity, and moving it. Reports, guards and the registry live
elsewhere; they call :func:`scan_tree`, :func:`move_tree` and, after a crash,
:func:`finish_interrupted_move`.

A move on one filesystem is a single ``renameat2(RENAME_NOREPLACE)`` (a plain
``rename`` would silently replace an empty directory) followed by an fsync of both
parents. Across filesystems it is, with a crash point at every arrow::

    copy src → dst.parent/.<dst.name>.partial   (sendfile; each file and folder fsynced)
      → verify: the copy against the source (metadata of every entry, each file byte
        for byte, hashing those bytes), then against what was planned; and the
        source's metadata once more (nothing written to it meanwhile)
      → rename .partial → dst (no replace), fsync dst.parent
      → rename src → src.parent/.<src.name>.deleting (no replace), fsync src.parent
      → delete the .deleting tree without following links, fsync src.parent

At every instant a complete copy exists under a name that says what it is, so
:func:`finish_interrupted_move` can settle any interrupted move from what is on disk
alone: the source is never modified before a verified copy sits at ``dst``, and it
leaves its own name in one atomic rename, so it is never seen half-deleted.

Symlinks are moved as links and never followed, not even to read what they point
at: a link to a folder outside the run is not copied, and deleting the source
unlinks the link, not its target.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import hashlib
import json
import os
import shutil
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn, TypedDict

from runyard import fsnames
from runyard.errors import Conflict, Invalid, NotFound, Refused, RunyardError
from runyard.lifecycle.crashpoints import crashpoint

CHUNK = 1 << 20
"""Files are read in 1 MiB chunks: large enough to be fast, small enough to stream."""

DIGEST_PREFIX = "sha256:"
META_DIGEST_PREFIX = "meta-sha256:"
"""A metadata-only digest can never be mistaken for (or compare equal to) a full one."""

_DIGEST_HEADER = b"runyard-tree-v1\n"

_json_str: Callable[[str], str] = json.encoder.encode_basestring_ascii
"""A string as ASCII-only JSON, quotes included (the C implementation where built)."""

Kind = Literal["dir", "file", "symlink", "fifo", "socket", "chardev", "blockdev"]
MoveMethod = Literal["rename", "copy"]
Settlement = Literal["not_moved", "moved", "settled_both"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of a tree; ``path`` is relative with ``/`` (``"."`` for the root).

    ``size`` is 0 for directories: their ``st_size`` depends on the filesystem, so it
    would make a faithful copy on tmpfs differ from its ext4 source.
    """

    path: str
    kind: Kind
    mode: int
    size: int
    mtime_ns: int
    sha256: str | None = None
    link: str | None = None
    rdev: int = 0  # devices only
    hardlink: str | None = None  # a file: the first path (sorted) of its inode in the tree

    def canonical(self, content: bool) -> str:
        """One line of the canonical text the tree digest is taken over."""
        if self.kind == "symlink":
            last = self.link
        elif self.kind in ("chardev", "blockdev"):
            last = f"rdev:{self.rdev}"
        else:
            last = self.sha256 if content else None
        # Exactly json.dumps([path, kind, mode, size, mtime, last], ensure_ascii=True,
        # separators=(",", ":")), built from the C string encoder: scans call this for
        # every entry twice, and json.dumps' generic path dominated small-run archives.
        # A hard link adds a seventh field, so that trees without one keep their digests.
        extra = f",{_json_str('=' + self.hardlink)}" if self.hardlink else ""
        return (
            f'[{_json_str(self.path)},{_json_str(self.kind)},"{self.mode:o}",'
            f"{self.size},{self.mtime_ns},{_json_str(last or '')}{extra}]\n"
        )


@dataclass(frozen=True)
class TreeScan:
    """What a tree is: its entries and the digests that identify it.

    ``digest`` is ``sha256:<hex>`` over type, mode, size, content, link text and mtime
    of every entry when content was hashed; without content hashes (a dry run's cheap
    scan) it is ``meta-sha256:<hex>``, the same as ``metadata_digest``, which every
    scan carries so that a cheap scan can be compared with a full one.
    """

    entries: tuple[Entry, ...]
    content_hashed: bool
    digest: str
    metadata_digest: str
    bytes: int
    files: int
    newest_mtime_ns: int
    symlinks: tuple[tuple[str, str], ...]
    # The digests as runyard wrote them before it recorded hard links (issue 13), for a
    # tree that has some: a batch archived then still restores and recovers.
    older_digests: tuple[str, ...] = ()

    def agrees_with(self, digest: str) -> bool:
        """True when ``digest`` (full or metadata-only) identifies this tree."""
        return digest in (self.digest, self.metadata_digest) or digest in self.older_digests

    def differences(self, other: TreeScan, limit: int = 5) -> list[str]:
        """The first paths whose entries differ between two scans, for error messages."""
        content = self.content_hashed and other.content_hashed
        mine = {e.path: e.canonical(content) for e in self.entries}
        theirs = {e.path: e.canonical(content) for e in other.entries}
        paths = sorted(p for p in mine.keys() | theirs.keys() if mine.get(p) != theirs.get(p))
        return paths[:limit]


class MovedSymlink(TypedDict):
    """A symlink of a moved tree, as archive reports list it."""

    path: str
    target: str
    resolves_after_move: bool


@dataclass(frozen=True)
class MoveResult:
    """How a tree was moved, what it is (with content hashes), and its links."""

    method: MoveMethod
    scan: TreeScan
    symlinks: list[MovedSymlink]


def partial_path(dst: Path) -> Path:
    """Where a cross-filesystem copy is assembled before it is renamed to ``dst``."""
    return dst.with_name(f".{dst.name}.partial")


def tombstone_path(src: Path) -> Path:
    """Where a copied source goes, in one rename, before it is deleted."""
    return src.with_name(f".{src.name}.deleting")


# --- scanning -------------------------------------------------------------------------------


def _join(root: str, rel: str) -> str:
    return f"{root}/{rel}" if rel else root


def _child(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _entry_for(rel: str, st: os.stat_result, full: str) -> Entry:
    """The metadata of one entry, from its lstat (a fifo, socket or device is never
    opened: opening a fifo blocks until a writer comes)."""
    path = rel or "."
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        return Entry(path, "dir", mode, 0, st.st_mtime_ns)
    if stat.S_ISREG(st.st_mode):
        return Entry(path, "file", mode, st.st_size, st.st_mtime_ns)
    if stat.S_ISLNK(st.st_mode):
        return Entry(path, "symlink", mode, st.st_size, st.st_mtime_ns, link=os.readlink(full))
    kind = _SPECIAL_KINDS.get(stat.S_IFMT(st.st_mode))
    if kind is None:  # pragma: no cover - Linux has no other kind of entry
        raise Invalid(f"{full} is of an unknown kind (mode {st.st_mode:o}); not archived")
    rdev = st.st_rdev if kind in ("chardev", "blockdev") else 0
    return Entry(path, kind, mode, 0, st.st_mtime_ns, rdev=rdev)


_SPECIAL_KINDS: dict[int, Kind] = {
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "chardev",
    stat.S_IFBLK: "blockdev",
}
_SPECIAL_TYPES = {kind: ifmt for ifmt, kind in _SPECIAL_KINDS.items()}


def _load_memcmp() -> Callable[[int, int, int], int] | None:
    """libc's ``memcmp``, called through ctypes, which lets go of the GIL for the call
    (``bytearray ==`` holds it: 0.1 ms a MiB in which the other movers cannot run
    Python); None where there is no C library to load (the fallback is used)."""
    try:
        func = ctypes.CDLL(None).memcmp
    except (AttributeError, OSError):
        return None
    func.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    func.restype = ctypes.c_int
    typed: Callable[[int, int, int], int] = func
    return typed


_MEMCMP = _load_memcmp()


def _pinned(buffer: bytearray) -> ctypes.Array[ctypes.c_char]:
    """A ctypes view of ``buffer``: while it lives, the bytearray cannot be resized, so
    the address of its bytes stays valid."""
    return (ctypes.c_char * len(buffer)).from_buffer(buffer)


class _Buffers(threading.local):
    """Two ``CHUNK`` buffers for each thread, made once and reused for every file.

    A fresh ``bytearray`` of 1 MiB is fresh memory: the kernel maps and zeroes each of
    its pages on first touch and takes them back when it is freed, which cost more than
    hashing the MiB read into it, and all of it while holding the GIL.
    """

    def __init__(self) -> None:
        self.a = bytearray(CHUNK)
        self.b = bytearray(CHUNK)
        self.pins = (_pinned(self.a), _pinned(self.b))
        self.addresses = (ctypes.addressof(self.pins[0]), ctypes.addressof(self.pins[1]))

    def same(self, count: int) -> bool:
        """Whether the first ``count`` bytes of the two buffers are the same."""
        if _MEMCMP is not None:
            return _MEMCMP(self.addresses[0], self.addresses[1], count) == 0
        if count == len(self.a):
            return self.a == self.b
        return self.a.startswith(memoryview(self.b)[:count], 0, count)


_buffers = _Buffers()


def _hash_fd(fd: int) -> str:
    """sha256 of what ``fd`` holds, read to its end (a file that grew is read whole)."""
    digest = hashlib.sha256()
    view = memoryview(_buffers.a)
    while n := os.readv(fd, [view]):
        digest.update(view[:n])
    return digest.hexdigest()


def _open_nofollow(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)


def _real_dir(root: Path, missing: type[RunyardError] = NotFound) -> os.stat_result:
    """The lstat of ``root``, which must be a directory and not a link to one."""
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        raise missing(f"{root} does not exist") from None
    if not stat.S_ISDIR(st.st_mode):
        what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
        raise Invalid(f"{root} is {what}; only a real directory is scanned or moved")
    return st


def _listing(root: str, rel: str) -> list[tuple[str, os.stat_result]]:
    with os.scandir(_join(root, rel)) as listing:
        return [(item.name, item.stat(follow_symlinks=False)) for item in listing]


def _walk(root: str, root_st: os.stat_result) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry under ``root`` in pre-order (a folder, then all of its subtree), never
    following links; iterative, so that depth is bounded by the filesystem, not the stack."""
    yield "", root_st
    stack = [("", iter(_listing(root, "")))]
    while stack:
        rel, children = stack[-1]
        for name, st in children:
            child = _child(rel, name)
            yield child, st
            if stat.S_ISDIR(st.st_mode):
                stack.append((child, iter(_listing(root, child))))
                break
        else:
            stack.pop()


def scan_tree(root: Path, hash_content: bool = True) -> TreeScan:
    """Scan ``root`` with ``lstat`` only; with ``hash_content`` also sha256 every file.

    Raises:
        Invalid: an entry is a fifo, socket or device, or ``root`` is not a real directory.
        Refused: something under ``root`` cannot be read.
    """
    return _scan(root, hash_content)


def _scan(root: Path, hash_content: bool, root_st: os.stat_result | None = None) -> TreeScan:
    entries = _metadata(root, root_st)
    if hash_content:
        base = str(root)
        try:
            entries = [_with_hash(base, e) if e.kind == "file" else e for e in entries]
        except OSError as exc:
            raise Refused(f"cannot read {exc.filename or root}: {exc.strerror}") from exc
    return _build_scan(entries, hash_content)


def _metadata(root: Path, root_st: os.stat_result | None = None) -> list[Entry]:
    """The entries of ``root`` without content hashes, sorted by path (scan order, and
    the order two trees on different filesystems can be compared in); ``root_st`` is
    its lstat when the caller has just taken it.

    Raises:
        Invalid, Refused: as :func:`scan_tree`.
    """
    root_st = root_st or _real_dir(root)
    base = str(root)
    inodes: dict[int, list[int]] = {}
    entries: list[Entry] = []
    try:
        for rel, st in _walk(base, root_st):
            if st.st_nlink > 1 and stat.S_ISREG(st.st_mode):
                inodes.setdefault(st.st_ino, []).append(len(entries))
            entries.append(_entry_for(rel, st, _join(base, rel)))
    except OSError as exc:
        raise Refused(f"cannot read {exc.filename or root}: {exc.strerror}") from exc
    _mark_hardlinks(entries, inodes.values())
    entries.sort(key=_path_of)
    return entries


def _mark_hardlinks(entries: list[Entry], groups: Iterable[list[int]]) -> None:
    """Each file that shares its inode with another of the tree names the first of them
    (by path), so two trees compare equal only with the same hard links."""
    for group in groups:
        if len(group) < 2:
            continue  # its other names are outside the tree
        first = min(entries[i].path for i in group)
        for i in group:
            entries[i] = dataclasses.replace(entries[i], hardlink=first)


def _path_of(entry: Entry) -> str:
    return entry.path


def _with_hash(base: str, entry: Entry) -> Entry:
    fd = _open_nofollow(_join(base, "" if entry.path == "." else entry.path))
    try:
        sha = _hash_fd(fd)
    finally:
        os.close(fd)
    return dataclasses.replace(entry, sha256=sha)


def _tree_digest(entries: Iterable[Entry], content: bool) -> str:
    text = "".join([entry.canonical(content) for entry in entries]).encode("ascii")
    digest = hashlib.sha256(_DIGEST_HEADER + text).hexdigest()
    return (DIGEST_PREFIX if content else META_DIGEST_PREFIX) + digest


def _build_scan(entries: list[Entry], content_hashed: bool) -> TreeScan:
    ordered = tuple(sorted(entries, key=_path_of))
    meta = _tree_digest(ordered, content=False)
    older: tuple[str, ...] = ()
    if any(e.hardlink for e in ordered):
        plain = [dataclasses.replace(e, hardlink=None) for e in ordered]
        older = (_tree_digest(plain, content=False),)
        if content_hashed:
            older += (_tree_digest(plain, content=True),)
    return TreeScan(
        older_digests=older,
        entries=ordered,
        content_hashed=content_hashed,
        digest=_tree_digest(ordered, content=True) if content_hashed else meta,
        metadata_digest=meta,
        bytes=sum(e.size for e in ordered if e.kind == "file"),
        files=sum(1 for e in ordered if e.kind == "file"),
        newest_mtime_ns=max(e.mtime_ns for e in ordered),
        symlinks=tuple((e.path, e.link or "") for e in ordered if e.kind == "symlink"),
    )


def _agrees(scan: TreeScan, expected: TreeScan) -> bool:
    if expected.content_hashed:
        return scan.digest == expected.digest
    return scan.metadata_digest == expected.metadata_digest


# --- small durable primitives ---------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    """fsync a directory, so that the entries just created or removed in it survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_renameat2() -> Callable[[int, bytes, int, bytes, int], int] | None:
    """glibc's ``renameat2`` (2.28+); None where libc lacks it (the fallback is used)."""
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    typed: Callable[[int, bytes, int, bytes, int], int] = func
    return typed


_RENAMEAT2 = _load_renameat2()
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``, failing with Conflict if ``dst`` exists in any form.

    ``os.rename`` replaces an empty directory or a file; ``renameat2`` with
    ``RENAME_NOREPLACE`` decides atomically in the kernel. Only where the filesystem
    does not support it (EINVAL) does this fall back to check-then-rename.

    Raises:
        Conflict: ``dst`` exists (also as a dangling symlink or an empty directory).
        OSError: anything else, with ``errno.EXDEV`` for two filesystems.
    """
    if _RENAMEAT2 is not None:
        if _RENAMEAT2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE):
            err = ctypes.get_errno()
            if err == errno.EEXIST:
                raise _exists(dst)
            if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise OSError(err, os.strerror(err), str(src), None, str(dst))
        else:
            return
    if os.path.lexists(dst):
        raise _exists(dst)
    os.rename(src, dst)


def _exists(path: Path) -> Conflict:
    return Conflict(f"{path} already exists; runyard never overwrites")


def _ensure_dir(path: Path) -> os.stat_result:
    """Create ``path`` and its missing parents, fsyncing each new entry's parent; its stat."""
    st = _dir_stat(path)
    if st is not None:
        return st  # the usual case: every run of a batch goes into one folder
    missing: list[Path] = []
    probe = path
    while not os.path.lexists(probe):
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
        except FileExistsError:
            continue
        fsync_dir(folder.parent)
    st = _dir_stat(path)
    if st is None:
        raise Conflict(f"{path} exists and is not a directory")
    return st


def _dir_stat(path: Path) -> os.stat_result | None:
    """The stat of ``path`` (links followed) if it is a directory, else None."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st if stat.S_ISDIR(st.st_mode) else None


def remove_tree(path: Path) -> None:
    """Delete a real directory tree, unlinking symlinks without following them.

    ``shutil.rmtree`` works through directory fds on Linux and never follows a link
    (``rmtree.avoids_symlink_attacks``); folders without write permission for us are
    opened up first, which only matters when not running as root.
    """
    if os.path.islink(path):
        raise Invalid(f"{path} is a symlink; refusing to delete through it")
    try:
        shutil.rmtree(path)
    except PermissionError:
        for rel, st in _walk(str(path), os.lstat(path)):
            if stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o700 != 0o700:
                os.chmod(_join(str(path), rel), stat.S_IMODE(st.st_mode) | 0o700)
        shutil.rmtree(path)


Remover = Callable[[Path], None]
"""Deletes a tombstone whose rename may not be durable yet (``remove_tombstones``, or a
queue for a thread that calls it with many at once)."""


def _delete_source(src: Path, remove: Remover | None = None) -> None:
    """Remove ``src`` from its name in one atomic step (to its tombstone path), then
    delete it at leisure: here, or by ``remove`` (another thread), since the tree is
    already out of every path that means something; ``finish_interrupted_move`` deletes a
    tombstone a crash left."""
    tomb = tombstone_path(src)
    rename_noreplace(src, tomb)
    (remove or _remove_one)(tomb)


def delete_source(src: Path, remove: Remover | None = None) -> None:
    """Take ``src`` out of its name in one rename (to its tombstone), then delete it
    (here, or by ``remove``): the last step of a move once the other copy is safe."""
    _delete_source(src, remove)


def _remove_one(tomb: Path) -> None:
    remove_tombstones([tomb])


def remove_tombstones(tombs: Sequence[Path]) -> None:
    """Delete tombstoned trees without following links, fsyncing each folder they are in
    first (once for all of them) and again once they are gone.

    The first fsync makes the renames that tombstoned them durable before anything in
    them is deleted, so that after a crash no source is found half-deleted under its
    own name. Every tree is tried; the first failure is raised after the others.
    """
    folders = list(dict.fromkeys(tomb.parent for tomb in tombs))
    for folder in folders:
        fsync_dir(folder)
    for _ in tombs:
        crashpoint("fsops.src.tombstoned")
    failures: list[Exception] = []
    for tomb in tombs:
        try:
            remove_tree(tomb)
        except Exception as exc:  # the others are still deleted; this one is raised
            failures.append(exc)
    for folder in folders:
        fsync_dir(folder)
    for _ in range(len(tombs) - len(failures)):
        crashpoint("fsops.src.deleted")
    if failures:
        raise failures[0]


# --- moving ---------------------------------------------------------------------------------


def same_filesystem(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` (or their nearest existing ancestors) share a device."""
    return _device(a) == _device(b)


def _device(path: Path) -> int:
    absolute = path.absolute()
    for candidate in (absolute, *absolute.parents):
        try:
            return os.stat(candidate).st_dev
        except (FileNotFoundError, NotADirectoryError):
            continue
    raise Invalid(f"no part of {path} exists")  # pragma: no cover - "/" always exists


def cannot_keep(scan: TreeScan, folder: Path, dest_root: Path) -> str | None:
    """Why moving the tree at ``folder`` (scanned as ``scan``) into ``dest_root`` would not
    give an exact copy; None when it would (always on one filesystem: a rename)."""
    if same_filesystem(folder, dest_root):
        return None
    devices = [e.path for e in scan.entries if e.kind in ("chardev", "blockdev")]
    if devices and os.geteuid() != 0:
        return (
            f"holds the device node {fsnames.shown(devices[0])}, which only root can make "
            "again on the archive's filesystem"
        )
    if not _keeps_xattrs(dest_root):
        for e in scan.entries:
            rel = "" if e.path == "." else e.path
            if e.kind in ("dir", "file") and read_xattrs(_join(str(folder), rel)):
                return (
                    f"{fsnames.shown(e.path)} has extended attributes, which the archive's "
                    "filesystem cannot keep"
                )
    return None


_XATTR_PROBE = "user.runyard-probe"
_keeps_xattrs_cache: dict[int, bool] = {}


def _keeps_xattrs(root: Path) -> bool:
    """Whether the filesystem of ``root`` (or of its nearest existing ancestor) keeps user
    extended attributes: probed once per filesystem, on that folder itself."""
    folder = root.absolute()
    while not folder.is_dir():
        folder = folder.parent
    device = os.stat(folder).st_dev
    if device not in _keeps_xattrs_cache:
        try:
            os.setxattr(folder, _XATTR_PROBE, b"1")
            os.removexattr(folder, _XATTR_PROBE)
            keeps = True
        except OSError as exc:
            # Not allowed to write there (someone else's folder): assume it keeps them;
            # the copy verifies every attribute and refuses the move if one was lost.
            keeps = exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP)
        _keeps_xattrs_cache[device] = keeps
    return _keeps_xattrs_cache[device]


def symlink_resolution(root: Path, symlinks: Iterable[tuple[str, str]]) -> list[MovedSymlink]:
    """Whether each link of a tree now at ``root`` resolves there (loops do not)."""
    return [
        {"path": rel, "target": text, "resolves_after_move": os.path.exists(root / rel)}
        for rel, text in symlinks
    ]


Expected = TreeScan | str | None
"""What a move is checked against: the scan it was planned from, a recorded digest
(full or metadata-only), or nothing."""


def move_tree(
    src: Path, dst: Path, expected: Expected = None, remove_source: Remover | None = None
) -> MoveResult:
    """Move the run folder ``src`` to ``dst``, which must not exist.

    Args:
        expected: the scan the move was planned from, or a recorded digest (a report's);
            a tree that no longer agrees with it is refused and left where it is. The
            moved tree is hashed even so (before a rename, or the copy once written):
            the result describes what moved, not what was planned.

    Raises:
        Conflict: ``dst`` exists, or an interrupted move left its ``.partial`` or
            ``.deleting`` folder behind (``finish_interrupted_move`` settles those).
        Invalid: ``src`` is missing, a symlink, not a directory, or contains ``dst``;
            or the tree holds a fifo, socket or device.
        Refused: the tree changed since ``expected``, or the copy did not verify; ``src``
            is untouched and no partial copy remains.

    ``remove_source`` deletes the tombstoned original of a copy (by default, here and
    now), fsyncing its folder first: the move is complete once the original has left
    its name.
    """
    src_st = _real_dir(src, missing=Invalid)
    tomb, partial = tombstone_path(src), partial_path(dst)
    for leftover in (tomb, partial):
        if os.path.lexists(leftover):
            raise Conflict(
                f"{leftover} is left over from an interrupted move",
                hint="run `runyard recover` first",
            )
    if os.path.lexists(dst):
        raise _exists(dst)
    if _ensure_dir(dst.parent).st_dev == src_st.st_dev:
        scan = _scan(src, True, src_st)
        _check_expected(scan, expected, src)
        crashpoint("fsops.rename.before")
        try:
            rename_noreplace(src, dst)
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # the kernel's answer to a move into itself
                raise _into_itself(src, dst) from None
            if exc.errno != errno.EXDEV:  # EXDEV: e.g. two bind mounts of one filesystem
                raise Refused(f"cannot rename {src} to {dst}: {exc.strerror}") from exc
        else:
            _fsync_parents(src.parent, dst.parent)
            crashpoint("fsops.rename.after")
            return MoveResult("rename", scan, symlink_resolution(dst, scan.symlinks))
    # Strings, not Path.resolve() and Path.parents: this runs for every run of a batch.
    src_real, dst_real = os.path.realpath(src), os.path.realpath(dst)
    if dst_real == src_real or dst_real.startswith(os.path.join(src_real, "")):
        raise _into_itself(src, dst)
    scan = _copy_verify(src, src_st, partial, expected)
    try:
        rename_noreplace(partial, dst)
    except Conflict:
        remove_tree(partial)
        raise
    fsync_dir(dst.parent)
    crashpoint("fsops.partial.renamed")
    _delete_source(src, remove_source)
    return MoveResult("copy", scan, symlink_resolution(dst, scan.symlinks))


def _into_itself(src: Path, dst: Path) -> Invalid:
    return Invalid(f"cannot move {src} into itself ({dst})")


def _fsync_parents(first: Path, second: Path) -> None:
    """fsync both folders, once when they are the same folder."""
    fd = os.open(first, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    fd = os.open(second, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        other = os.fstat(fd)
        if (other.st_dev, other.st_ino) != (st.st_dev, st.st_ino):
            os.fsync(fd)
    finally:
        os.close(fd)


def _check_expected(scan: TreeScan, expected: Expected, where: Path) -> None:
    if expected is None:
        return
    if isinstance(expected, TreeScan):
        if _agrees(scan, expected):
            return
        changed = ", ".join(scan.differences(expected)) or "?"
    else:
        if scan.agrees_with(expected):
            return
        raise Refused(
            f"{where} changed since it was recorded (its digest is not the recorded "
            f"{expected}); not moved",
            hint="compare it with the report's entry; runyard moves only what it can verify",
        )
    raise Refused(
        f"{where} changed since it was scanned (first differences: {changed}); not moved",
        hint="scan it again (a new dry run) before moving",
    )


def _copy_verify(src: Path, src_st: os.stat_result, partial: Path, expected: Expected) -> TreeScan:
    """Copy ``src`` to ``partial`` (the destination's partial sibling) and verify it; the
    copy's scan.

    The kernel copies each file (``sendfile``), while the walk that copies records the
    source's metadata. Then the copy is compared with the source: the same entries with
    the same type, mode, size, mtime and link text as the walk found, and every file
    byte for byte against the source read again, hashing the bytes found identical, so
    the sha256 recorded is that of the copy and of the source at once. The copy is then
    checked against ``expected``, and the source's metadata once more, so that nothing
    written to it while it was copied or compared is left behind. On any failure the
    partial copy is removed and ``src`` stays as it was.
    """
    try:
        source, attrs = _copy_tree(src, src_st, partial)
        crashpoint("fsops.copy.done")
        copy = _verify_copy(src, partial, source)
        _verify_xattrs(src, partial, attrs)
        _check_expected(copy, expected, src)
        # The same entries and metadata as the copy's (what its metadata digest covers),
        # compared as they are rather than through a digest of each side.
        if _metadata(src) != source:
            raise Refused(f"{src} changed while it was copied; not moved")
    except BaseException as exc:
        if os.path.lexists(partial):
            remove_tree(partial)
            fsync_dir(partial.parent)
        if isinstance(exc, OSError):
            raise Refused(f"copying {src} to {partial} failed: {exc}") from exc
        raise
    crashpoint("fsops.verify.done")
    return copy


def _verify_copy(src: Path, partial: Path, source: list[Entry]) -> TreeScan:
    """The copy's full scan, if it is the source's tree exactly; Refused otherwise.

    ``source`` is the source's metadata as the copy found it (``_copy_tree``); its
    content is read again here. The source's metadata is not scanned again here: the
    caller does that after this comparison, which also sees any change made to the
    source until then.
    """
    copied = _metadata(partial)
    if copied != source:
        mine, theirs = _build_scan(copied, False), _build_scan(source, False)
        _refuse_bad_copy(src, partial, mine.differences(theirs))
    entries: list[Entry] = []
    for entry in copied:
        if entry.kind == "file":
            rel = "" if entry.path == "." else entry.path
            sha = _same_content(_join(str(src), rel), _join(str(partial), rel))
            if sha is None:
                _refuse_bad_copy(src, partial, [entry.path])
            entry = dataclasses.replace(entry, sha256=sha)
        entries.append(entry)
    return _build_scan(entries, content_hashed=True)


def _same_content(first: str, second: str) -> str | None:
    """The sha256 of two files' content when it is the same, byte for byte; else None.

    Both are read to their end through this thread's two buffers (a file that grew
    shows as a longer read); each chunk is compared with one ``memcmp`` and nothing is
    copied. A chunk shorter than the buffers is the last: ``_read_full`` returns one only
    at the end of a file.
    """
    fd_a, fd_b = _open_nofollow(first), None
    try:
        fd_b = _open_nofollow(second)
        digest = hashlib.sha256()
        buffers = _buffers
        view_a, view_b = memoryview(buffers.a), memoryview(buffers.b)
        while True:
            got = _read_full(fd_a, view_a)
            if _read_full(fd_b, view_b) != got or not buffers.same(got):
                return None
            if got < len(view_a):  # both ended
                digest.update(view_a[:got])
                return digest.hexdigest()
            digest.update(view_a)
    finally:
        os.close(fd_a)
        if fd_b is not None:
            os.close(fd_b)


def _read_full(fd: int, view: memoryview) -> int:
    """Fill ``view`` from ``fd`` (short reads retried); the count, less only at the end."""
    got = 0
    while got < len(view) and (n := os.readv(fd, [view[got:]])):
        got += n
    return got


def _refuse_bad_copy(src: Path, partial: Path, differences: list[str]) -> NoReturn:
    bad = ", ".join(differences) or "?"
    raise Refused(
        f"the copy of {src} at {partial} does not match the source "
        f"(first differences: {bad}); the source is untouched"
    )


def _verify_xattrs(src: Path, partial: Path, attrs: dict[str, dict[str, bytes]]) -> None:
    """Every extended attribute the copy found on the source is on the copy, the same.

    The copy may carry more (a security label its filesystem sets on every new file)."""
    for rel, wanted in attrs.items():
        found = read_xattrs(_join(str(partial), rel))
        if any(found.get(name) != value for name, value in wanted.items()):
            _refuse_bad_copy(src, partial, [f"{rel or '.'} (extended attributes)"])


def _copy_tree(
    src: Path, src_st: os.stat_result, partial: Path
) -> tuple[list[Entry], dict[str, dict[str, bytes]]]:
    """Copy ``src`` into the new folder ``partial``, links as links, never following one;
    the source's entries as they were copied (no content hashes), sorted by path.

    The kernel copies each file (``sendfile``). Folders are created private and get
    their mode and mtime (and an fsync) once their contents are complete, so writing
    into them never changes what was set.
    """
    base, out = str(src), str(partial)
    entries: list[Entry] = []
    attrs: dict[str, dict[str, bytes]] = {}
    pending_dirs: list[tuple[str, Entry, os.stat_result]] = []
    inodes: dict[int, list[int]] = {}
    copied_inodes: dict[int, str] = {}  # a hard-linked file's inode → its copy
    os.mkdir(out, 0o700)
    crashpoint("fsops.copy.started")
    for rel, st in _walk(base, src_st):
        while pending_dirs and not _inside(rel, pending_dirs[-1][0]):
            _finish_dir(out, *pending_dirs.pop(), attrs)
        full, target = _join(base, rel), _join(out, rel)
        entry = _entry_for(rel, st, full)
        if entry.kind != "symlink":  # Linux keeps no user attributes on a link
            found = read_xattrs(full)
            if found:
                attrs[rel] = found
        if entry.kind == "file" and st.st_nlink > 1:
            inodes.setdefault(st.st_ino, []).append(len(entries))
        entries.append(entry)
        if entry.kind == "dir":
            if rel:
                os.mkdir(target, 0o700)
            pending_dirs.append((rel, entry, st))
        elif entry.kind == "symlink":
            os.symlink(entry.link or "", target)
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        elif entry.kind == "file":
            first = copied_inodes.get(st.st_ino) if st.st_nlink > 1 else None
            if first is not None:
                os.link(first, target)  # the same inode: contents, mode and times with it
            else:
                _copy_file(full, target, entry, st, attrs.get(rel))
                if st.st_nlink > 1:
                    copied_inodes[st.st_ino] = target
            crashpoint("fsops.copy.file")
        else:
            # A fifo, socket or device is made anew, never opened (a fifo would block).
            os.mknod(target, 0o600 | _SPECIAL_TYPES[entry.kind], entry.rdev)
            _set_xattrs(target, attrs.get(rel))
            os.chmod(target, entry.mode, follow_symlinks=False)
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    while pending_dirs:
        _finish_dir(out, *pending_dirs.pop(), attrs)
    _mark_hardlinks(entries, inodes.values())
    entries.sort(key=_path_of)
    return entries, attrs


def _inside(rel: str, folder: str) -> bool:
    return folder == "" or rel.startswith(folder + "/")


def _copy_file(
    full: str, target: str, entry: Entry, st: os.stat_result, attrs: dict[str, bytes] | None
) -> None:
    """Copy one file with its mode, times and extended attributes, fsynced. A file that
    grew or shrank while it was copied gives a copy that verification then refuses."""
    fd_in = _open_nofollow(full)
    try:
        fd_out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            _kernel_copy(fd_in, fd_out, st.st_size)
            _set_xattrs(fd_out, attrs)
            os.fchmod(fd_out, entry.mode)
            os.utime(fd_out, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.fsync(fd_out)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


_OWNER_XATTRS = ("user.", "system.posix_acl_")
"""What a process that is not root may set on a file it made: user attributes and ACLs.
Root copies every namespace (``trusted.``, ``security.`` too); anyone else leaves those to
the system (a security label is given to each new file by the system's own policy)."""


def read_xattrs(path: str) -> dict[str, bytes]:
    """The extended attributes of ``path`` that a move keeps (never following a link);
    {} where the filesystem keeps none."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    if os.geteuid() != 0:
        names = [name for name in names if name.startswith(_OWNER_XATTRS)]
    return {name: os.getxattr(path, name, follow_symlinks=False) for name in sorted(names)}


def _set_xattrs(target: int | str, attrs: dict[str, bytes] | None) -> None:
    """Give the copy the source's extended attributes; an attribute the destination
    cannot keep fails the copy (``cannot_keep`` says so in the dry run)."""
    for name, value in (attrs or {}).items():
        try:
            if isinstance(target, int):
                os.setxattr(target, name, value)
            else:
                os.setxattr(target, name, value, follow_symlinks=False)
        except OSError as exc:
            raise Refused(
                f"the archive's filesystem cannot keep the extended attribute {name} "
                f"({exc.strerror}); not moved"
            ) from exc


def _kernel_copy(fd_in: int, fd_out: int, size: int) -> None:
    """Copy the ``size`` bytes (what lstat said) ``fd_in`` holds to ``fd_out`` inside the
    kernel (``sendfile``), with a read/write loop where the kernel cannot.

    Stopping at ``size`` spares a last call that would only find the end; a file that
    grew meanwhile gives a shorter copy, which verification refuses (the source is read
    to its end there), as it refuses one of a file that shrank.
    """
    sent = 0
    try:
        while sent < size and (n := os.sendfile(fd_out, fd_in, None, size - sent)):
            sent += n
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
        while data := os.read(fd_in, CHUNK):
            view = memoryview(data)
            while view:
                view = view[os.write(fd_out, view) :]


def _finish_dir(
    out: str, rel: str, entry: Entry, st: os.stat_result, attrs: dict[str, dict[str, bytes]]
) -> None:
    fd = os.open(_join(out, rel), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _set_xattrs(fd, attrs.get(rel))
        os.fchmod(fd, entry.mode)
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.fsync(fd)
    finally:
        os.close(fd)


# --- recovery -------------------------------------------------------------------------------


def finish_interrupted_move(src: Path, dst: Path, expected_digest: str | None) -> Settlement:
    """Settle a move that may have been interrupted at any point, from what is on disk.

    Returns ``"not_moved"`` (only ``src``; a leftover partial copy is removed),
    ``"moved"`` (only ``dst``, agreeing with ``expected_digest`` when given; a leftover
    ``.deleting`` source is removed) or ``"settled_both"`` (both existed and were
    identical, and agreed with ``expected_digest`` when given; ``src`` was removed).

    Raises:
        Refused: the run is missing (neither side exists), or the two sides differ, or
            ``dst`` does not agree with ``expected_digest``. Nothing is deleted then:
            the caller raises an alarm and a person decides.
    """
    partial, tomb = partial_path(dst), tombstone_path(src)
    has_src, has_dst = os.path.lexists(src), os.path.lexists(dst)
    if has_src and not has_dst:
        if os.path.lexists(partial):
            remove_tree(partial)
            fsync_dir(partial.parent)
        return "not_moved"
    if has_dst and not has_src:
        if expected_digest is not None:
            _check_digest(scan_tree(dst), expected_digest, dst)
        if os.path.lexists(tomb):
            remove_tree(tomb)
            fsync_dir(tomb.parent)
        return "moved"
    if has_src and has_dst:
        dst_scan, src_scan = scan_tree(dst), scan_tree(src)
        if dst_scan.digest != src_scan.digest:
            bad = ", ".join(dst_scan.differences(src_scan)) or "?"
            raise Refused(
                f"both {src} and {dst} exist and differ (first differences: {bad}); "
                "kept both, nothing deleted",
                hint="compare the two folders and remove the wrong one by hand",
            )
        if expected_digest is not None:
            _check_digest(dst_scan, expected_digest, dst)
        _delete_source(src)
        return "settled_both"
    leftovers = [str(p) for p in (partial, tomb) if os.path.lexists(p)]
    found = f"; only {', '.join(leftovers)} remains, left untouched" if leftovers else ""
    raise Refused(
        f"run missing: neither {src} nor {dst} exists{found}",
        hint="restore the run from a backup; nothing was deleted",
    )


def _check_digest(scan: TreeScan, expected_digest: str, where: Path) -> None:
    if not scan.agrees_with(expected_digest):
        raise Refused(
            f"{where} does not match the recorded digest {expected_digest} "
            f"(it is {scan.digest}); nothing deleted",
            hint="inspect the folder; runyard will not settle a move it cannot verify",
        )
