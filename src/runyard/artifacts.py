"""The files of a run's directory: listed without following links, served only from inside.

A run folder is written by whatever the run executed, so nothing in it is trusted: a
listing never follows a symlink (a link to ``/`` must not list the machine), and a
path asked for by a user is checked component by component, then resolved and kept
only if it lands on a regular file inside the run's own directory.
"""

from __future__ import annotations

import mimetypes
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from runyard.errors import Invalid, NotFound, Refused
from runyard.models import FrozenModel

DEFAULT_LIMIT = 1000
PATH_MAX_LENGTH = 4096
DEFAULT_MEDIA_TYPE = "application/octet-stream"
DIRECTORY_MEDIA_TYPE = "inode/directory"
# What runs write most; pinned so that the answer does not depend on the host's
# mime.types (which knows .md as text/markdown, and .log not at all).
_MEDIA_TYPES = {
    ".json": "application/json",
    ".csv": "text/csv",
    ".log": "text/plain",
    ".txt": "text/plain",
    ".md": "text/plain",
}


class Artifact(FrozenModel):
    """One entry of a run's directory; ``size`` is 0 for folders and links."""

    path: str
    size: int
    modified_at: datetime
    kind: Literal["file", "symlink", "dir"]
    link_target: str | None = None
    media_type: str


def media_type(name: str) -> str:
    """The media type a file of this name is served as."""
    suffix = os.path.splitext(name)[1].lower()
    if suffix in _MEDIA_TYPES:
        return _MEDIA_TYPES[suffix]
    guessed, _encoding = mimetypes.guess_type(name, strict=False)
    return guessed or DEFAULT_MEDIA_TYPE


def _artifact(entry: os.DirEntry[str], rel: str) -> Artifact | None:
    try:
        st = entry.stat(follow_symlinks=False)
        target = os.readlink(entry.path) if stat.S_ISLNK(st.st_mode) else None
    except OSError:
        return None  # gone since the folder was read, or unreadable: not listed
    kind: Literal["file", "symlink", "dir"]
    if stat.S_ISLNK(st.st_mode):
        kind, size, media = "symlink", 0, media_type(entry.name)
    elif stat.S_ISDIR(st.st_mode):
        kind, size, media = "dir", 0, DIRECTORY_MEDIA_TYPE
    else:
        kind, size, media = "file", st.st_size, media_type(entry.name)
    return Artifact(
        path=rel,
        size=size,
        modified_at=datetime.fromtimestamp(st.st_mtime, tz=UTC),
        kind=kind,
        link_target=target,
        media_type=media,
    )


def _sorted_entries(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError:
        return []  # unreadable folder: listed itself, its contents not


def list_artifacts(run_dir: Path, limit: int = DEFAULT_LIMIT) -> tuple[list[Artifact], bool]:
    """The entries under ``run_dir`` in path order (a folder before its contents).

    Symlinks are listed with their text and never followed. Returns the entries and
    whether the listing stopped at ``limit``; a missing folder lists nothing.
    """
    if limit < 1:
        raise Invalid(f"limit must be at least 1 (got {limit})")
    refuse_swapped_folder(run_dir)
    if not run_dir.is_dir():
        return [], False
    out: list[Artifact] = []
    # Depth first, names sorted at each level: the listing can stop at `limit` without
    # having read the rest of a large tree.
    stack: list[tuple[str, list[os.DirEntry[str]]]] = [("", _sorted_entries(str(run_dir))[::-1])]
    while stack:
        prefix, pending = stack[-1]
        if not pending:
            stack.pop()
            continue
        entry = pending.pop()
        rel = f"{prefix}{entry.name}"
        item = _artifact(entry, rel)
        if item is None:
            continue
        if len(out) == limit:
            return out, True
        out.append(item)
        if item.kind == "dir":
            stack.append((f"{rel}/", _sorted_entries(entry.path)[::-1]))
    return out, False


def refuse_swapped_folder(run_dir: Path) -> None:
    """Refused when the run's folder itself is a symlink: swapped behind runyard's back,
    its target may be anywhere, and nothing there is the run's to list or serve."""
    if run_dir.is_symlink():
        raise Refused(
            f"the folder of this run ({run_dir}) was replaced by a symlink; runyard does "
            "not follow it",
            hint="`runyard check` reports it (swapped_for_symlink); put the real folder back",
        )


def check_relative_path(rel_path: str) -> list[str]:
    """The components of a user-given path inside a run, or Invalid saying what is wrong."""
    if not rel_path:
        raise Invalid("an artifact path cannot be empty")
    if len(rel_path) > PATH_MAX_LENGTH:
        raise Invalid(f"an artifact path is at most {PATH_MAX_LENGTH} characters")
    if "\x00" in rel_path:
        raise Invalid("an artifact path cannot contain a NUL character")
    if "\\" in rel_path:
        raise Invalid(f"artifact path {rel_path!r} contains a backslash; use '/'")
    if rel_path.startswith("/"):
        raise Invalid(f"artifact path {rel_path!r} is absolute; give it relative to the run")
    parts = rel_path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            shown = "an empty component" if not part else f"a {part!r} component"
            raise Invalid(f"artifact path {rel_path!r} has {shown}")
    return parts


def _resolve(path: Path, what: str) -> Path:
    try:
        return path.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"no {what}") from None
    except (OSError, RuntimeError) as exc:  # a symlink loop, a folder we may not enter
        raise Refused(f"cannot resolve {what}: {exc}") from None


def resolve_artifact(run_dir: Path, rel_path: str) -> Path:
    """The real path of the regular file ``rel_path`` names inside ``run_dir``.

    Symlinks are followed only while they stay inside the run's directory (its real
    path). Invalid for a malformed path or one that is not a regular file, NotFound
    for a missing one, Refused for one that leads outside.
    """
    parts = check_relative_path(rel_path)
    refuse_swapped_folder(run_dir)
    root = _resolve(run_dir, f"run directory {run_dir}")
    target = _resolve(run_dir.joinpath(*parts), f"artifact {rel_path!r} in this run")
    if not target.is_relative_to(root):
        raise Refused(f"artifact {rel_path!r} leads outside the run's directory")
    try:
        mode = target.stat().st_mode
    except OSError as exc:
        raise NotFound(f"no artifact {rel_path!r} in this run ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise Invalid(f"artifact {rel_path!r} is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise Invalid(f"artifact {rel_path!r} is not a regular file")
    return target
