"""The runs of archive batches in an object store, for ``runyard rebuild``.

A batch archived to a store keeps no run folder on disk: its runs are tar objects in the
bucket, and what says so is the batch's ``archive_report.json`` (``store`` set), kept in
``<archive_root>/<batch>/`` and copied into the bucket beside the runs. So rebuild takes
such a batch's runs from its report:

- an entry ``moved`` is a run archived in that batch, unless a restore report beside it
  (``restore_report_*.json``) says it was restored since (it then left the bucket);
- a run whose entry is not legacy gets its lineage from the ``run.json`` inside its tar
  (read from the store, stopping at that member); a legacy run is registered from the
  report's fields (group, size), dated by the batch.

``fetch_reports`` brings the reports back from the bucket when the archive root was lost
too (``rebuild --from-store``); it never overwrites a file that is there.
"""

from __future__ import annotations

import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from runyard.errors import Invalid, ManifestError, Refused, RunyardError
from runyard.fsutil import write_atomic
from runyard.ids import run_id_problem
from runyard.lifecycle import stores
from runyard.lifecycle.report import (
    ARCHIVE_REPORT_NAME,
    ArchiveEntry,
    ArchiveReport,
    RestoreReport,
    load_report,
    read_archive_report,
)
from runyard.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, Manifest, read_manifest

if TYPE_CHECKING:
    from runyard.config import Settings
    from runyard.store.s3 import ObjectStore


@dataclass(frozen=True)
class StoreRun:
    """A run that a batch's report says is in a store."""

    batch_id: str
    store: str  # s3://BUCKET/PREFIX of the batch
    entry: ArchiveEntry
    report: ArchiveReport


def store_runs(settings: Settings, problems: list[str]) -> dict[str, StoreRun]:
    """Every run archived to a store by a batch of the archive root, by run id (a later
    batch wins over an earlier one: the run was restored and archived again)."""
    found: dict[str, StoreRun] = {}
    try:
        batches = sorted(p for p in settings.archive_root.iterdir() if p.is_dir())
    except FileNotFoundError:
        return found
    for batch_dir in batches:
        path = batch_dir / ARCHIVE_REPORT_NAME
        if batch_dir.name.startswith(".") or not path.is_file():
            continue
        try:
            report = read_archive_report(path, settings)
        except RunyardError as exc:
            problems.append(f"{batch_dir.name}: its report cannot be used: {exc.message}")
            continue
        if report.store is None:
            continue  # a local batch: its run folders speak for it
        if report.batch_id != batch_dir.name:
            problems.append(f"{batch_dir.name}: its report is of batch {report.batch_id}; not used")
            continue
        restored = _restored(batch_dir, problems)
        for entry in report.entries:
            if entry.status != "moved" or entry.run_id in restored:
                continue
            if run_id_problem(entry.run_id) or entry.object_key is None:
                problems.append(f"{batch_dir.name}: entry {entry.run_id!r} cannot be used")
                continue
            found[entry.run_id] = StoreRun(batch_dir.name, report.store, entry, report)
    return found


def _restored(batch_dir: Path, problems: list[str]) -> set[str]:
    """The run ids the batch's restore reports say were brought back."""
    out: set[str] = set()
    for path in sorted(batch_dir.glob("restore_report_*.json")):
        try:
            restore = load_report(path, RestoreReport)
        except Invalid as exc:
            problems.append(f"{batch_dir.name}: {exc.message}")
            continue
        out.update(e.run_id for e in restore.entries if e.status == "restored")
    return out


@dataclass
class Opened:
    """The stores rebuild reads manifests from, opened once each."""

    settings: Settings
    by_url: dict[str, ObjectStore] = field(default_factory=dict)

    def store(self, url: str) -> ObjectStore:
        if url not in self.by_url:
            self.by_url[url] = stores.open_batch_store(self.settings, url)
        return self.by_url[url]

    def close(self) -> None:
        for store in self.by_url.values():
            store.close()


def manifest_of(opened: Opened, run: StoreRun) -> Manifest | None:
    """The ``run.json`` inside the run's tar, None when it has none.

    The tar is read from its start up to that member (members are in path order, so
    files sorting before ``run.json`` are read through, never written anywhere).
    Raises ManifestError for a corrupt manifest, RunyardError when the store fails."""
    store = opened.store(run.store)
    key = stores.checked_object_key(
        store, run.batch_id, run.entry.run_id, run.entry.object_key, run.entry.dst
    )
    with (
        store.open_read(key) as reader,
        tarfile.open(fileobj=cast(BinaryIO, reader), mode="r|") as tar,
    ):
        for member in tar:
            if member.name.removeprefix("./") != MANIFEST_NAME:
                continue
            if not member.isreg() or member.size > MAX_MANIFEST_BYTES:
                raise ManifestError(f"{store.location(key)}: its {MANIFEST_NAME} is unusable")
            data = tar.extractfile(member)
            raw = data.read() if data is not None else b""
            # read_manifest holds every check of a manifest; it reads from a folder.
            with tempfile.TemporaryDirectory(prefix="runyard-manifest-") as folder:
                (Path(folder) / MANIFEST_NAME).write_bytes(raw)
                return read_manifest(Path(folder))
    return None


@dataclass
class Fetched:
    copied: list[str] = field(default_factory=list)  # batch ids whose report came back
    kept: list[str] = field(default_factory=list)  # batch ids whose local report stayed


def fetch_reports(settings: Settings, store_url: str) -> Fetched:
    """Copy ``PREFIX/<batch>/archive_report.json`` (and its restore reports) from the
    bucket into ``<archive_root>/<batch>/``, never over an existing file. Only reports of
    this yard, for a batch id that is a plain name, are written."""
    fetched = Fetched()
    with stores.open_batch_store(settings, store_url) as store:
        prefix = store.prefix + "/" if store.prefix else ""
        for info in store.list_objects():
            parts = info.key.removeprefix(prefix).split("/")
            if len(parts) != 2 or run_id_problem(parts[0]):
                continue
            batch_id, name = parts
            if name != ARCHIVE_REPORT_NAME and not (
                name.startswith("restore_report_") and name.endswith(".json")
            ):
                continue
            target = settings.archive_root / batch_id / name
            if target.exists():
                if name == ARCHIVE_REPORT_NAME:
                    fetched.kept.append(batch_id)
                continue
            raw = store.get_bytes(info.key)
            if name == ARCHIVE_REPORT_NAME:
                _check_fetched(settings, raw, batch_id, store.location(info.key))
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, raw)
            if name == ARCHIVE_REPORT_NAME:
                fetched.copied.append(batch_id)
    return fetched


def _check_fetched(settings: Settings, raw: bytes, batch_id: str, where: str) -> None:
    try:
        report = ArchiveReport.model_validate_json(raw)
    except ValueError as exc:
        raise Invalid(f"{where} is not an archive report: {str(exc).splitlines()[0]}") from None
    if report.yard_id != settings.yard_id or report.batch_id != batch_id:
        raise Refused(
            f"{where} is a report of yard {report.yard_id}, batch {report.batch_id}; this "
            f"yard is {settings.yard_id}",
            hint="point --from-store at this yard's store",
        )
