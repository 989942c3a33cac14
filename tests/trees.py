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


# An empty folder as a leaf: drawing one from ``_dirs(st.nothing())`` makes hypothesis
# discard every non-empty dictionary it tries, which can trip its filter health check.
empty_dirs = st.builds(DirSpec, st.just({}), dir_modes, mtimes)

nodes: st.SearchStrategy[Node] = st.recursive(files | links | empty_dirs, _dirs, max_leaves=12)


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


# --- hostile trees: what real video and ML workspaces hold ------------------------------------
# Names and link texts that are not UTF-8 (Python's surrogateescape strings), fifos and
# sockets left by tools, hard links, extended attributes, deep chains and empty folders.


@dataclass(frozen=True)
class SpecialSpec:
    """A fifo or a socket file (never opened: opening a fifo blocks)."""

    kind: str  # "fifo" | "socket"
    mode: int
    mtime_ns: int


@dataclass(frozen=True)
class HardlinkSpec:
    """A second name of the sibling file named ``to`` (built after the files)."""

    to: str


@dataclass(frozen=True)
class XattrFileSpec:
    """A file with user extended attributes."""

    content: bytes
    mode: int
    mtime_ns: int
    xattrs: tuple[tuple[str, bytes], ...]


HostileNode = Node | SpecialSpec | HardlinkSpec | XattrFileSpec


def _fs_name(raw: bytes) -> str:
    return os.fsdecode(raw)


byte_names = (
    st.binary(min_size=1, max_size=12)
    .filter(lambda raw: b"/" not in raw and b"\x00" not in raw and raw not in (b".", b".."))
    .map(_fs_name)
)
hostile_names = st.one_of(names, byte_names, st.sampled_from([_fs_name(b"\xff\xfe"), "é"]))
hostile_link_texts = st.one_of(
    link_texts, st.binary(min_size=1, max_size=24).filter(lambda b: b"\x00" not in b).map(_fs_name)
)
hostile_links = st.builds(LinkSpec, st.sampled_from(LINK_KINDS), mtimes, hostile_link_texts)
specials = st.builds(SpecialSpec, st.sampled_from(["fifo", "socket"]), file_modes, mtimes)
xattr_files = st.builds(
    XattrFileSpec,
    st.binary(max_size=500),
    file_modes.filter(lambda m: m & 0o200),  # user xattrs need write permission to set
    mtimes,
    st.lists(
        st.tuples(
            st.text("abcdefgh", min_size=1, max_size=6).map(lambda n: "user." + n),
            st.binary(max_size=40),
        ),
        max_size=3,
        unique_by=lambda pair: pair[0],
    ).map(tuple),
)


def _hostile_dirs(children: st.SearchStrategy[HostileNode]) -> st.SearchStrategy[DirSpec]:
    return st.builds(
        DirSpec, st.dictionaries(hostile_names, children, max_size=4), dir_modes, mtimes
    )


hostile_nodes: st.SearchStrategy[HostileNode] = st.recursive(
    files | hostile_links | specials | xattr_files | empty_dirs,
    _hostile_dirs,
    max_leaves=10,
)


def _chain(depth: int, leaf: DirSpec) -> DirSpec:
    for i in range(depth):
        leaf = DirSpec({f"d{i}": leaf})
    return leaf


@st.composite
def hostile_trees(draw: st.DrawFn) -> DirSpec:
    """A run folder's contents: hostile nodes, hard links to some of its files, and now and
    then a deep chain of folders; always the seed's ``capcut_draft`` link outside."""
    children: dict[str, HostileNode] = dict(
        draw(st.dictionaries(hostile_names, hostile_nodes, max_size=5))
    )
    plain = [n for n, c in children.items() if isinstance(c, FileSpec | XattrFileSpec)]
    for i, target in enumerate(draw(st.lists(st.sampled_from(plain), max_size=2)) if plain else []):
        children[f"hardlink-{i}"] = HardlinkSpec(target)
    if draw(st.booleans()):
        children["deep"] = _chain(draw(st.integers(1, 40)), DirSpec())
    children["capcut_draft"] = LinkSpec("outside_abs", draw(mtimes))
    return DirSpec(children, 0o755, draw(mtimes))  # type: ignore[arg-type]


def build_into(spec: DirSpec, root: Path, outside: Path) -> None:
    """Write the hostile ``spec``'s children into the existing folder ``root``."""
    later: list[tuple[Path, HardlinkSpec]] = []
    for name, child in spec.children.items():
        path = root / name
        if isinstance(child, HardlinkSpec):
            later.append((path, child))
        elif isinstance(child, SpecialSpec):
            kind = stat.S_IFIFO if child.kind == "fifo" else stat.S_IFSOCK
            os.mknod(path, 0o600 | kind)
            os.chmod(path, child.mode)
            os.utime(path, ns=(child.mtime_ns, child.mtime_ns), follow_symlinks=False)
        elif isinstance(child, XattrFileSpec):
            path.write_bytes(child.content)
            for key, value in child.xattrs:
                os.setxattr(path, key, value)
            os.chmod(path, child.mode)
            os.utime(path, ns=(child.mtime_ns, child.mtime_ns))
        elif isinstance(child, DirSpec):
            os.mkdir(path)
            build_into(child, path, outside)
        elif isinstance(child, FileSpec):
            path.write_bytes(child.content)
            os.chmod(path, child.mode)
            os.utime(path, ns=(child.mtime_ns, child.mtime_ns))
        else:
            os.symlink(link_text(child, root, outside), path)
            os.utime(path, ns=(child.mtime_ns, child.mtime_ns), follow_symlinks=False)
    for path, link in later:
        os.link(path.parent / link.to, path)
    os.chmod(root, spec.mode)
    os.utime(root, ns=(spec.mtime_ns, spec.mtime_ns))


def exact_state(root: Path) -> dict[bytes, tuple[object, ...]]:
    """Everything a move must keep, by bytes path: type, mode, mtime, size, content, link
    text, extended attributes, link count and which names share an inode."""
    base = os.fsencode(root)
    out: dict[bytes, tuple[object, ...]] = {}
    inode_first: dict[int, bytes] = {}
    listing = [base]
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        listing.extend(os.path.join(dirpath, n) for n in sorted(filenames + dirnames))
    for full in listing:
        rel = os.path.relpath(full, base)
        st_ = os.lstat(full)
        kind = stat.S_IFMT(st_.st_mode)
        content: object = None
        if stat.S_ISREG(st_.st_mode):
            with open(full, "rb") as f:
                content = f.read()
        elif stat.S_ISLNK(st_.st_mode):
            content = os.readlink(full)
        attrs: tuple[tuple[str, bytes], ...] = ()
        if stat.S_ISREG(st_.st_mode) or stat.S_ISDIR(st_.st_mode):
            attrs = tuple(
                sorted(
                    (k, os.getxattr(full, k, follow_symlinks=False))
                    for k in os.listxattr(full, follow_symlinks=False)
                    if k.startswith("user.")
                )
            )
        shared = None
        if stat.S_ISREG(st_.st_mode) and st_.st_nlink > 1:
            shared = inode_first.setdefault(st_.st_ino, rel)
        out[rel] = (
            kind,
            stat.S_IMODE(st_.st_mode),
            st_.st_mtime_ns,
            st_.st_size if not stat.S_ISDIR(st_.st_mode) else 0,
            content,
            attrs,
            st_.st_nlink if not stat.S_ISDIR(st_.st_mode) else None,
            shared,
        )
    return out
