"""Archive scope and guards: which runs an archive considers, and every reason to keep one.

This is pure decision logic. The archive command gathers the facts (registry rows, a
walk of each run tree, a ``ReferenceScan``) and asks here; nothing here reads the
database or moves a file, so each rule is testable on its own and the dry run and the
real run cannot disagree.

Scope (``select_candidates``). Exactly one of ``groups`` (``--group``, exact match) or
``all`` (``--all``) says where to look; the other flags narrow that selection:

- ``unscoped_only``: runs with no group at all — none from the manifest, the registry
  or ``group_pattern`` (the group the caller passes) *and* not adopted by a reference
  file (whose path would give one). Refused with ``groups``: it would select nothing.
- ``legacy``: run ids matching any of ``legacy_patterns`` (``re.search``).
- ``unscoped_only`` and ``legacy`` together select runs that are unscoped **or**
  legacy-named. This is the first seed's bulk mode (``--all --video-unscoped-only
  --video-archive-unscoped --video-archive-unscoped-legacy``), whose target is "runs
  not tied 1:1 to an episode: numeric (192), api_*, jinsei*, CHxx-": the legacy names
  are a kind of unscoped run, and the seed adds them to the sweep, it does not narrow
  the sweep to them. Read as AND, the pair would drop every group-less run with an
  ordinary id, and a legacy-named run that ``group_pattern`` happens to give a group
  (``CH02-foo``) would escape. Either flag alone filters by itself.
- ``older_than_days``: started before ``now`` minus that many days; always AND.

A run's group here and in the guards is its ``effective_group``: the known group, else
the group of a reference file adopting it.

Guards (``evaluate``). Every guard is evaluated, so a run skipped for two reasons
reports both (an operator who unpins a run must learn it is also still recent). The
reasons come in a fixed order, each with a stable ``code`` and a human ``message``:
``in_progress`` (queued or running), ``pinned``, ``keep_marker``, ``recent_change``
(newest change in the tree within ``keep_recent_minutes``; a change dated in the future
counts as recent), ``adopted``, ``reference_unreadable`` (the run's group is protected
by an unusable reference file), ``keep_last_runs``. An empty list means the run may be
archived.

Times: aware datetimes; naive ones are taken as UTC, as everywhere in runyard.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol, TypeVar

from runyard.config import MAX_KEEP_LAST_RUNS, MAX_KEEP_RECENT_MINUTES, YardFile
from runyard.errors import Invalid
from runyard.ids import validate_run_id
from runyard.lifecycle.references import ReferenceScan, effective_group
from runyard.models import RunStatus
from runyard.timeutil import days_before, shown_number

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_IN_PROGRESS = frozenset({RunStatus.queued.value, RunStatus.running.value})


class SkipCode(StrEnum):
    """Why a candidate is not archived; the values are stable (reports, ``--json``)."""

    in_progress = "in_progress"
    pinned = "pinned"
    keep_marker = "keep_marker"
    recent_change = "recent_change"
    adopted = "adopted"
    reference_unreadable = "reference_unreadable"
    keep_last_runs = "keep_last_runs"


@dataclass(frozen=True, slots=True)
class SkipReason:
    code: SkipCode
    message: str


@dataclass(frozen=True, slots=True)
class CandidateFacts:
    """What the archive knows about one candidate, gathered from the registry and disk.

    ``group`` is the group the registry knows (manifest or ``group_pattern``); the
    guards add the group of a reference file adopting the run. ``newest_mtime_ns`` is
    the newest change anywhere in the run's tree (lstat, links not followed).
    """

    run_id: str
    group: str | None
    status: RunStatus | str
    pinned: bool
    legacy: bool
    registered: bool
    started_at: datetime
    newest_mtime_ns: int
    has_keep_marker: bool


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """The guard values of one archive: ``runyard.toml``, overridden by command flags."""

    now: datetime
    keep_recent_minutes: int
    keep_last_runs: int
    keep_marker: str = ".keep"

    def __post_init__(self) -> None:
        if self.keep_recent_minutes < 0:
            raise Invalid(
                f"keep_recent_minutes cannot be negative (got {self.keep_recent_minutes})"
            )
        if self.keep_last_runs < 0:
            raise Invalid(f"keep_last_runs cannot be negative (got {self.keep_last_runs})")
        # The same bounds as runyard.toml's, for every entrance (the web, Python).
        if self.keep_recent_minutes > MAX_KEEP_RECENT_MINUTES:
            raise Invalid(
                f"keep_recent_minutes is at most {MAX_KEEP_RECENT_MINUTES:,} "
                f"(got {shown_number(self.keep_recent_minutes)})"
            )
        if self.keep_last_runs > MAX_KEEP_LAST_RUNS:
            raise Invalid(
                f"keep_last_runs is at most {MAX_KEEP_LAST_RUNS:,} "
                f"(got {shown_number(self.keep_last_runs)})"
            )
        object.__setattr__(self, "now", _aware(self.now))

    @classmethod
    def from_yard_file(
        cls,
        file: YardFile,
        now: datetime,
        *,
        keep_recent_minutes: int | None = None,
        keep_last_runs: int | None = None,
    ) -> GuardSettings:
        """The file's values, with each number a flag gave (not None) winning."""
        return cls(
            now=now,
            keep_recent_minutes=(
                file.keep_recent_minutes if keep_recent_minutes is None else keep_recent_minutes
            ),
            keep_last_runs=file.keep_last_runs if keep_last_runs is None else keep_last_runs,
            keep_marker=file.keep_marker,
        )


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _epoch_ns(value: datetime) -> int:
    return (_aware(value) - _EPOCH) // timedelta(microseconds=1) * 1000


def keep_last_runs_per_group(runs: Iterable[tuple[str, str | None, datetime]], n: int) -> set[str]:
    """The run ids of the newest ``n`` runs of each group; group-less runs are never kept.

    Pass *every* active run with its effective group, not only the candidates: a
    scoped or filtered archive must keep exactly the runs an unscoped one keeps, or
    archiving in two steps could leave a group with fewer than ``n`` runs. Newest is by
    ``started_at``; runs started at the same instant are ordered by run id (generated
    ids sort by creation time), the greater being the newer.
    """
    if n < 0:
        raise Invalid(f"keep_last_runs cannot be negative (got {n})")
    by_group: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for run_id, group, started_at in runs:
        if group is not None:
            by_group[group].append((_aware(started_at), run_id))
    kept: set[str] = set()
    if n == 0:
        return kept
    for members in by_group.values():
        members.sort(reverse=True)
        kept.update(run_id for _, run_id in members[:n])
    return kept


def evaluate(
    facts: CandidateFacts,
    settings: GuardSettings,
    kept_newest: set[str],
    references: ReferenceScan,
) -> list[SkipReason]:
    """Every reason ``facts``' run must stay, in the fixed order; empty when it may move.

    Args:
        kept_newest: ``keep_last_runs_per_group`` over all active runs of the yard.
    """
    reasons: list[SkipReason] = []

    def skip(code: SkipCode, message: str) -> None:
        reasons.append(SkipReason(code, message))

    status = str(facts.status)  # RunStatus is a StrEnum: its str is its value
    if status in _IN_PROGRESS:
        skip(SkipCode.in_progress, f"still {status}")
    if facts.pinned:
        skip(SkipCode.pinned, "pinned")
    if facts.has_keep_marker:
        skip(SkipCode.keep_marker, f"has a {settings.keep_marker} marker")
    recent = _recent_change(facts.newest_mtime_ns, settings)
    if recent:
        skip(SkipCode.recent_change, recent)
    adopters = references.adopters(facts.run_id)
    if adopters:
        skip(SkipCode.adopted, "adopted by " + ", ".join(a.path for a in adopters))
    groups = [facts.group] if facts.group is not None else []
    groups += [a.group for a in adopters if a.group not in groups]
    protected = [
        f"group {g} is protected: {references.protected_groups[g]}"
        for g in groups
        if g in references.protected_groups
    ]
    if protected:
        skip(SkipCode.reference_unreadable, "; ".join(protected))
    if facts.run_id in kept_newest:
        group = effective_group(facts.run_id, facts.group, references)
        n = settings.keep_last_runs
        where = f"group {group}" if group is not None else "its group"
        skip(
            SkipCode.keep_last_runs,
            f"the newest run of {where}" if n == 1 else f"one of the newest {n} runs of {where}",
        )
    return reasons


def _recent_change(newest_mtime_ns: int, settings: GuardSettings) -> str | None:
    minutes = settings.keep_recent_minutes
    if minutes == 0:
        return None
    age_ns = _epoch_ns(settings.now) - newest_mtime_ns
    setting = f"(keep_recent_minutes = {minutes})"
    if age_ns < 0:
        # A clock set back, or a file from another machine: it may be in use, so keep it.
        return f"changed in the future, {_minutes(-age_ns)} from now (clock skew?) {setting}"
    if age_ns >= minutes * 60_000_000_000:
        return None
    return f"changed {_minutes(age_ns)} ago {setting}"


def _minutes(duration_ns: int) -> str:
    whole = duration_ns // 60_000_000_000
    if whole == 0:
        return "less than a minute"
    return f"{whole} minute" if whole == 1 else f"{whole} minutes"


def evaluate_candidates(
    candidates: Sequence[CandidateFacts],
    active: Iterable[_Scoped],
    settings: GuardSettings,
    references: ReferenceScan,
) -> dict[str, list[SkipReason]]:
    """``evaluate`` for each candidate, with the kept-newest set computed from ``active``
    (every active run of the yard, candidates or not), keyed by run id."""
    kept = keep_last_runs_per_group(
        (
            (run.run_id, effective_group(run.run_id, run.group, references), run.started_at)
            for run in active
        ),
        settings.keep_last_runs,
    )
    return {c.run_id: evaluate(c, settings, kept, references) for c in candidates}


class _Scoped(Protocol):
    """What scope selection reads of a run; ``ScopeFacts`` and ``CandidateFacts`` both fit."""

    @property
    def run_id(self) -> str: ...
    @property
    def group(self) -> str | None: ...
    @property
    def started_at(self) -> datetime: ...


S = TypeVar("S", bound=_Scoped)


@dataclass(frozen=True, slots=True)
class ScopeFacts:
    """A run as scope selection sees it: ``group`` is the one the registry knows."""

    run_id: str
    group: str | None
    started_at: datetime


@dataclass(frozen=True)
class Scope:
    """Which runs an archive considers; see the module docstring. Checked when made."""

    groups: Sequence[str] = field(default_factory=tuple)
    all: bool = False
    unscoped_only: bool = False
    legacy: bool = False
    older_than_days: float | None = None
    # Named runs (``--run-id``, the web's "archive this run"): the guards still apply.
    run_ids: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(self.groups))
        object.__setattr__(self, "run_ids", tuple(dict.fromkeys(self.run_ids)))
        chosen = sum((bool(self.groups), self.all, bool(self.run_ids)))
        if chosen != 1:
            raise Invalid(
                "choose the runs to consider with exactly one of --group G (repeatable), "
                "--run-id ID (repeatable) or --all"
                + (" (more than one was given)" if chosen else "")
            )
        for run_id in self.run_ids:
            validate_run_id(run_id)
        for group in self.groups:
            if not group or group != group.strip():
                raise Invalid(f"--group {group!r}: a group cannot be empty or padded with spaces")
        if self.groups and self.unscoped_only:
            raise Invalid(
                "--unscoped-only selects runs with no group, so it cannot be combined with "
                "--group; use --all --unscoped-only"
            )
        if self.older_than_days is not None:  # refused here, for every entrance
            days_before(datetime.now(UTC), self.older_than_days, "--older-than")

    def describe(self) -> str:
        """A one-line summary for reports and the execution log."""
        if self.run_ids:
            parts = ["runs " + ", ".join(self.run_ids)]
        else:
            parts = ["all runs" if self.all else "groups " + ", ".join(self.groups)]
        if self.unscoped_only and self.legacy:
            parts.append("unscoped or legacy-named")
        elif self.unscoped_only:
            parts.append("unscoped only")
        elif self.legacy:
            parts.append("legacy-named only")
        if self.older_than_days is not None:
            parts.append(f"started more than {self.older_than_days:g} days ago")
        return "; ".join(parts)


def compile_legacy_patterns(legacy_patterns: Sequence[str]) -> list[re.Pattern[str]]:
    """The patterns compiled; Invalid naming the first that is not a regular expression."""
    compiled = []
    for pattern in legacy_patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise Invalid(
                f"legacy_patterns: not a valid regular expression {pattern!r}: {exc}"
            ) from None
    return compiled


def is_legacy_name(run_id: str, patterns: Sequence[re.Pattern[str]]) -> bool:
    return any(p.search(run_id) for p in patterns)


def select_candidates(
    runs: Sequence[S],
    scope: Scope,
    legacy_patterns: Sequence[str],
    now: datetime,
    references: ReferenceScan,
) -> list[S]:
    """The runs of ``runs`` that ``scope`` selects, in their given order.

    Args:
        runs: every active run (registered, and found on disk but unknown to the
            registry) with the group the registry knows, or None.
        references: the yard's reference scan: an adopted run has the group of its
            reference file, so it is neither unscoped nor outside that group.
    """
    patterns = compile_legacy_patterns(legacy_patterns)
    if scope.legacy and not patterns:
        raise Invalid(
            "--legacy selects run ids matching legacy_patterns, and runyard.toml has none; "
            "add legacy_patterns or leave out --legacy"
        )
    cutoff: datetime | None = None
    if scope.older_than_days is not None:
        cutoff = days_before(_aware(now), scope.older_than_days, "--older-than")
    wanted_groups = set(scope.groups)
    wanted_runs = set(scope.run_ids)
    selected: list[S] = []
    for run in runs:
        if wanted_runs and run.run_id not in wanted_runs:
            continue
        group = effective_group(run.run_id, run.group, references)
        if wanted_groups and group not in wanted_groups:
            continue
        unscoped = group is None
        legacy = scope.legacy and is_legacy_name(run.run_id, patterns)
        if scope.unscoped_only and scope.legacy:
            if not (unscoped or legacy):
                continue
        elif (scope.unscoped_only and not unscoped) or (scope.legacy and not legacy):
            continue
        if cutoff is not None and not _aware(run.started_at) < cutoff:
            continue
        selected.append(run)
    return selected
