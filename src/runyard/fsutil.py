"""Small filesystem primitives that never leave a half-written file behind."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from runyard.errors import Invalid


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync, rename.

    A crash at any point leaves either the old file or the new one, never a mix.
    """
    # Unique per call: two threads (or processes) may write the same file at once.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a folder",
}


def not_regular(mode: int) -> str | None:
    """What a file of this ``st_mode`` is when it is not a regular file ("a FIFO" …)."""
    if stat.S_ISREG(mode):
        return None
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def read_regular_file(path: Path | str, what: str, max_bytes: int, offset: int = 0) -> bytes:
    """The bytes of a regular file, never blocking on anything else.

    The type is checked before opening (``stat``: a FIFO, socket, device or folder is
    refused without being opened, since opening a FIFO waits for a writer), the file is
    opened with ``O_NONBLOCK`` and checked again with ``fstat`` (it may have been swapped
    in between), and at most ``max_bytes + 1`` bytes are read: the caller sees that it is
    larger than the limit without reading it whole (reading starts at ``offset``).
    Raises Invalid for a file that is not a regular file; OSError
    (``FileNotFoundError`` …) as the OS says.
    """
    kind = not_regular(os.stat(path).st_mode)
    if kind:
        raise Invalid(f"{what}: {kind}, not a regular file; it was not read")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        kind = not_regular(os.fstat(fd).st_mode)
        if kind:
            raise Invalid(f"{what}: {kind}, not a regular file; it was not read")
        if offset:
            os.lseek(fd, offset, os.SEEK_SET)
        chunks: list[bytes] = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def tree_bytes(path: Path | str) -> int | None:
    """The bytes of the regular files and links under ``path`` (never following a link,
    never opening a file), or None when ``path`` is not a readable folder. What the
    registry records as a run's size; a folder that changes meanwhile gives what was seen.
    """
    total = 0
    stack = [os.fspath(path)]
    try:
        if not os.path.isdir(stack[0]) or os.path.islink(stack[0]):
            return None
    except OSError:
        return None
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            if folder == os.fspath(path):
                return None
    return total
