"""The part of ``runyard check`` that reads object stores: archived runs of store batches.

A batch whose report names ``store`` keeps each run as one object,
``PREFIX/<batch>/<run_id>.tar``, of the size and SHA-256 its report entry records
(``tar_bytes``, ``tar_sha256``). One listing of each batch's prefix gives every
object's size, so a check costs one request per thousand runs, not one per run;
``deep`` then reads each object back and re-hashes it (``ObjectStore.verify``).

A store that cannot be listed (unreachable, credentials refused, boto3 missing) is
one ``store_unavailable`` mismatch naming how many runs went unchecked, never one
mismatch per run. Imported only when a yard has store batches: it loads boto3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from runyard.config import Settings
from runyard.errors import Invalid
from runyard.lifecycle.report import ArchiveEntry, ArchiveReport
from runyard.lifecycle.stores import open_batch_store, run_object_key
from runyard.store import StoreError, StoreMismatch, StoreObjectMissing
from runyard.store.s3 import ObjectStore

# (kind, run_id, location, detail): what the checker turns into a Mismatch
Add = Callable[[str, str | None, str, str], None]


@dataclass(frozen=True)
class StoredRun:
    """A run the registry says is archived in a store batch, and its report entry (None
    when the report does not list it as moved)."""

    run_id: str
    entry: ArchiveEntry | None


def check_store_batches(
    settings: Settings,
    batches: Iterable[tuple[ArchiveReport, list[StoredRun]]],
    add: Add,
    *,
    deep: bool = False,
) -> int:
    """Check the objects of each (store batch, its archived runs); return how many
    objects were found where their run's entry says."""
    by_store: dict[str, list[tuple[ArchiveReport, list[StoredRun]]]] = {}
    for report, stored in batches:
        assert report.store is not None
        by_store.setdefault(report.store, []).append((report, stored))
    seen = 0
    for url, work in sorted(by_store.items()):
        runs = sum(len(stored) for _, stored in work)
        try:
            with open_batch_store(settings, url) as store:
                for report, stored in work:
                    seen += _check_batch(store, report, stored, add, deep)
        except (StoreError, Invalid) as exc:
            # Not the runs' fault: one row for the store, not one per run.
            detail = f"{exc.message}; the {runs} runs archived there were not checked" + (
                f" ({exc.hint})" if exc.hint else ""
            )
            add("store_unavailable", None, url, detail)
    return seen


def _check_batch(
    store: ObjectStore, report: ArchiveReport, stored: list[StoredRun], add: Add, deep: bool
) -> int:
    batch_id = report.batch_id
    assert batch_id is not None
    listed = {o.key: o.size for o in store.list_objects(store.key(batch_id) + "/")}
    seen = 0
    where = f"archived in batch {batch_id} ({store.location()})"
    for run in sorted(stored, key=lambda r: r.run_id):
        key = run_object_key(store, batch_id, run.run_id)
        location = store.location(key)
        entry = run.entry
        if entry is None or entry.tar_bytes is None or entry.tar_sha256 is None:
            detail = f"{where}, but the batch's report records no object of it"
            add("missing_object", run.run_id, location, detail)
            continue
        size = listed.get(key)
        if size is None:
            add("missing_object", run.run_id, location, f"{where}, but its object is missing")
            continue
        seen += 1
        if size != entry.tar_bytes:
            detail = f"{where}: the object holds {size} bytes, the report {entry.tar_bytes}"
            add("object_size", run.run_id, location, detail)
            continue
        if deep:
            try:
                store.verify(key, entry.tar_bytes, entry.tar_sha256)
            except StoreObjectMissing:  # deleted since the listing
                add("missing_object", run.run_id, location, f"{where}, but its object is gone")
            except StoreMismatch as exc:
                detail = f"{where}: read back, {exc.message} (the report's)"
                add("object_sha256", run.run_id, location, detail)
    return seen
