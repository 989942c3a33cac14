"""``StreamUpload``: one object written as a stream, hashed, in bounded memory.

A run's tar is produced as it is read from disk, so its size is not known until the
end. Bytes are gathered into one part at a time; the first full part starts a
multipart upload, later ones follow it, and ``commit()`` sends the rest and completes
it. An object that fits in one part goes up as one PutObject instead (most runs are
small). Memory is about one part, whatever the object's size.

The SHA-256 and size of everything written are computed here, on the way out. They
go into the report; the store's copy is checked by ``ObjectStore.verify``, which
reads the object back and never trusts this side's numbers or the object's metadata.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from runyard.store import counters
from runyard.store.errors import StoreError, StoreRefused
from runyard.store.failures import error_code

if TYPE_CHECKING:
    from runyard.store.s3 import ObjectStore

MAX_PARTS = 10_000  # S3's limit per upload
# Every this many parts the part size grows by the starting size, so that 10,000 parts
# of a 16 MiB start reach 880 GiB while small objects keep small parts.
PARTS_PER_STEP = 1_000
# x-amz-meta-sha256 of an object sent whole, for people browsing the bucket. A multipart
# upload starts before its digest is known, and setting it afterwards would mean copying
# the object onto itself (the whole object again, and a second version on a versioned
# bucket): those objects carry none. The report, not the metadata, is the record.
SHA256_METADATA = "sha256"


class PutResult(NamedTuple):
    """What an upload wrote: its size in bytes, its SHA-256 (hex) and the store's ETag."""

    size: int
    sha256: str
    etag: str


class StreamUpload:
    """A writer for one object; made by ``ObjectStore.put_stream``.

    ``write(bytes)`` as often as needed, then ``commit()`` to complete the object and
    get its ``PutResult``. ``abort()``, an exception in a ``with`` block, a failed
    write, or leaving the block without ``commit()`` all abort the multipart upload,
    so no parts are left behind (a killed process leaves them to
    ``ObjectStore.abort_incomplete_uploads``).
    """

    def __init__(
        self,
        store: ObjectStore,
        key: str,
        *,
        part_size: int,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.key = key
        self.part_size = part_size
        self.metadata = dict(metadata or {})
        self.size = 0
        self.state = "open"  # then "committed" or "aborted"
        self._sha256 = hashlib.sha256()
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    @property
    def location(self) -> str:
        return self.store.location(self.key)

    @property
    def multipart(self) -> bool:
        """True once the object was too large for one PutObject and went up in parts."""
        return bool(self._parts)

    def writable(self) -> bool:
        return self.state == "open"

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Add ``data`` to the object; sends a part whenever one is full."""
        if self.state != "open":
            raise ValueError(f"the upload of {self.location} is {self.state}")
        self._sha256.update(data)
        self._buffer += data
        self.size += len(data)
        if len(self._buffer) >= self._next_part_size():
            try:
                self._send_part()
            except BaseException:
                self._abort_quietly()
                raise
        return len(data)

    def commit(self) -> PutResult:
        """Send what is left and complete the object; its size, SHA-256 and ETag."""
        if self.state != "open":
            raise ValueError(f"the upload of {self.location} is {self.state}")
        digest = self._sha256.hexdigest()
        try:
            if self._upload_id is None:
                etag = self._put_whole(digest)
            else:
                if self._buffer:
                    self._send_part()
                etag = self._complete()
        except BaseException:
            self._abort_quietly()
            raise
        self.state = "committed"
        return PutResult(self.size, digest, etag)

    def abort(self) -> None:
        """Abort the upload: the store frees its parts; nothing is left under the key
        by this upload. Does nothing once committed or aborted."""
        if self.state != "open":
            return
        self.state = "aborted"
        self._buffer = bytearray()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            return
        try:
            self.store.client.abort_multipart_upload(
                Bucket=self.store.bucket, Key=self.key, UploadId=upload_id
            )
        except ClientError as exc:
            if error_code(exc) != "NoSuchUpload":  # else: already aborted or completed
                raise self.store.error(exc, "delete", self.location) from exc
        except BotoCoreError as exc:
            raise self.store.error(exc, "delete", self.location) from exc

    def __enter__(self) -> StreamUpload:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._abort_quietly()
        else:
            self.abort()  # left without commit(): nothing half-made stays

    # -- inside ------------------------------------------------------------------------

    def _next_part_size(self) -> int:
        return self.part_size * (1 + len(self._parts) // PARTS_PER_STEP)

    def _send_part(self) -> None:
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise StoreRefused(
                f"{self.location} would need more than {MAX_PARTS} parts of up to "
                f"{self._next_part_size()} bytes; raise the part size"
            )
        if self._upload_id is None:
            answer = self.store.call(
                "write",
                self.location,
                "create_multipart_upload",
                Key=self.key,
                Metadata=self.metadata,
            )
            self._upload_id = str(answer["UploadId"])
        # The buffer itself is the body (no copy); a new one gathers the next part.
        body, self._buffer = self._buffer, bytearray()
        answer = self.store.call(
            "write",
            self.location,
            "upload_part",
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
        )
        counters.bytes_sent.add(len(body))
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def _put_whole(self, digest: str) -> str:
        body, self._buffer = self._buffer, bytearray()
        answer = self.store.call(
            "write",
            self.location,
            "put_object",
            Key=self.key,
            Body=body,
            Metadata={**self.metadata, SHA256_METADATA: digest},
        )
        counters.bytes_sent.add(len(body))
        return _etag(answer.get("ETag"))

    def _complete(self) -> str:
        answer = self.store.call(
            "write",
            self.location,
            "complete_multipart_upload",
            Key=self.key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )
        self._upload_id = None  # complete: nothing left to abort
        return _etag(answer.get("ETag"))

    def _abort_quietly(self) -> None:
        # Called while another error is on its way out: that one is what gets reported;
        # an upload this fails to abort is left for abort_incomplete_uploads (recover).
        with contextlib.suppress(StoreError):
            self.abort()


def _etag(value: Any) -> str:
    return str(value or "").strip('"')
