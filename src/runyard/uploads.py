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

import os
import secrets
import shutil
import stat
from pathlib import Path, PurePosixPath

from runyard.errors import Conflict, Invalid, NotFound
from runyard.fsnames import shown

TEMP_PREFIX = ".runyard-upload-"


def destination(run_dir: Path, dest: str) -> Path:
    """``dest`` inside ``run_dir``, refused when it would leave it or cross a symlink."""
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
