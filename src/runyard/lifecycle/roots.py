"""The roots every move happens between: real folders, never symlinks.

A runs root or archive root that is a symlink would make every move go wherever the
link points today, and a root swapped for a link behind runyard's back would make
restore write through it. runyard refuses both (rather than resolving the link once):
archive, restore, recover, retention and purge stop before they plan anything, and
``check`` lists the root as ``symlinked_root``. The fix is one line of ``runyard.toml``:
point the root at the real folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from runyard.config import Settings
from runyard.errors import Refused


def symlinked_roots(settings: Settings) -> list[tuple[str, Path, str]]:
    """(setting name, path, where it points) of each root that is a symlink."""
    found = []
    for name, path in (
        ("runs_root", settings.runs_root),
        ("archive_root", settings.archive_root),
        ("logs_dir", settings.logs_dir),
    ):
        if os.path.islink(path):
            found.append((name, path, os.readlink(path)))
    return found


def require_real_roots(settings: Settings) -> None:
    """Refused when a root that runs move between (or reports go to) is a symlink."""
    found = symlinked_roots(settings)
    if found:
        name, path, target = found[0]
        raise Refused(
            f"{name} {path} is a symlink (to {target}); runyard moves and deletes runs "
            "only between real folders, and does not follow it",
            hint=f"set {name} in runyard.toml to the real folder ({os.path.realpath(path)})",
        )
