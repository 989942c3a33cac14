"""References: files outside the runs that name a run, which archiving must never break.

A ``[[references]]`` rule is a glob relative to the yard and a dotted JSON path, e.g.
``scripts/*/*/status.json`` → ``metadata.video_run_id`` (the first seed: an episode's
``status.json`` names its adopted run). Every matching file *adopts* the run it names,
and the wildcard parts of its path, joined with ``/``, are that run's group
(``scripts/CH01/003/status.json`` → ``CH01/003``).

This module only reads; it never moves anything and never touches the registry. Its
answer, a ``ReferenceScan``, is what the archive guards consult.

Fail safe. A reference file that cannot be trusted might have named any run of its
group, so it protects its whole group (``protected_groups``) and is reported
(``problems``):

- the file cannot be read, is not a regular file (a FIFO, socket or device is never
  opened, so nothing can block on it), is not JSON, its top level is not an object, or
  the JSON path leads through something that is not an object;
- the value is not a string, or not a valid run id (``ids.run_id_problem``);
- its real path (symlinks resolved) is outside the yard: it is never read — a link
  could otherwise make runyard read any file on the machine — and, as we cannot know
  what it names, its group is protected like any other unreadable reference.

Nothing is a problem when the episode simply adopts no run: the key is missing, the
value is ``null`` (or an intermediate object is ``null``), or the value is ``""``,
which is how many tools write "not set".

Globs. Each ``/``-separated segment of a glob is either literal or contains a wildcard
(``*``, ``?``, ``[…]``, matched against one path segment with ``fnmatchcase``, hidden
names included, as ``pathlib`` does). ``**`` is refused (``Invalid`` at scan time): a
group is "the wildcard parts of the path", and a segment that matches any number of
directories would give groups of varying depth (``CH01`` beside ``CH01/003``) that
cannot line up with the groups of the registry, and an empty group when it matches
none. Write one ``*`` per level instead. A glob must have at least one wildcard
segment (else its file names no group), must be relative, and cannot contain ``.`` or
``..`` segments. Directories are listed through symlinks, even ones that lead out of
the yard (only their names are read, so that the group of a file beneath them is
known and can be protected); no file whose real path is outside the yard is opened.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from runyard.config import ReferenceRule
from runyard.errors import Invalid
from runyard.fsutil import read_regular_file
from runyard.ids import run_id_problem

# A status file is a few kilobytes; anything this large is not one, and reading it whole
# to find out would be a way to exhaust memory.
MAX_REFERENCE_BYTES = 16 * 1024 * 1024

_WILDCARD_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class AdoptedBy:
    """One reference file that adopts a run."""

    group: str
    path: str  # relative to the yard, '/'-separated, as matched (symlinks not resolved)
    rule: ReferenceRule


@dataclass(frozen=True, slots=True)
class ReferenceProblem:
    """A reference file that could not be used; its group is protected.

    ``code`` is stable (``outside_yard``, ``unreadable``, ``not_a_file`` (a FIFO, socket
    or device: never opened), ``too_large``, ``not_json``,
    ``not_an_object``, ``bad_json_path``, ``not_a_string``, ``invalid_run_id``);
    ``message`` completes the sentence "its reference file <path> …".
    """

    path: str
    group: str
    code: str
    message: str


@dataclass
class ReferenceScan:
    """What the reference files of a yard say, as the guards need it.

    ``adopted`` maps a run id to every file adopting it (several files may adopt one
    run; all are kept, ordered by path). ``groups_with_reference`` holds the group of
    every matched file, whatever it holds. ``protected_groups`` maps a group to why its
    runs must all stay (the fail-safe).
    """

    adopted: dict[str, list[AdoptedBy]] = field(default_factory=dict)
    groups_with_reference: set[str] = field(default_factory=set)
    protected_groups: dict[str, str] = field(default_factory=dict)
    problems: list[ReferenceProblem] = field(default_factory=list)

    def adopters(self, run_id: str) -> list[AdoptedBy]:
        """The files adopting ``run_id`` (empty when none)."""
        return self.adopted.get(run_id, [])

    def is_adopted(self, run_id: str) -> bool:
        return run_id in self.adopted

    def reference_group(self, run_id: str) -> str | None:
        """The group of the first file (by path) adopting ``run_id``, or None."""
        found = self.adopted.get(run_id)
        return found[0].group if found else None

    def _protect(self, problem: ReferenceProblem) -> None:
        self.problems.append(problem)
        reason = f"its reference file {problem.path} {problem.message}"
        previous = self.protected_groups.get(problem.group)
        self.protected_groups[problem.group] = f"{previous}; {reason}" if previous else reason


def effective_group(run_id: str, known_group: str | None, references: ReferenceScan) -> str | None:
    """A run's group for lifecycle decisions: the one the registry knows (manifest or
    ``group_pattern``), else the group of a reference file adopting it, else None."""
    if known_group is not None:
        return known_group
    return references.reference_group(run_id)


def reference_rule_problem(rule: ReferenceRule) -> str | None:
    """Why ``rule`` cannot be used, or None; see the module docstring for the rules."""
    glob = rule.glob
    if glob.startswith("/"):
        return f"glob {glob!r} must be relative to the yard"
    segments = glob.split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            return f"glob {glob!r} has an empty, '.' or '..' segment"
        if "**" in segment:
            return (
                f"glob {glob!r}: '**' is not supported, because the wildcard parts of a "
                "path are its group and '**' would give groups of varying depth; "
                "use one '*' per directory level (e.g. 'scripts/*/*/status.json')"
            )
    if not any(_is_wildcard(s) for s in segments):
        return (
            f"glob {glob!r} has no wildcard part, so the files it matches would name no "
            "group; a reference glob needs at least one '*', '?' or '[...]' segment"
        )
    keys = rule.json_path.split(".")
    if any(not key for key in keys):
        return f"json_path {rule.json_path!r} has an empty part (write keys joined by '.')"
    return None


def scan_references(yard_path: Path, rules: Sequence[ReferenceRule]) -> ReferenceScan:
    """Read every reference file of every rule; raise Invalid for an unusable rule.

    Every rule is checked before any file is read, so a bad ``runyard.toml`` is
    reported as such and not as a partial scan.
    """
    for rule in rules:
        problem = reference_rule_problem(rule)
        if problem:
            raise Invalid(f"reference rule in runyard.toml: {problem}")
    root = yard_path.resolve()
    scan = ReferenceScan()
    for rule in rules:
        keys = rule.json_path.split(".")
        for rel_parts, group_parts in _matches(root, rule.glob.split("/")):
            _read_one(scan, root, rule, keys, "/".join(rel_parts), "/".join(group_parts))
    for referrers in scan.adopted.values():
        referrers.sort(key=lambda a: (a.path, a.rule.glob, a.rule.json_path))
    return scan


def _is_wildcard(segment: str) -> bool:
    return any(c in _WILDCARD_CHARS for c in segment)


def _matches(root: Path, segments: list[str]) -> Iterator[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Paths under ``root`` matching ``segments``, with their wildcard parts, sorted."""
    # Breadth by segment: (path parts so far, wildcard parts so far).
    level: list[tuple[tuple[str, ...], tuple[str, ...]]] = [((), ())]
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        final = index == last
        following: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        for parts, groups in level:
            here = root.joinpath(*parts)
            if not _is_wildcard(segment):
                candidate = here / segment
                # The final segment may be a broken link or not a file: it is reported
                # when read. An intermediate one must be a directory (links followed).
                if os.path.lexists(candidate) if final else os.path.isdir(candidate):
                    following.append(((*parts, segment), groups))
                continue
            for name in _list_dir(here):
                if not fnmatchcase(name, segment):
                    continue
                if final or os.path.isdir(here / name):
                    following.append(((*parts, name), (*groups, name)))
        level = following
    yield from sorted(level)


def _list_dir(path: Path) -> list[str]:
    try:
        with os.scandir(path) as entries:
            return sorted(entry.name for entry in entries)
    except OSError:
        # A directory that cannot be listed holds no file we could name; nothing in it
        # is known to be a reference. (An unreadable *file* is a problem: see _read_one.)
        return []


def _read_one(
    scan: ReferenceScan,
    root: Path,
    rule: ReferenceRule,
    keys: list[str],
    rel: str,
    group: str,
) -> None:
    scan.groups_with_reference.add(group)

    def problem(code: str, message: str) -> None:
        scan._protect(ReferenceProblem(path=rel, group=group, code=code, message=message))

    try:
        real = (root / rel).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop is RuntimeError before 3.13
        problem("unreadable", f"cannot be read ({exc})")
        return
    if not real.is_relative_to(root):
        problem("outside_yard", f"resolves outside the yard ({real}); it is not read")
        return
    try:
        # Read the resolved path: the file read is the file checked to be in the yard.
        # Never blocks: a FIFO, socket or device is refused without being opened.
        raw = read_regular_file(real, rel, MAX_REFERENCE_BYTES)
    except Invalid as exc:  # a folder stays "unreadable", as it always was
        code = "unreadable" if real.is_dir() else "not_a_file"
        problem(code, f"cannot be read ({exc.message.removeprefix(rel + ': ')})")
        return
    except OSError as exc:
        problem("unreadable", f"cannot be read ({exc.strerror or exc})")
        return
    if len(raw) > MAX_REFERENCE_BYTES:
        problem("too_large", f"cannot be parsed (larger than {MAX_REFERENCE_BYTES} bytes)")
        return
    try:
        document: Any = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        problem("not_json", f"cannot be parsed (not JSON: {exc})")
        return
    if not isinstance(document, dict):
        problem(
            "not_an_object",
            f"cannot be parsed (its top level is {_json_kind(document)}, not an object)",
        )
        return
    value: Any = document
    for depth, key in enumerate(keys):
        if value is None:
            return  # an intermediate null: nothing adopted, like a missing key
        if not isinstance(value, dict):
            through = ".".join(keys[:depth])
            problem(
                "bad_json_path",
                f"cannot be parsed ({through} is {_json_kind(value)}, not an object, "
                f"so {rule.json_path} cannot be read)",
            )
            return
        if key not in value:
            return
        value = value[key]
    if value is None or value == "":
        return
    if not isinstance(value, str):
        problem(
            "not_a_string",
            f"names no valid run ({rule.json_path} is {_json_kind(value)} "
            f"{_short(value)}, not a string)",
        )
        return
    reason = run_id_problem(value)
    if reason:
        problem(
            "invalid_run_id",
            f"names an invalid run id {_short(value)} at {rule.json_path}: {reason}",
        )
        return
    scan.adopted.setdefault(value, []).append(AdoptedBy(group=group, path=rel, rule=rule))


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return "an object"


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"
