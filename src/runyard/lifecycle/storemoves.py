"""Moving one run to an object store and back, and settling a move a crash cut off.

Archive, per run: stream the run's tree as one PAX tar (``runtar``) into a multipart
upload, complete it, read the object back from the store (size, then the whole body
re-hashed), append the verified object to the batch's ``store_journal.jsonl`` (fsynced),
and only then take the local folder out of its name (one rename to its tombstone) and
delete it. So at every instant the run is whole in the runs root, or verified in the
bucket and recorded as such on the local disk, or both.

Restore, per run: stream the object into a temporary folder beside the run's place,
hashing it; only a stream with the recorded SHA-256 and size, unpacked to the recorded
tree digest, is renamed into place (never over anything); then the object is deleted,
as a local restore moves the tree out of its batch.

``settle_archive`` and ``settle_restore`` read back what a crash left (the local
folder, its tombstone, the journal line, the object, a half-unpacked folder) and finish
or undo each run: ``recover`` calls them.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal, cast

from runyard.errors import Refused
from runyard.lifecycle import fsops, runtar
from runyard.lifecycle.crashpoints import crashpoint
from runyard.store.errors import StoreMismatch, StoreObjectMissing

if TYPE_CHECKING:
    from runyard.lifecycle.fsops import Remover, TreeScan
    from runyard.store.s3 import ObjectStore

JOURNAL_NAME = "store_journal.jsonl"

Settled = Literal["moved", "not_moved"]


@dataclass(frozen=True)
class VerifiedObject:
    """A run's tar as read back from the store, recorded before its folder goes."""

    run_id: str
    key: str
    size: int
    sha256: str
    digest: str  # the tree's sha256 digest (``fsops.scan_tree``), as tarred

    def line(self) -> bytes:
        return (json.dumps(self.__dict__, sort_keys=True) + "\n").encode()


class StoreJournal:
    """``<batch>/store_journal.jsonl``: one fsynced line per verified object.

    An append is one small write and one fsync, so a batch of 10,000 runs does not
    rewrite its report after each run; the report catches up at the journal's flushes.
    The file stays open for the batch, and the fsync is outside the lock: a thread's
    line is written before its own fsync starts, so threads that append together share
    the disk's flushes. Close it (or use ``with``) when the batch is done.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None

    def append(self, verified: VerifiedObject) -> None:
        with self._lock:
            if self._fd is None:
                new = not os.path.lexists(self.path)
                self._fd = os.open(
                    self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644
                )
                if new:
                    fsops.fsync_dir(self.path.parent)
            fd = self._fd
            os.write(fd, verified.line())
        os.fsync(fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> StoreJournal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @staticmethod
    def read(path: Path) -> dict[str, VerifiedObject]:
        """The verified objects by run id. A last line cut off by a crash is ignored:
        its run's folder was never touched (the line is written before)."""
        found: dict[str, VerifiedObject] = {}
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return found
        for raw in data.splitlines():
            try:
                fields = json.loads(raw)
                verified = VerifiedObject(
                    run_id=str(fields["run_id"]),
                    key=str(fields["key"]),
                    size=int(fields["size"]),
                    sha256=str(fields["sha256"]),
                    digest=str(fields["digest"]),
                )
            except (ValueError, KeyError, TypeError):
                continue
            found[verified.run_id] = verified
        return found


def archive_run(
    store: ObjectStore,
    run_id: str,
    src: Path,
    key: str,
    expected: TreeScan,
    journal: StoreJournal,
    remove: Remover | None = None,
) -> VerifiedObject:
    """Upload ``src`` as one tar object at ``key``, verify it from the store, record it,
    then delete ``src``. Raises a RunyardError (the folder untouched, no object left by
    this call when the upload itself failed) when any step before the record fails."""
    crashpoint("store-archive:uploading")
    upload = store.put_stream(key)
    try:
        written = runtar.write_run_tar(src, upload.write)
        if not written.scan.agrees_with(expected.metadata_digest):
            bad = ", ".join(written.scan.differences(expected)) or "?"
            raise Refused(f"{src} changed since it was planned (first differences: {bad})")
        crashpoint("store-archive:tar-sent")
        upload.commit()
    except BaseException:
        upload.abort()
        raise
    crashpoint("store-archive:uploaded")
    store.verify(key, written.size, written.sha256)
    verified = VerifiedObject(run_id, key, written.size, written.sha256, written.scan.digest)
    journal.append(verified)
    crashpoint("store-archive:recorded")
    fsops.delete_source(src, remove)
    return verified


def restore_run(
    store: ObjectStore, key: str, target: Path, size: int, sha256: str, digest: str | None
) -> None:
    """Unpack the object at ``key`` into ``target`` (which must not exist), checked
    against the recorded size, SHA-256 and tree digest. The object stays: the caller
    deletes restored objects in batches (``RestoredObjects``)."""
    crashpoint("store-restore:downloading")
    with store.open_read(key) as reader:
        runtar.extract_run_tar(
            cast(BinaryIO, reader),  # read(n) is all runtar asks of it
            target,
            expected_sha256=sha256,
            expected_size=size,
            expected_digest=digest,
        )
    crashpoint("store-restore:unpacked")


class RestoredObjects:
    """The objects of restored runs, deleted a thousand at a time (one DeleteObjects
    request) rather than one request per run: a request costs about as much as
    unpacking a small run. Until deleted, a restored run's object is a redundant copy;
    ``settle_restore`` (recover) deletes any that a crash left."""

    BATCH = 1000

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._keys: list[str] = []
        self._lock = threading.Lock()

    def add(self, key: str) -> None:
        with self._lock:
            self._keys.append(key)
            if len(self._keys) < self.BATCH:
                return
            keys, self._keys = self._keys, []
        self._delete(keys)

    def flush(self) -> None:
        with self._lock:
            keys, self._keys = self._keys, []
        self._delete(keys)

    def _delete(self, keys: list[str]) -> None:
        if keys:
            crashpoint("store-restore:objects-deleting")
            self.store.delete(keys)


def settle_archive(
    store: ObjectStore, src: Path, key: str, verified: VerifiedObject | None
) -> Settled:
    """Finish or undo an archive of one run that a crash interrupted.

    - recorded (``verified``) and the folder still whole: the object is verified again
      and the folder deleted (moved); an object that no longer verifies is deleted and
      the folder kept (not moved);
    - recorded and the folder gone or tombstoned: the tombstone is deleted (moved), once
      the object verifies; if it does not, an alarm: nothing more is deleted;
    - not recorded: whatever the upload left under ``key`` is deleted, the folder kept
      (not moved); without the folder, an alarm.

    Raises Refused for an alarm (a person decides; nothing was deleted)."""
    tomb = fsops.tombstone_path(src)
    has_src, has_tomb = os.path.lexists(src), os.path.lexists(tomb)
    if verified is None:
        if not has_src:
            raise Refused(
                f"run missing: {src} is gone but no verified object was recorded for it",
                hint="restore the run from a backup; nothing was deleted",
            )
        store.delete([key])  # a completed but unverified upload, if any
        return "not_moved"
    try:
        store.verify(key, verified.size, verified.sha256)
    except (StoreMismatch, StoreObjectMissing) as exc:
        if has_src and not has_tomb:
            store.delete([key])
            return "not_moved"
        raise Refused(
            f"{src} was being deleted after its upload, but the object no longer "
            f"verifies: {exc.message}; nothing more was deleted",
            hint="check the bucket; the rest of the run may be in " + str(tomb),
        ) from None
    if has_src:
        fsops.delete_source(src)
    elif has_tomb:
        fsops.remove_tombstones([tomb])
    return "moved"


def delete_left_objects(store: ObjectStore, keys: list[str]) -> int:
    """Delete the objects of runs a restore report says are restored but that a crash
    left in the bucket (between the report's flush and ``RestoredObjects``); how many
    there were."""
    if not keys:
        return 0
    wanted = set(keys)
    prefix = keys[0].rsplit("/", 1)[0] + "/"
    found = [o.key for o in store.list_objects(prefix) if o.key in wanted]
    store.delete(found)
    return len(found)


def settle_restore(store: ObjectStore, key: str, target: Path, digest: str | None) -> Settled:
    """Finish or undo a restore of one run from a store that a crash interrupted:
    half-unpacked folders beside ``target`` are removed; a ``target`` that is the
    recorded tree means it was restored (its object, if still there, is deleted); no
    ``target`` means it was not (the object stays in the batch).

    Raises Refused when ``target`` exists but is not the archived tree."""
    for leftover in runtar.leftover_unpackings(target):
        fsops.remove_tree(leftover)
        fsops.fsync_dir(leftover.parent)
    if not os.path.lexists(target):
        return "not_moved"
    if digest is not None and not os.path.islink(target):
        scan = fsops.scan_tree(target)
        if not scan.agrees_with(digest):
            raise Refused(
                f"{target} exists but is not the archived run (digest {scan.digest}, "
                f"recorded {digest}); nothing deleted",
                hint="inspect the folder; the run is still in the bucket",
            )
    store.delete([key])
    return "moved"


def copy_to_store(store: ObjectStore, key: str, path: Path) -> None:
    """Copy a small local file (a report, the execution log) into the bucket."""
    store.put_bytes(key, path.read_bytes())


__all__ = [
    "JOURNAL_NAME",
    "RestoredObjects",
    "StoreJournal",
    "VerifiedObject",
    "archive_run",
    "copy_to_store",
    "delete_left_objects",
    "restore_run",
    "settle_archive",
    "settle_restore",
]
