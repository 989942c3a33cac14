"""One run folder as one PAX tar stream and back: exactly, safely, in bounded memory.

An archive batch in an object store holds each run as one object, a POSIX.1-2008 (PAX)
tar of its folder. This module owns that format; the store client and the lifecycle
commands only move its bytes. :func:`write_run_tar` feeds a tar of a run folder to a
sink (a multipart upload's ``write``) as it reads the files; :func:`extract_run_tar`
unpacks such a stream beside where the run goes and renames it into place only once
every byte has arrived and checked out.

What a run keeps, and how the tar holds it:

- names and link texts that are not UTF-8: their exact bytes, in PAX ``path`` and
  ``linkpath`` records under ``hdrcharset=BINARY`` (tarfile writes that header and
  reads it back with ``surrogateescape``);
- symlinks as links, with their literal text (absolute, dangling or pointing outside
  the run alike); never followed, neither when writing nor when unpacking;
- empty folders, and the run folder's own mode and mtime (its member is ``.``);
- modes, and mtimes to the nanosecond in a PAX ``mtime`` record written here
  (``"1700000000.123456789"``; tarfile's float would lose the last digits);
- hard links within the run: the first path of an inode (sorted) is a file, the
  others link members naming it;
- extended attributes (those :func:`fsops.read_xattrs` keeps) as
  ``SCHILY.xattr.<name>`` records, as GNU tar and bsdtar write them.

Owners, access times and special files are not kept: a FIFO, socket or device in a
run refuses the whole tar before its first byte. Members are written in the order of
:func:`fsops.scan_tree` (by path), so one tree always gives the same bytes.

Headers come from ``tarfile.TarInfo.tobuf``; the stream around them is written here
rather than through ``tarfile.open("w|")``, whose buffer appends each 16 KiB piece of
a file to a growing ``bytes`` (quadratic copying with a large buffer, 10 KiB sink
calls with the default). The bytes are what ``w|`` would write.

Reading is the other way round: ``tarfile`` parses the headers (its plain ``"r"``
reader, over a source that only seeks forward) and each file's content goes from the
stream straight into its file, never through tarfile's stream buffer. Unpacking never
uses ``extractall``: its ``data`` filter refuses absolute link targets, which runs
hold. Each member is checked and made here, under folders this
unpacking made itself, reached with ``O_NOFOLLOW`` at every step. Files are fsynced
once the whole stream has checked out, folders as they get their metadata, then the
folder is renamed into place. Nothing here is shared between calls: several runs can
be unpacked at once from threads (fsync waits overlap; 4 threads gave 3.7 times the
small runs per second of one).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import re
import secrets
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NoReturn, cast

from runyard.errors import Conflict, Invalid, NotFound, Refused, RunyardError
from runyard.fsnames import is_utf8, shown
from runyard.lifecycle import fsops
from runyard.lifecycle.crashpoints import crashpoint
from runyard.lifecycle.fsops import CHUNK, Entry, TreeScan

TEMP_PREFIX = ".restoring-"
"""Unpacking happens in ``<parent>/.restoring-<run>-<random>``; the dot keeps scans of
the runs root away from it, and ``recover`` finds leftovers by this prefix."""

_TEMP_RANDOM_BYTES = 4
XATTR_RECORD = "SCHILY.xattr."
_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
_END_OF_ARCHIVE = b"\0" * (2 * _BLOCK)
_NS = 10**9
_MTIME_TEXT = re.compile(r"(-?)([0-9]{1,12})(?:\.([0-9]{1,30}))?")
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_KEPT_KINDS = ("dir", "file", "symlink")


class TarMismatch(Refused):
    """The stream is not the tar that was expected: not a tar, cut short, longer, or its
    SHA-256, size or unpacked tree differs. Nothing was left behind."""

    code = "tar_mismatch"


class UnsafeMember(Invalid):
    """A tar member that would leave its run, write through a link, or make what a run
    never holds (a device, a FIFO); the whole tar is refused and nothing left behind."""

    code = "unsafe_tar_member"


@dataclass(frozen=True)
class TarWritten:
    """What :func:`write_run_tar` sent: the tar's size and SHA-256, and the tree it holds.

    ``scan`` is the folder as it was read (content hashed while streaming): its
    ``digest`` is what ``fsops.scan_tree`` gives for the folder, and for the tree
    :func:`extract_run_tar` makes of this tar.
    """

    size: int
    sha256: str
    members: int
    content_bytes: int
    scan: TreeScan


@dataclass(frozen=True)
class TarExtracted:
    """What :func:`extract_run_tar` unpacked, now at ``path``; ``scan`` is that tree
    (content hashed as it was written, metadata checked on disk)."""

    path: Path
    size: int
    sha256: str
    members: int
    content_bytes: int
    scan: TreeScan


# --- writing --------------------------------------------------------------------------------


class _Out:
    """The caller's sink behind a hash and a count; header-sized pieces are gathered into
    chunks, so that a run of small files is not thousands of sink calls."""

    def __init__(self, sink: Callable[[bytes], object]) -> None:
        self.sink = sink
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.pending = bytearray()

    def write(self, data: bytes) -> None:
        if len(data) >= CHUNK:
            self.flush()
            self._emit(data)
            return
        self.pending += data
        if len(self.pending) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self._emit(bytes(self.pending))
            self.pending.clear()

    def _emit(self, data: bytes) -> None:
        self.sha256.update(data)
        self.size += len(data)
        self.sink(data)


def write_run_tar(run_dir: Path, sink: Callable[[bytes], object]) -> TarWritten:
    """Send a PAX tar of the folder ``run_dir`` to ``sink``, piece by piece as it is read.

    Memory stays at about two chunks (1 MiB each) whatever the files' sizes; ``sink``
    gets ``bytes`` it may keep. The folder is scanned first (lstat only), so a run that
    cannot be archived is refused before the first byte goes out.

    Raises:
        Invalid: ``run_dir`` is not a real folder, holds a FIFO, socket or device, or an
            extended attribute whose name a tar record cannot hold.
        Refused: something cannot be read, or the folder changed while it was read (then
            the sink has had bytes: abort the upload).
    """
    plan = fsops.scan_tree(run_dir, hash_content=False)
    _refuse_unkept(run_dir, plan)
    base = str(run_dir)
    attrs = {e.path: _xattr_records(base, e) for e in plan.entries if e.kind != "symlink"}
    out = _Out(sink)
    hashed: dict[str, str] = {}  # a hard-linked inode's first path → its content's sha256
    entries: list[Entry] = []
    for entry in plan.entries:
        full = _full(base, entry.path)
        if entry.kind == "file" and _is_link(entry):
            out.write(_header(entry, tarfile.LNKTYPE, entry.hardlink or "", {}))
            entry = dataclasses.replace(entry, sha256=hashed[entry.hardlink or ""])
        elif entry.kind == "file":
            out.write(_header(entry, tarfile.REGTYPE, "", attrs[entry.path]))
            entry = dataclasses.replace(entry, sha256=_send_file(full, entry, out))
            if entry.hardlink:
                hashed[entry.path] = entry.sha256 or ""
        elif entry.kind == "dir":
            out.write(_header(entry, tarfile.DIRTYPE, "", attrs[entry.path]))
        else:
            out.write(_header(entry, tarfile.SYMTYPE, entry.link or "", {}))
        entries.append(entry)
    out.write(_END_OF_ARCHIVE)
    out.write(b"\0" * (-(out.size + len(out.pending)) % _RECORD))
    out.flush()
    if fsops.scan_tree(run_dir, hash_content=False).metadata_digest != plan.metadata_digest:
        raise Refused(f"{shown(base)} changed while it was archived; its tar is not kept")
    return TarWritten(
        size=out.size,
        sha256=out.sha256.hexdigest(),
        members=len(entries),
        content_bytes=sum(e.size for e in entries if e.kind == "file" and not _is_link(e)),
        scan=_scan_of(entries),
    )


def _is_link(entry: Entry) -> bool:
    """A second (or later) path of an inode: a link member naming the first."""
    return entry.hardlink not in (None, entry.path)


def _refuse_unkept(run_dir: Path, plan: TreeScan) -> None:
    for entry in plan.entries:
        if entry.kind not in _KEPT_KINDS:
            raise Invalid(
                f"{shown(_full(str(run_dir), entry.path))} is a {entry.kind}; a run archived "
                "to a store holds only files, folders and links; nothing was archived"
            )


def _full(base: str, path: str) -> str:
    return base if path == "." else f"{base}/{path}"


def _xattr_records(base: str, entry: Entry) -> dict[str, str]:
    """The entry's extended attributes as PAX records; the value's bytes travel through
    ``surrogateescape`` (tarfile writes them back as they were)."""
    records = {}
    for name, value in fsops.read_xattrs(_full(base, entry.path)).items():
        if "=" in name or not is_utf8(name):
            raise Invalid(
                f"{shown(_full(base, entry.path))} has the extended attribute "
                f"'{shown(name)}', whose name a tar record cannot hold; nothing was archived"
            )
        records[XATTR_RECORD + name] = value.decode("utf-8", "surrogateescape")
    return records


def _header(entry: Entry, kind: bytes, link: str, records: dict[str, str]) -> bytes:
    info = tarfile.TarInfo(entry.path)
    info.type = kind
    info.mode = entry.mode
    info.size = entry.size if kind == tarfile.REGTYPE else 0
    info.linkname = link
    info.mtime = max(0, entry.mtime_ns // _NS)  # the exact time is the PAX record
    info.pax_headers = {"mtime": _mtime_text(entry.mtime_ns), **records}
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _mtime_text(ns: int) -> str:
    whole, fraction = divmod(abs(ns), _NS)
    return f"{'-' if ns < 0 else ''}{whole}.{fraction:09d}"


def _send_file(full: str, entry: Entry, out: _Out) -> str:
    """Send the file's content and its padding; its sha256. The file must still be what
    the scan saw (the header announced its size): a change is refused."""
    digest = hashlib.sha256()
    try:
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise Refused(f"cannot read {shown(full)}: {exc.strerror}") from exc
    try:
        _check_unchanged(fd, full, entry)
        left = entry.size
        while left:
            data = os.read(fd, min(CHUNK, left))
            if not data:
                break
            digest.update(data)
            out.write(data)
            left -= len(data)
        if left:
            raise Refused(f"{shown(full)} shrank while it was archived; its tar is not kept")
        _check_unchanged(fd, full, entry)
    except OSError as exc:
        raise Refused(f"cannot read {shown(full)}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    out.write(b"\0" * (-entry.size % _BLOCK))
    return digest.hexdigest()


def _check_unchanged(fd: int, full: str, entry: Entry) -> None:
    st = os.fstat(fd)
    if (stat.S_ISREG(st.st_mode), st.st_size, st.st_mtime_ns) != (True, entry.size, entry.mtime_ns):
        raise Refused(f"{shown(full)} changed while it was archived; its tar is not kept")


def _scan_of(entries: list[Entry]) -> TreeScan:
    # fsops owns how a scan and its digests are built from entries; reusing it keeps the
    # digests of a tar's tree and of a scanned folder the same by construction.
    return fsops._build_scan(entries, content_hashed=True)


# --- reading --------------------------------------------------------------------------------


class _Source:
    """The stream as tarfile reads it, hashed and counted as it goes, refused as soon as
    it passes ``limit``.

    tarfile reads it in its plain ``"r"`` mode, which asks for ``tell()`` and, to skip
    a member's padding, ``seek()`` forward; member contents are read past tarfile, by
    :meth:`content`, straight into the files (tarfile's stream mode copied every byte
    through its buffer three or four times with the GIL held). A seek backwards, or a
    single header record over :data:`MAX_RECORD`, refuses the tar. The last few chunks
    are kept to look at what follows the archive's end (tarfile stops at the first zero
    block and says nothing of the rest)."""

    MAX_RECORD = 1 << 20  # a PAX or GNU long-name record: names and xattrs, not data

    def __init__(self, source: BinaryIO, limit: int | None) -> None:
        self.source = source
        self.limit = limit
        self.sha256 = hashlib.sha256()
        self.count = 0
        self.recent: collections.deque[tuple[int, bytes]] = collections.deque()
        self.recent_bytes = 0

    def _some(self, size: int) -> bytes:
        """Up to ``size`` bytes (fewer only at the end of the stream or of a read)."""
        data = self.source.read(size)
        if not data:
            return b""
        self.sha256.update(data)
        self.recent.append((self.count, data))
        self.recent_bytes += len(data)
        while self.recent_bytes - len(self.recent[0][1]) >= 2 * CHUNK + 2 * _BLOCK:
            self.recent_bytes -= len(self.recent.popleft()[1])
        self.count += len(data)
        if self.limit is not None and self.count > self.limit:
            raise TarMismatch(f"the stream is longer than the expected {self.limit} bytes")
        return data

    def read(self, size: int = -1) -> bytes:
        """tarfile's reads (headers and their records): exactly ``size`` bytes, fewer
        only at the end of the stream."""
        if size < 0 or size > self.MAX_RECORD:
            raise TarMismatch(
                f"a tar header record of {size} bytes (over {self.MAX_RECORD}) is not one "
                "runyard writes; nothing was restored"
            )
        data = self._some(size)
        if len(data) == size or not data:
            return data
        pieces = [data]
        got = len(data)
        while got < size and (more := self._some(size - got)):
            pieces.append(more)
            got += len(more)
        return b"".join(pieces)

    def tell(self) -> int:
        return self.count

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Forward only: the bytes skipped are read (and hashed) like any other."""
        if whence != os.SEEK_SET or offset < self.count:
            raise TarMismatch("the tar asks to read back (not a tar runyard writes)")
        while self.count < offset:
            if not self._some(min(CHUNK, offset - self.count)):
                break  # the stream ended: tarfile's next read sees it
        return self.count

    def content(self, offset: int, size: int) -> Iterator[bytes]:
        """The ``size`` bytes of a member's content, which start at ``offset``."""
        self.seek(offset)
        left = size
        while left:
            data = self._some(min(CHUNK, left))
            if not data:
                raise TarMismatch("the stream ends inside a file (cut short?); nothing restored")
            left -= len(data)
            yield data

    def since(self, offset: int) -> bytes:
        """The bytes read from ``offset`` on (which must be among the recent ones)."""
        if self.recent and self.recent[0][0] > offset:
            raise TarMismatch("the end of the archive could not be checked")
        return b"".join(data[max(0, offset - start) :] for start, data in self.recent)


@dataclass
class _Folder:
    """A folder this unpacking made; its metadata is applied once its contents are in."""

    path: str
    mode: int
    mtime_ns: int
    xattrs: dict[str, bytes]


class _Unpacking:
    """The state of one unpacking into the private folder ``temp``."""

    def __init__(self, temp: Path) -> None:
        self.temp = temp
        self.root_fd = os.open(temp, _DIR_FLAGS)
        self.folders: dict[str, _Folder] = {}  # in the order they were made
        self.root: _Folder | None = None
        self.files: dict[str, Entry] = {}  # every file member, hard links too
        self.first_name: dict[str, str] = {}  # a hard link → the file member it names
        self.entries: list[Entry] = []
        self.seen: set[str] = set()
        self.content_bytes = 0
        self.unsynced: list[str] = []  # files written but not yet fsynced
        self._parent: tuple[str, int] | None = None  # the last parent opened, kept open

    def close(self) -> None:
        self._drop_parent()
        os.close(self.root_fd)

    def _drop_parent(self) -> None:
        if self._parent is not None:
            os.close(self._parent[1])
            self._parent = None

    def open_folder(self, path: str) -> int:
        """A descriptor of the folder ``path`` (relative; "" is the root), reached one
        component at a time without following a link; the caller closes it."""
        fd = os.dup(self.root_fd)
        try:
            for part in path.split("/") if path else []:
                inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = inner
        except BaseException:
            os.close(fd)
            raise
        return fd

    def parent_of(self, name: str) -> tuple[int, str]:
        """The descriptor of the member's folder (kept open for the next members, which
        usually share it) and the member's own name in it."""
        folder, _, base = name.rpartition("/")
        if folder and folder not in self.folders:
            _unsafe(name, f"its folder {_quoted(folder)} is not a folder made earlier in the tar")
        if self._parent is None or self._parent[0] != folder:
            self._drop_parent()
            self._parent = (folder, self.open_folder(folder))
        return self._parent[1], base

    def add(self, source: _Source, member: tarfile.TarInfo) -> None:
        name = _member_name(member)
        if name in self.seen:
            _unsafe(name, "it appears twice")
        self.seen.add(name)
        mode, mtime_ns = stat.S_IMODE(member.mode), _member_mtime_ns(member)
        xattrs = _member_xattrs(member)
        if member.isdir():
            folder = _Folder(name, mode, mtime_ns, xattrs)
            if name == ".":
                self.root = folder
            else:
                fd, base = self.parent_of(name)
                os.mkdir(base, 0o700, dir_fd=fd)  # private until its contents are in
                self.folders[name] = folder
            self.entries.append(Entry(name, "dir", mode, 0, mtime_ns))
        elif member.type in _FILE_TYPES:
            if member.sparse is not None:
                _unsafe(name, "it is a sparse file, which runyard never writes")
            fd, base = self.parent_of(name)
            entry = Entry(name, "file", mode, member.size, mtime_ns)
            entry = self._write_file(source, member, fd, base, entry, xattrs)
            self.files[name] = entry
            self.entries.append(entry)
            self.content_bytes += member.size
        elif member.issym():
            text = member.linkname
            if not text or "\0" in text:
                _unsafe(name, "its link text is empty or holds a NUL character")
            if xattrs:
                _cannot_keep(name, next(iter(xattrs)), "a symlink keeps none on Linux")
            fd, base = self.parent_of(name)
            os.symlink(text, base, dir_fd=fd)  # the text is data: never resolved here
            os.utime(base, ns=(mtime_ns, mtime_ns), dir_fd=fd, follow_symlinks=False)
            # Linux gives every link the mode 0o777, whatever a tar says.
            size = len(os.fsencode(text))
            self.entries.append(Entry(name, "symlink", 0o777, size, mtime_ns, link=text))
        elif member.islnk():
            self._link(name, member.linkname)
        else:
            _unsafe(name, f"it is a {_type_name(member)}, which a run never holds")

    def _write_file(
        self,
        source: _Source,
        member: tarfile.TarInfo,
        folder_fd: int,
        base: str,
        entry: Entry,
        xattrs: dict[str, bytes],
    ) -> Entry:
        digest = hashlib.sha256()
        fd = os.open(base, _NEW_FILE_FLAGS, 0o600, dir_fd=folder_fd)
        try:
            for data in source.content(member.offset_data, member.size):
                digest.update(data)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            _set_xattrs(entry.path, fd, xattrs)
            os.fchmod(fd, entry.mode)
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
            if entry.mode & stat.S_IRUSR:
                self.unsynced.append(entry.path)
            else:  # cannot be opened again to be synced later (unless by root)
                os.fsync(fd)
        finally:
            os.close(fd)
        return dataclasses.replace(entry, sha256=digest.hexdigest())

    def _link(self, name: str, target: str) -> None:
        """A hard link member: a second name of an earlier file member of this tar."""
        try:
            checked = _checked_name(target)
        except UnsafeMember:
            checked = None
        first = self.files.get(checked or "")
        if first is None:
            _unsafe(
                name, f"it is a hard link to {_quoted(target)}, not to a file earlier in the tar"
            )
        target_fd = self.open_folder(first.path.rpartition("/")[0])
        try:
            fd, base = self.parent_of(name)
            os.link(
                first.path.rpartition("/")[2],
                base,
                src_dir_fd=target_fd,
                dst_dir_fd=fd,
                follow_symlinks=False,
            )
        finally:
            os.close(target_fd)
        entry = dataclasses.replace(first, path=name, hardlink=None)
        self.first_name[name] = self.first_name.get(first.path, first.path)
        self.files[name] = entry
        self.entries.append(entry)

    def sync_files(self) -> None:
        """fsync the files written, once the stream has checked out: syncing each as it
        was written made every file wait for the disk in turn, while now the kernel has
        been writing them back all along (1 GiB of 1 MiB files: 1.2 to 1.5 times faster).

        Once synced, a file's pages are dropped from the page cache (as ``dd
        oflag=nocache`` does): a restored batch of cold runs is not read next, so it
        should not push out what the machine is using, and the next files' writes reuse
        those pages (restoring 1,000 runs of 1 MiB: 3.2 -> 1.2 s of kernel time)."""
        for path in self.unsynced:
            folder_fd, base = self.parent_of(path)
            fd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder_fd)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        self.unsynced.clear()

    def finish_folders(self) -> None:
        """Give every folder its xattrs, mode and mtime, deepest first (making an entry
        in a folder changes its mtime; a read-only folder takes no new entries), and
        fsync it; the root last."""
        for folder in reversed(self.folders.values()):
            fd = self.open_folder(folder.path)
            try:
                _finish(folder, fd)
            finally:
                os.close(fd)
        self._drop_parent()
        root = self.root or _Folder(".", 0o755, os.fstat(self.root_fd).st_mtime_ns, {})
        if self.root is None:  # a tar without a "." member: a plain folder
            self.entries.append(Entry(".", "dir", root.mode, 0, root.mtime_ns))
        _finish(root, self.root_fd)

    def scan(self) -> TreeScan:
        """The tree this tar made, hard links marked as ``fsops`` marks them."""
        groups: dict[str, list[int]] = {}
        for i, entry in enumerate(self.entries):
            if entry.kind == "file":
                first = self.first_name.get(entry.path, entry.path)
                groups.setdefault(first, []).append(i)
        fsops._mark_hardlinks(self.entries, groups.values())
        return _scan_of(self.entries)


def _finish(folder: _Folder, fd: int) -> None:
    _set_xattrs(folder.path, fd, folder.xattrs)
    os.fchmod(fd, folder.mode)
    os.utime(fd, ns=(folder.mtime_ns, folder.mtime_ns))
    os.fsync(fd)


def _set_xattrs(name: str, fd: int, xattrs: dict[str, bytes]) -> None:
    """Give an unpacked file or folder the attributes its tar holds; one the filesystem
    (or this user) cannot keep fails the restore rather than being silently lost. A tar
    without attributes never needs a filesystem that keeps them."""
    for key, value in xattrs.items():
        try:
            os.setxattr(fd, key, value)
        except OSError as exc:
            _cannot_keep(name, key, exc.strerror or str(exc))


def _cannot_keep(name: str, key: str, why: str) -> NoReturn:
    raise Refused(
        f"cannot give {shown(name)} its extended attribute {shown(key)} ({why}); "
        "nothing was restored",
        hint="restore onto a filesystem that keeps user extended attributes",
    )


def _unsafe(name: str, why: str) -> NoReturn:
    raise UnsafeMember(f"the tar member {_quoted(name)} is refused: {why}; nothing was restored")


def _quoted(name: str) -> str:
    """A member's name for a message: display form, a NUL written out, in quotes."""
    return "'" + shown(name).replace("\0", "\\x00") + "'"


def _checked_name(name: str) -> str:
    """The member's path if it stays inside the run: relative, no ``..``, ``.`` or empty
    component (``.`` alone is the run folder), no NUL."""
    if name == ".":
        return name
    if "\0" in name:
        _unsafe(name, "its name holds a NUL character")
    if name.startswith("/"):
        _unsafe(name, "its name is absolute")
    parts = name.split("/")
    if ".." in parts:
        _unsafe(name, "its name climbs out with '..'")
    if "" in parts or "." in parts:
        _unsafe(name, "its name has an empty or '.' component")
    return name


def _member_name(member: tarfile.TarInfo) -> str:
    name = _checked_name(member.name)  # tarfile has taken a folder's trailing "/" off
    if name == "." and not member.isdir():
        _unsafe(name, "the run folder itself must be a folder")
    return name


def _member_mtime_ns(member: tarfile.TarInfo) -> int:
    text = member.pax_headers.get("mtime")
    if text is None:
        return int(member.mtime) * _NS
    match = _MTIME_TEXT.fullmatch(text)
    if match is None:
        _unsafe(member.name, f"its mtime record {text!r} is not a time")
    sign, whole, fraction = match.groups()
    ns = int(whole) * _NS + int((fraction or "")[:9].ljust(9, "0"))
    return -ns if sign else ns


def _member_xattrs(member: tarfile.TarInfo) -> dict[str, bytes]:
    return {
        key[len(XATTR_RECORD) :]: value.encode("utf-8", "surrogateescape")
        for key, value in sorted(member.pax_headers.items())
        if key.startswith(XATTR_RECORD)
    }


_TYPE_NAMES = {
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "FIFO",
    tarfile.CONTTYPE: "contiguous file",
}


def _type_name(member: tarfile.TarInfo) -> str:
    return _TYPE_NAMES.get(member.type, f"member of type {member.type!r}")


def temp_prefix(target: Path) -> str:
    """The name every unpacking folder for ``target`` starts with (in its parent)."""
    name = os.fsencode(target.name)[:200]  # room for the prefix and suffix in NAME_MAX
    return f"{TEMP_PREFIX}{os.fsdecode(name)}-"


def leftover_unpackings(target: Path) -> list[Path]:
    """Unpacking folders for ``target`` that an interrupted restore left (``recover``
    removes them with ``fsops.remove_tree``)."""
    prefix = temp_prefix(target)
    try:
        with os.scandir(target.parent) as listing:
            found = [Path(e.path) for e in listing if _is_unpacking_of(e.name, prefix)]
    except FileNotFoundError:
        return []
    return sorted(found)


def _is_unpacking_of(name: str, prefix: str) -> bool:
    # Exactly the prefix and the random part: run "r1"'s prefix also begins "r1-x"'s.
    suffix = name[len(prefix) :] if name.startswith(prefix) else ""
    return len(suffix) == 2 * _TEMP_RANDOM_BYTES and all(c in "0123456789abcdef" for c in suffix)


def extract_run_tar(
    source: BinaryIO,
    target: Path,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    *,
    expected_digest: str | None = None,
) -> TarExtracted:
    """Unpack the tar read (sequentially) from ``source`` as the new folder ``target``.

    It is unpacked into a private folder beside ``target`` (see :data:`TEMP_PREFIX`),
    hashing the stream as it is read; only once the whole stream was read and matches
    ``expected_sha256``/``expected_size`` (and its tree ``expected_digest``, a scan
    digest, full or metadata-only) is it fsynced and renamed to ``target``. On any
    failure the private folder is removed and ``target`` is untouched.

    Raises:
        Conflict: ``target`` exists (checked first and again at the rename).
        NotFound: ``target``'s parent folder does not exist.
        UnsafeMember: a member is absolute, climbs out, goes through a link or a folder
            the tar did not make first, appears twice, hard-links to anything but an
            earlier file of the tar, or is a device, FIFO or other special member.
        TarMismatch: not a tar, cut short, longer, data after its end, a different
            SHA-256, size or tree, or a tree the filesystem did not keep exactly.
        Refused: an extended attribute cannot be set, or writing failed.
    """
    if os.path.lexists(target):
        raise Conflict(f"{shown(str(target))} already exists; runyard never overwrites")
    if not target.parent.is_dir():
        raise NotFound(f"{shown(str(target.parent))} does not exist; nothing was restored")
    temp = target.parent / f"{temp_prefix(target)}{secrets.token_hex(_TEMP_RANDOM_BYTES)}"
    try:
        os.mkdir(temp, 0o700)
    except OSError as exc:  # outside the clean-up below: that name may be someone else's
        raise Refused(f"cannot unpack beside {shown(str(target))}: {exc.strerror}") from exc
    reader = _Source(source, expected_size)
    try:
        crashpoint("runtar:unpacking")
        unpacking = _Unpacking(temp)
        try:
            members = _unpack(reader, unpacking)
            _check_stream(reader, target, expected_sha256, expected_size)
            crashpoint("runtar:unpacked")
            unpacking.sync_files()
            unpacking.finish_folders()
            scan = unpacking.scan()
        finally:
            unpacking.close()
        _check_tree(temp, scan, target, expected_digest)
        crashpoint("runtar:synced")
        fsops.rename_noreplace(temp, target)
        crashpoint("runtar:renamed")
        fsops.fsync_dir(target.parent)
    except BaseException as exc:
        _discard(temp)
        if isinstance(exc, OSError):
            raise Refused(f"unpacking {shown(str(target))} failed: {exc}") from exc
        raise
    return TarExtracted(
        path=target,
        size=reader.count,
        sha256=reader.sha256.hexdigest(),
        members=members,
        content_bytes=unpacking.content_bytes,
        scan=scan,
    )


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while (member := tar.next()) is not None:
        # A TarFile keeps every member it read; runs can have many.
        tar.members.clear()  # type: ignore[attr-defined]
        yield member


def _unpack(reader: _Source, unpacking: _Unpacking) -> int:
    """Make every member; the number made. Stops at the archive's end, which must be
    followed by nothing but zeros (the end marker and its padding)."""
    count = 0
    try:
        with tarfile.open(
            fileobj=cast(BinaryIO, reader),  # read, tell and forward seeks: see _Source
            mode="r:",
            encoding="utf-8",
            errors="surrogateescape",
        ) as tar:
            for member in _members(tar):
                unpacking.add(reader, member)
                count += 1
            end = tar.offset
    except tarfile.TarError as exc:
        raise TarMismatch(f"the stream is not a whole tar ({exc}); nothing was restored") from exc
    _check_end(reader, end)
    if not count:  # even an empty run has its folder's own member
        raise TarMismatch("the stream is an empty tar, not a run's; nothing was restored")
    return count


def _check_end(reader: _Source, end: int) -> None:
    """What follows the last member is the end-of-archive marker (two zero blocks) and
    zero padding, up to the end of the stream: tarfile also stops, silently, at a
    header cut short or garbled, which a stream cut at a member's end looks like."""
    tail = reader.since(end)
    while True:
        if tail.count(0) != len(tail):
            raise TarMismatch("the stream holds data after the tar's end; nothing was restored")
        tail = reader.read(CHUNK)
        if not tail:
            break
    if reader.count - end < len(_END_OF_ARCHIVE):
        raise TarMismatch(
            "the stream ends before the tar's end marker (cut short?); nothing was restored"
        )


def _check_stream(
    reader: _Source, target: Path, expected_sha256: str | None, expected_size: int | None
) -> None:
    if expected_size is not None and reader.count != expected_size:
        raise TarMismatch(
            f"the tar of {shown(str(target))} is {reader.count} bytes, not the expected "
            f"{expected_size}; nothing was restored"
        )
    found = reader.sha256.hexdigest()
    if expected_sha256 is not None and found != expected_sha256.lower():
        raise TarMismatch(
            f"the tar of {shown(str(target))} has the SHA-256 {found}, not the expected "
            f"{expected_sha256}; nothing was restored"
        )


def _check_tree(temp: Path, scan: TreeScan, target: Path, expected_digest: str | None) -> None:
    """The folder on disk has every entry, mode, mtime and link the tar holds (a
    filesystem without nanosecond times, say, would not), and agrees with the digest."""
    on_disk = fsops.scan_tree(temp, hash_content=False)
    if on_disk.metadata_digest != scan.metadata_digest:
        bad = ", ".join(shown(p) for p in on_disk.differences(scan)) or "?"
        raise TarMismatch(
            f"the unpacked tree of {shown(str(target))} is not what its tar holds "
            f"(first differences: {bad}); nothing was restored"
        )
    if expected_digest is not None and not scan.agrees_with(expected_digest):
        raise TarMismatch(
            f"the tree in the tar of {shown(str(target))} is {scan.digest}, not the "
            f"recorded {expected_digest}; nothing was restored"
        )


def _discard(temp: Path) -> None:
    """Remove the private folder of a failed unpacking (a second failure is not allowed
    to hide the first)."""
    try:
        if os.path.lexists(temp):
            fsops.remove_tree(temp)
        fsops.fsync_dir(temp.parent)
    except (OSError, RunyardError):
        pass
