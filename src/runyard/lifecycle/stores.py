"""Where a batch lives in an object store, and the store a report names.

A batch archived to ``s3://BUCKET/PREFIX`` keeps, in the bucket:

- ``PREFIX/<batch>/<run_id>.tar``: each run as one PAX tar (``runtar``);
- ``PREFIX/<batch>/archive_report.json``: a copy of the report (and of each restore
  report, ``restore_report_<stamp>.json``), so the bucket alone is enough to restore;
- ``PREFIX/<batch>/CLEANUP_LOG.md``: the execution log as it stood when the batch ended.

The report itself stays in ``<archive_root>/<batch>/`` as for a local batch, with
``store`` set; the store's endpoint and region come from ``[archive]`` in runyard.toml,
the credentials from the standard AWS variables or profile, never from a report.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from runyard.errors import Refused, RunyardError
from runyard.store import open_store, parse_store_url

if TYPE_CHECKING:
    from runyard.config import Settings
    from runyard.store.s3 import ObjectStore

EXECUTION_LOG_OBJECT = "CLEANUP_LOG.md"


def run_object_key(store: ObjectStore, batch_id: str, run_id: str) -> str:
    """The key of a run's tar in its batch."""
    return store.key(batch_id, f"{run_id}.tar")


def batch_object_key(store: ObjectStore, batch_id: str, name: str) -> str:
    """The key of a batch's file (a report, the log) beside its runs."""
    return store.key(batch_id, name)


def open_batch_store(settings: Settings, store_url: str) -> ObjectStore:
    """The store a report (or ``archive --to``) names, with this yard's endpoint and
    region (``[archive]``); boto3 is loaded now."""
    section = settings.file.archive
    return open_store(
        parse_store_url(store_url), endpoint_url=section.endpoint_url, region=section.region
    )


def checked_object_key(
    store: ObjectStore, batch_id: str, run_id: str, object_key: str | None, dst: str
) -> str:
    """The key of a report entry's object, after checking the report names exactly the
    place a run of this batch has in this store (a tampered report reaches no other
    object)."""
    expected = run_object_key(store, batch_id, run_id)
    if object_key != expected or dst != store.location(expected):
        raise Refused(
            f"report entry {run_id}: its object ({object_key!r}, {dst!r}) is not where a "
            f"run of batch {batch_id} lives in {store.location()} ({expected!r})"
        )
    return expected


def copy_report_quietly(store: ObjectStore, batch_id: str, path: Path) -> None:
    """A report (restore, or a settled archive) copied beside its batch's runs in the
    bucket, best effort: the local report is the record, and the next archive, restore
    or recover copies again."""
    with contextlib.suppress(RunyardError):
        store.put_bytes(batch_object_key(store, batch_id, path.name), path.read_bytes())
