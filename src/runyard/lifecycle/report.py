"""Archive and restore reports: the journal that makes every move undoable.

An archive report is written (and fsynced) before the first move and rewritten
atomically after each one, so at any instant it says which runs were moved, which
were about to be, and which were not touched. ``recover`` finishes or undoes an
interrupted batch from it; ``restore`` reverses a complete one.

Every path in a report is relative to the yard. Nothing read from a report reaches
the filesystem before ``resolve_entry_paths`` has checked that it is exactly where a
run of this yard and this batch must be.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticSerializationError

from runyard import fsnames
from runyard.config import Settings
from runyard.errors import Invalid, Refused
from runyard.fsutil import write_atomic
from runyard.ids import run_id_problem

REPORT_SCHEMA_VERSION = 1
ARCHIVE_REPORT_NAME = "archive_report.json"

EntryStatus = Literal["pending", "moving", "moved", "not_moved", "failed", "restored"]
ReportStatus = Literal["dry_run", "in_progress", "complete", "failed", "recovered"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SkipReasonDoc(_Model):
    code: str
    message: str


class SymlinkDoc(_Model):
    """A symlink of a moved run. ``path`` and ``target`` are display forms; where one is
    not UTF-8, its ``_b64`` twin holds the exact bytes (``runyard.fsnames``)."""

    path: str
    target: str
    resolves: bool
    path_b64: str | None = None
    target_b64: str | None = None

    @classmethod
    def of(cls, path: str, target: str, resolves: bool) -> SymlinkDoc:
        """The document of a link as the disk gave it (names may hold surrogates)."""
        return cls(
            path=fsnames.shown(path),
            target=fsnames.shown(target),
            resolves=resolves,
            path_b64=fsnames.exact_b64(path),
            target_b64=fsnames.exact_b64(target),
        )

    def exact_path(self) -> str:
        return fsnames.exact(self.path, self.path_b64, "symlink path")

    def exact_target(self) -> str:
        return fsnames.exact(self.target, self.target_b64, "symlink target")


class ArchiveEntry(_Model):
    run_id: str
    group: str | None = None
    legacy: bool = False
    src: str
    dst: str
    status: EntryStatus = "pending"
    method: str | None = None
    bytes: int = 0
    files: int = 0
    digest: str | None = None
    symlinks: list[SymlinkDoc] = Field(default_factory=list)
    error: str | None = None
    # A batch in an object store (``ArchiveReport.store``): the run is one PAX tar object
    # (``runtar``) at ``object_key`` in the store's bucket, of ``tar_bytes`` bytes and
    # SHA-256 ``tar_sha256``, as read back from the store before the local folder went.
    # ``dst`` is then the object's ``s3://`` location.
    object_key: str | None = None
    tar_bytes: int | None = None
    tar_sha256: str | None = None


class ArchiveSkip(_Model):
    run_id: str
    group: str | None = None
    bytes: int = 0
    reasons: list[SkipReasonDoc]


PROBLEM_SKIPS = frozenset({"unreadable", "cannot_keep", "swapped_for_symlink"})
"""Skip reasons that are not a guard's choice but a run runyard could not handle: the
batch goes on without it, and the command's exit code says so (4)."""


class ArchiveSummary(_Model):
    candidates: int = 0
    to_archive: int = 0
    skipped: int = 0
    problems: int = 0  # skips for a reason in PROBLEM_SKIPS
    moved: int = 0
    failed: int = 0
    bytes_to_archive: int = 0
    bytes_moved: int = 0


class ArchiveReport(_Model):
    schema_version: int = REPORT_SCHEMA_VERSION
    kind: Literal["archive"] = "archive"
    yard_id: str
    batch_id: str | None
    status: ReportStatus
    reason: str | None = None
    command: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    entries: list[ArchiveEntry] = Field(default_factory=list)
    skips: list[ArchiveSkip] = Field(default_factory=list)
    summary: ArchiveSummary = Field(default_factory=ArchiveSummary)
    problems: list[str] = Field(default_factory=list)
    # Where the batch's runs live when not under the archive root: ``s3://BUCKET/PREFIX``
    # (never credentials; the endpoint and region come from ``[archive]`` in runyard.toml).
    # The report itself stays in ``<archive_root>/<batch>/`` and is copied into the
    # bucket as ``PREFIX/<batch>/archive_report.json``.
    store: str | None = None


class RestoreEntry(_Model):
    run_id: str
    src: str  # in the archive batch
    dst: str  # back in the runs root
    status: Literal["pending", "moving", "restored", "conflict", "not_archived", "failed"] = (
        "pending"
    )
    error: str | None = None
    bytes: int = 0  # as archived


class RestoreReport(_Model):
    schema_version: int = REPORT_SCHEMA_VERSION
    kind: Literal["restore"] = "restore"
    yard_id: str
    batch_id: str
    archive_report: str
    status: ReportStatus
    command: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    entries: list[RestoreEntry] = Field(default_factory=list)
    restored: int = 0
    conflicts: int = 0
    failed: int = 0


def write_report(path: Path, report: BaseModel) -> None:
    """Write a report atomically (temporary file, fsync, rename) and fsync its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # pydantic's own serializer: json.dumps with indent runs in pure Python, and a
    # journal rewrites a report of thousands of entries many times in one batch.
    try:
        data = report.model_dump_json(indent=2).encode()
    except PydanticSerializationError:
        # A text field (an error message, a reason) holds a name that is not UTF-8: it
        # is written in display form. A report that was started must always be written.
        data = fsnames.json_bytes(report.model_dump(mode="json"), indent=2)
    write_atomic(path, data + b"\n")
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


M = TypeVar("M", bound=BaseModel)


def load_report(path: Path, model: type[M]) -> M:
    """A report file as ``model``; Invalid (never a traceback) for anything else."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise Invalid(f"cannot read {path}: {exc.strerror}") from None
    try:
        return model.model_validate_json(raw)
    except (ValueError, ValidationError) as exc:
        raise Invalid(
            f"{path} is not a valid {model.__name__}: {str(exc).splitlines()[0]}"
        ) from None


def read_archive_report(path: Path, settings: Settings) -> ArchiveReport:
    """Read an archive report of this yard; Invalid/Refused for anything else."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise Invalid(f"no such report: {path}") from None
    except OSError as exc:
        raise Invalid(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(raw)
        report = ArchiveReport.model_validate(data)
    except (ValueError, ValidationError) as exc:
        raise Invalid(f"{path} is not an archive report: {str(exc).splitlines()[0]}") from None
    if report.yard_id != settings.yard_id:
        raise Refused(
            f"{path} is a report of another yard ({report.yard_id}); this yard is "
            f"{settings.yard_id}"
        )
    if report.batch_id is None or report.status == "dry_run":
        raise Invalid(f"{path} is a dry-run report: nothing was moved, nothing to restore")
    return report


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def checked_path(
    settings: Settings,
    relative: str,
    expected: Path,
    root: Path,
    what: str,
    resolved: dict[Path, Path] | None = None,
) -> Path:
    """``relative`` (from a report) as an absolute path, only if it is exactly ``expected``.

    Refuses ``..``, anything but the expected place (an absolute path is accepted only
    where the root itself lies outside the yard and the path is exactly the expected
    one), and a parent that leads out of ``root`` through a symlink. ``resolved`` caches
    real paths across the entries of one report, whose parents are all the same folders.
    """
    if ".." in Path(relative).parts:
        raise Refused(f"report {what} {relative!r} climbs with '..'")
    candidate = settings.yard_path / relative
    if os.path.normpath(candidate) != os.path.normpath(expected):
        raise Refused(f"report {what} {relative!r} is not where this yard keeps it ({expected})")
    cache = {} if resolved is None else resolved
    if not _inside(_real_path(candidate.parent, cache), _real_path(root, cache)):
        raise Refused(f"report {what} {relative!r} leads outside {root} (through a symlink?)")
    return candidate


def _real_path(path: Path, cache: dict[Path, Path]) -> Path:
    if path not in cache:
        cache[path] = path.resolve()
    return cache[path]


def entry_paths(
    settings: Settings,
    batch_id: str,
    run_id: str,
    src: str,
    dst: str,
    resolved: dict[Path, Path] | None = None,
) -> tuple[Path, Path]:
    """The (active, archived) folders of a report entry, after every check."""
    problem = run_id_problem(run_id)
    if problem:
        raise Refused(f"report entry has an invalid run id {run_id!r}: {problem}")
    if run_id_problem(batch_id):
        raise Refused(f"report has an invalid batch id {batch_id!r}")
    runs_root = settings.runs_root
    active = checked_path(settings, src, runs_root / run_id, runs_root, "src", resolved)
    archived = checked_path(
        settings, dst, settings.run_dir(run_id, batch_id), settings.archive_root, "dst", resolved
    )
    return active, archived


def relative_to_yard(settings: Settings, path: Path) -> str:
    try:
        return str(path.relative_to(settings.yard_path))
    except ValueError:
        return str(path)
