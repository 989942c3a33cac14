"""Putting a file or a folder into a run's folder: ``run.upload(path, dest=None)``.

The same rules as a run's artifacts: the destination is a relative path inside the run
(no ``..``, nothing absolute), never reached through a symlink, and an existing file is
not replaced unless asked. A folder's symlinks are copied as links (never followed),
its empty folders, modes and modification times kept; FIFOs, sockets and devices are
refused before anything is copied. The copy is made under a temporary name beside its
destination and renamed into place, so a crash leaves no half-copied file or folder
under the destination's name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import stat
from collections.abc import AsyncIterable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import anyio

from runyard.errors import Conflict, Invalid, NotFound
from runyard.fsnames import shown
from runyard.manifest import MANIFEST_NAME

TEMP_PREFIX = ".runyard-upload-"


def destination(run_dir: Path, dest: str) -> Path:
    """``dest`` inside ``run_dir``, refused when it would leave it or cross a symlink."""
    parts = _parts(dest)
    here = run_dir
    for part in parts[:-1]:
        here = here / part
        if here.is_symlink():
            raise Invalid(f"the destination's folder {shown(str(here))} is a symlink")
        if here.exists() and not here.is_dir():
            raise Conflict(f"{shown(str(here))} exists and is not a folder")
    target = run_dir.joinpath(*parts)
    if target.is_symlink():
        raise Conflict(f"{shown(str(target))} is a symlink; it is never written through")
    return target


def _check_source(source: Path) -> None:
    """Refuse a source holding what cannot be uploaded (before copying anything)."""
    try:
        st = os.lstat(source)
    except FileNotFoundError:
        raise NotFound(f"nothing to upload at {shown(str(source))}") from None
    if stat.S_ISLNK(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        for folder, dirs, files in os.walk(source):
            for name in [*dirs, *files]:
                mode = os.lstat(os.path.join(folder, name)).st_mode
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                    path = shown(os.path.join(folder, name))
                    raise Invalid(f"{path} is not a file, a folder or a link; not uploaded")
        return
    if not stat.S_ISREG(st.st_mode):
        raise Invalid(f"{shown(str(source))} is not a file, a folder or a link; not uploaded")


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def upload(
    run_dir: Path, source: Path | str, dest: str | None = None, replace: bool = False
) -> Path:
    """Copy ``source`` (a file, a folder or a link) into ``run_dir`` at ``dest`` (default:
    the source's own name); the path it now has. Conflict when ``dest`` exists and
    ``replace`` is false."""
    source = Path(source)
    if not run_dir.is_dir() or run_dir.is_symlink():
        raise NotFound(f"the run folder {shown(str(run_dir))} is missing")
    _check_source(source)
    target = destination(run_dir, dest if dest is not None else source.name)
    if os.path.lexists(target) and not replace:
        raise Conflict(
            f"{shown(str(target.relative_to(run_dir)))} already exists in the run",
            hint="choose another destination, or pass replace=True",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f"{TEMP_PREFIX}{secrets.token_hex(6)}-{target.name}")
    try:
        if source.is_symlink():
            os.symlink(os.readlink(source), temp)
        elif source.is_dir():
            shutil.copytree(source, temp, symlinks=True)
            shutil.copystat(source, temp)
        else:
            shutil.copy2(source, temp)
        if os.path.lexists(target):  # replace=True: the old one goes only now
            _remove(target)
        os.replace(temp, target)
    except BaseException:
        _remove(temp)
        raise
    return target


# --- the web API's uploads: one file, folder or link at a time, from a stream ---------

MAX_LINK_BYTES = 4096
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_KINDS = ("file", "dir", "symlink")


class TooLarge(Invalid):
    """A body over the upload limit (the web API answers 413)."""

    code = "too_large"


@dataclass(frozen=True)
class Stored:
    """What a streamed upload put in the run's folder."""

    path: str
    kind: str
    size: int
    sha256: str | None  # None for a folder


def _parts(dest: str) -> list[str]:
    """``dest``'s parts, by ``destination``'s rules (which raise on a bad one)."""
    if not dest or "\x00" in dest:
        raise Invalid("an upload's destination cannot be empty or hold a NUL character")
    relative = PurePosixPath(dest)
    if relative.is_absolute() or ".." in relative.parts:
        raise Invalid(
            f"the destination {shown(dest)!r} must be a relative path inside the run "
            "(no '..', not absolute)"
        )
    parts = [p for p in relative.parts if p not in ("", ".")]
    if not parts:
        raise Invalid(f"the destination {shown(dest)!r} names no file")
    return parts


def _open_folder(run_dir: Path, parts: Sequence[str]) -> int:
    """A descriptor of the folder ``parts`` inside ``run_dir``, made where missing and
    reached without following any symlink (``O_NOFOLLOW`` at each step, relative to
    the previous one): a folder swapped for a link meanwhile is refused, not followed."""
    try:
        fd = os.open(run_dir, _DIR_FLAGS)
    except OSError:
        raise NotFound(f"the run folder {shown(str(run_dir))} is missing") from None
    try:
        for depth, part in enumerate(parts):
            where = shown("/".join(parts[: depth + 1]))
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            try:
                inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                found = _existing(fd, part)
                if exc.errno == errno.ELOOP or (found and stat.S_ISLNK(found.st_mode)):
                    raise Invalid(f"the destination's folder {where} is a symlink") from None
                raise Conflict(f"{where} exists and is not a folder") from None
            os.close(fd)
            fd = inner
        return fd
    except BaseException:
        os.close(fd)
        raise


def _existing(folder: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _sha256_of(folder: int, name: str) -> str:
    digest = hashlib.sha256()
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder)
    with os.fdopen(fd, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class StreamedUpload:
    """One upload into a run's folder, fed chunk by chunk: ``open`` checks the path and
    what is there, ``write`` appends to a temporary file (counting against ``limit`` and
    hashing), ``commit`` fsyncs and renames it into place, ``abort`` removes it. Used as
    a context manager, anything but a commit leaves no temporary file behind.

    Args:
        replace: an existing file may be replaced (never a folder nor a link).
        same_ok: an existing entry with the same content is a success, not a conflict
            (a retried upload).
    """

    def __init__(
        self,
        run_dir: Path,
        dest: str,
        *,
        kind: str = "file",
        limit: int,
        replace: bool = False,
        same_ok: bool = False,
        mode: int | None = None,
        mtime: float | None = None,
    ) -> None:
        if kind not in _KINDS:
            raise Invalid(f"kind must be one of {', '.join(_KINDS)} (got {kind!r})")
        if mode is not None and not 0 <= mode <= 0o7777:
            raise Invalid(f"mode must be an octal permission between 0 and 7777 (got {mode:o})")
        if mtime is not None and not (-(2**40) < mtime < 2**40):
            raise Invalid("mtime must be seconds since 1970, within a sane range")
        self.parts = _parts(dest)
        if self.parts == [MANIFEST_NAME]:
            raise Invalid(f"{MANIFEST_NAME} is the run's manifest: runyard writes it, not uploads")
        self.dest = "/".join(self.parts)
        self.run_dir = run_dir
        self.kind = kind
        self.limit = MAX_LINK_BYTES if kind == "symlink" else limit
        self.replace = replace
        self.same_ok = same_ok
        self.mode = mode
        self.mtime = mtime
        self.name = self.parts[-1]
        self.temp = f"{TEMP_PREFIX}{secrets.token_hex(6)}"
        self.size = 0
        self.hash = hashlib.sha256()
        self.link = bytearray()
        self.folder: int | None = None
        self.fd: int | None = None

    def __enter__(self) -> StreamedUpload:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()

    def open(self) -> None:
        self.folder = _open_folder(self.run_dir, self.parts[:-1])
        found = _existing(self.folder, self.name)
        if found is not None:
            if stat.S_ISDIR(found.st_mode) and not (self.kind == "dir" and self.same_ok):
                raise Conflict(f"{shown(self.dest)} is a folder in the run; it is not replaced")
            if stat.S_ISLNK(found.st_mode) and not (self.kind == "symlink" and self.same_ok):
                raise Conflict(f"{shown(self.dest)} is a symlink; it is never written through")
            if not stat.S_ISDIR(found.st_mode) and not (self.replace or self.same_ok):
                raise Conflict(
                    f"{shown(self.dest)} already exists in the run",
                    hint="choose another path, or replace=true while the run is running",
                )
        if self.kind == "file":
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            self.fd = os.open(self.temp, flags, 0o600, dir_fd=self.folder)

    def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if self.size > self.limit:
            what = "a link's target" if self.kind == "symlink" else "an uploaded file"
            raise TooLarge(f"{what} is at most {self.limit} bytes")
        if self.kind == "dir":
            raise Invalid("a folder's upload has an empty body")
        self.hash.update(chunk)
        if self.kind == "symlink":
            self.link += chunk
            return
        assert self.fd is not None
        view = memoryview(chunk)
        while view:
            view = view[os.write(self.fd, view) :]

    def commit(self) -> Stored:
        """Put the upload in place (durably) and say what it is."""
        folder = self.folder
        assert folder is not None
        sha = None if self.kind == "dir" else self.hash.hexdigest()
        stored = Stored(path=self.dest, kind=self.kind, size=self.size, sha256=sha)
        found = _existing(folder, self.name)
        if found is not None and self.same_ok and self._same(found, sha):
            return stored
        if found is not None and (
            stat.S_ISDIR(found.st_mode) or stat.S_ISLNK(found.st_mode) or not self.replace
        ):
            raise Conflict(f"{shown(self.dest)} already exists in the run (with other content)")
        if self.kind == "dir":
            os.mkdir(self.temp, 0o755 if self.mode is None else self.mode, dir_fd=folder)
        elif self.kind == "symlink":
            target = bytes(self.link)
            if not target or b"\x00" in target:
                raise Invalid("a link's target (the body) cannot be empty or hold a NUL byte")
            os.symlink(target, self.temp, dir_fd=folder)
        else:
            assert self.fd is not None
            os.fchmod(self.fd, 0o644 if self.mode is None else self.mode)
            if self.mtime is not None:
                os.utime(self.fd, (self.mtime, self.mtime))
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = None
        if self.kind == "dir" and self.mtime is not None:
            os.utime(self.temp, (self.mtime, self.mtime), dir_fd=folder)
        os.rename(self.temp, self.name, src_dir_fd=folder, dst_dir_fd=folder)
        os.fsync(folder)
        return stored

    def _same(self, found: os.stat_result, sha: str | None) -> bool:
        assert self.folder is not None
        if self.kind == "dir":
            return stat.S_ISDIR(found.st_mode)
        if self.kind == "symlink":
            return stat.S_ISLNK(found.st_mode) and (
                os.readlink(self.name, dir_fd=self.folder) == os.fsdecode(bytes(self.link))
            )
        return stat.S_ISREG(found.st_mode) and _sha256_of(self.folder, self.name) == sha

    def abort(self) -> None:
        """Remove the temporary file if it is still there, and close what is open."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.folder is not None:
            for remove in (os.unlink, os.rmdir):
                try:
                    remove(self.temp, dir_fd=self.folder)
                    break
                except OSError:
                    continue
            os.close(self.folder)
            self.folder = None


def upload_stream(
    run_dir: Path, dest: str, chunks: Iterable[bytes], *, limit: int, **options: Any
) -> Stored:
    """Write ``chunks`` into ``run_dir`` at ``dest`` (see ``StreamedUpload``)."""
    with StreamedUpload(run_dir, dest, limit=limit, **options) as upload:
        for chunk in chunks:
            upload.write(chunk)
        return upload.commit()


async def upload_async_stream(
    run_dir: Path, dest: str, chunks: AsyncIterable[bytes], *, limit: int, **options: Any
) -> Stored:
    """``upload_stream`` for an asynchronous stream (a web request's body): each chunk
    is written as it arrives, the fsync and rename run in a worker thread."""
    with StreamedUpload(run_dir, dest, limit=limit, **options) as upload:
        async for chunk in chunks:
            upload.write(chunk)
        return await anyio.to_thread.run_sync(upload.commit)
