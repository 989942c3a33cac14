"""Run-folder trees for tests: a hypothesis strategy and a builder that writes one to disk.

A tree is described before it exists (``DirSpec``), so the same description can be
built twice and give two byte-identical folders, and so that hypothesis can shrink
it. Link targets are described by kind and rendered at build time, because the
folder outside the tree they may point to only has a path then.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

LINK_KINDS = ("outside_abs", "outside_rel", "dangling_abs", "dangling_rel", "inside", "text")


@dataclass(frozen=True)
class FileSpec:
    content: bytes
    mode: int
    mtime_ns: int


@dataclass(frozen=True)
class LinkSpec:
    """A symlink; ``text`` is its literal target when ``kind`` is ``"text"``."""

    kind: str
    mtime_ns: int
    text: str = "x"


@dataclass(frozen=True)
class DirSpec:
    children: dict[str, FileSpec | LinkSpec | DirSpec] = field(default_factory=dict)
    mode: int = 0o755
    mtime_ns: int = 1_500_000_000_000_000_000


Node = FileSpec | LinkSpec | DirSpec

names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/\x00"), min_size=1, max_size=10
).filter(lambda name: name not in {".", ".."})
mtimes = st.integers(min_value=10**18, max_value=2 * 10**18)  # 2001 .. 2033, in ns
file_modes = st.sampled_from([0o600, 0o644, 0o755, 0o444, 0o400, 0o640])
# Subfolders may be read-only; the root stays owner-writable because moving a
# folder to another parent rewrites its ``..`` entry, which needs write permission.
dir_modes = st.sampled_from([0o755, 0o700, 0o555, 0o750])
root_modes = st.sampled_from([0o755, 0o700, 0o750])
link_texts = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=20
)

files = st.builds(FileSpec, st.binary(max_size=3000), file_modes, mtimes)
links = st.builds(LinkSpec, st.sampled_from(LINK_KINDS), mtimes, link_texts)


def _dirs(children: st.SearchStrategy[Node]) -> st.SearchStrategy[DirSpec]:
    return st.builds(DirSpec, st.dictionaries(names, children, max_size=4), dir_modes, mtimes)


nodes: st.SearchStrategy[Node] = st.recursive(
    files | links | _dirs(st.nothing()), _dirs, max_leaves=12
)


def _root(children: dict[str, Node], mode: int, mtime_ns: int) -> DirSpec:
    """Every tree has the first seed's ``capcut_draft``: an absolute link to a folder outside."""
    return DirSpec({**children, "capcut_draft": LinkSpec("outside_abs", mtime_ns)}, mode, mtime_ns)


trees = st.builds(_root, st.dictionaries(names, nodes, max_size=6), root_modes, mtimes)


def link_text(link: LinkSpec, folder: Path, outside: Path) -> str:
    """The text of a link living in ``folder``."""
    return {
        "outside_abs": str(outside),
        "outside_rel": os.path.relpath(outside, folder),
        "dangling_abs": "/nonexistent-runyard-test/target",
        "dangling_rel": "no-such-entry",
        "inside": ".",
        "text": link.text,
    }[link.kind]


def build(spec: DirSpec, root: Path, outside: Path) -> None:
    """Write ``spec`` at ``root`` (which must not exist); folder times are set last."""
    os.mkdir(root)
    for name, child in spec.children.items():
        path = root / name
        if isinstance(child, FileSpec):
            path.write_bytes(child.content)
            os.chmod(path, child.mode)
            os.utime(path, ns=(child.mtime_ns, child.mtime_ns))
        elif isinstance(child, LinkSpec):
            os.symlink(link_text(child, root, outside), path)
            os.utime(path, ns=(child.mtime_ns, child.mtime_ns), follow_symlinks=False)
        else:
            build(child, path, outside)
    os.chmod(root, spec.mode)
    os.utime(root, ns=(spec.mtime_ns, spec.mtime_ns))


def make_outside(path: Path) -> None:
    """The external project folder links point at; it must never be copied or deleted."""
    (path / "assets").mkdir(parents=True)
    (path / "assets" / "clip.bin").write_bytes(b"external project data" * 100)


def remove(path: Path) -> None:
    """Delete a test folder even when it holds read-only subfolders (non-root runs)."""
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return
    for folder, dirnames, _ in os.walk(path):
        for name in dirnames:
            sub = os.path.join(folder, name)
            if not os.path.islink(sub):
                os.chmod(sub, stat.S_IMODE(os.lstat(sub).st_mode) | 0o700)
    shutil.rmtree(path)
