"""``run.upload(path, dest=None)`` against a server: a file, a link or a whole folder sent
entry by entry (``PUT /runs/{id}/files/…``), with the local rules of ``runyard.uploads``.

The source is checked before anything is sent (only files, folders and links; FIFOs,
sockets and devices are refused). Links are sent as links (their target's bytes, never
followed), folders as folders (empty ones too), files streamed in chunks with their
mode and modification time. A name that is not UTF-8 travels as its exact bytes
(``path_b64``). The destination's own entry goes first, so an existing one is a
Conflict before anything under it is written (unless ``replace``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from runyard.errors import Invalid, NotFound
from runyard.fsnames import shown
from runyard.remote.client import Client, file_chunks


def _relative_dest(dest: str) -> bytes:
    """``dest`` as the bytes of a relative path; refused like a local destination."""
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
    return b"/".join(os.fsencode(p) for p in parts)


def _check_source(source: bytes) -> os.stat_result:
    try:
        st = os.lstat(source)
    except FileNotFoundError:
        raise NotFound(f"nothing to upload at {shown(os.fsdecode(source))}") from None
    if stat.S_ISDIR(st.st_mode):
        for folder, dirs, files in os.walk(source):
            for name in [*dirs, *files]:
                mode = os.lstat(os.path.join(folder, name)).st_mode
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                    path = shown(os.fsdecode(os.path.join(folder, name)))
                    raise Invalid(f"{path} is not a file, a folder or a link; not uploaded")
    elif not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        path = shown(os.fsdecode(source))
        raise Invalid(f"{path} is not a file, a folder or a link; not uploaded")
    return st


def _send(
    client: Client, run_id: str, source: bytes, target: bytes, st: os.stat_result, replace: bool
) -> None:
    mode, mtime = stat.S_IMODE(st.st_mode), st.st_mtime
    if stat.S_ISLNK(st.st_mode):
        link = os.readlink(source)
        client.put_file(run_id, target, kind="symlink", body=link, size=len(link), replace=replace)
    elif stat.S_ISDIR(st.st_mode):
        client.put_file(run_id, target, kind="dir", body=b"", size=0, replace=replace, mode=mode)
    else:
        client.put_file(
            run_id,
            target,
            body=file_chunks(source),
            size=st.st_size,
            replace=replace,
            mode=mode,
            mtime=mtime,
        )


def upload(
    client: Client,
    run_id: str,
    source: str | Path,
    dest: str | None = None,
    replace: bool = False,
) -> PurePosixPath:
    """Send ``source`` into run ``run_id``'s folder at ``dest`` (default: the source's
    name); the path it has there, relative to the run's folder."""
    raw = os.fsencode(source)
    st = _check_source(raw)
    name = os.path.basename(raw.rstrip(b"/")) or raw
    target = _relative_dest(dest if dest is not None else os.fsdecode(name))
    _send(client, run_id, raw, target, st, replace)
    if stat.S_ISDIR(st.st_mode):
        for folder, dirs, files in os.walk(raw):
            dirs.sort()
            inside = os.path.relpath(folder, raw)
            base = target if inside == b"." else target + b"/" + inside
            for entry in [*dirs, *sorted(files)]:
                path = os.path.join(folder, entry)
                _send(client, run_id, path, base + b"/" + entry, os.lstat(path), replace)
    return PurePosixPath(os.fsdecode(target))
