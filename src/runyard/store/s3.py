"""``ObjectStore``: one S3-compatible bucket (and prefix) that archive batches live in.

One boto3 client per store, with bounded retries and timeouts so that a store that
is down is reported in seconds, not minutes. Credentials come only from the standard
AWS chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE`` and the
``~/.aws`` files): runyard.toml has no place for them and nothing here prints one.

Every botocore failure leaves this module as a ``StoreError`` (``failures.py``) whose
message says which: unreachable, credentials refused, no permission, missing bucket,
missing object. ``verify`` trusts only what it reads back from the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import urllib3.exceptions
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from runyard.errors import Invalid
from runyard.store import counters
from runyard.store.errors import StoreError, StoreMismatch, StoreObjectMissing, StoreRefused
from runyard.store.failures import error_code, http_status, store_error
from runyard.store.upload import PutResult, StreamUpload
from runyard.store.url import StoreUrl

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB  # S3's smallest part (but the last)
MAX_PART_SIZE = 5 * 1024 * MiB  # and its largest
DEFAULT_PART_SIZE = 16 * MiB
READ_CHUNK = 1 * MiB
DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys a call
MAX_SMALL_OBJECT = 64 * MiB  # get_bytes is for reports, not runs

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 60.0
# Attempts in all (botocore's "standard" mode, exponential backoff with jitter): a
# closed port is reported after about 4 s, a store that blinks is ridden through.
DEFAULT_MAX_ATTEMPTS = 4

PROBE_PREFIX = ".runyard-probe-"

_loader: botocore.loaders.Loader | None = None
_loader_lock = threading.Lock()


def _new_session(region: str | None) -> boto3.session.Session:
    """A boto3 session of its own (boto3's default one is a process global, not
    thread-safe, and would keep the first credentials it found) sharing one process-wide
    botocore data loader: the loader parses botocore's service and endpoint JSON, about
    50 ms per session otherwise, which a restore paid three times."""
    global _loader
    with _loader_lock:
        if _loader is None:
            _loader = botocore.loaders.create_loader()
        loader = _loader
    core = botocore.session.get_session()  # a new botocore session each call
    core.register_component("data_loader", loader)
    return boto3.session.Session(botocore_session=core, region_name=region)


__all__ = ["ObjectInfo", "ObjectReader", "ObjectStore", "ProbeResult", "PutResult", "StreamUpload"]


@dataclass(frozen=True)
class ObjectInfo:
    """One object as HEAD or a listing sees it (a listing gives no metadata)."""

    key: str
    size: int
    etag: str
    last_modified: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeResult:
    """A successful ``probe``: where, what was checked, how long it took."""

    location: str
    checked: tuple[str, ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "checked": list(self.checked),
            "seconds": round(self.seconds, 3),
        }


class ObjectStore:
    """A bucket and a prefix on an S3-compatible endpoint.

    Args:
        url: the parsed ``s3://BUCKET/PREFIX``.
        endpoint_url: a non-AWS endpoint (SeaweedFS, MinIO, Ceph ...); None for AWS.
        region: the region to sign for; None leaves it to the AWS chain.
        part_size: bytes per multipart part of ``put_stream`` (5 MiB to 5 GiB).
        connect_timeout, read_timeout: seconds, per attempt.
        max_attempts: tries of each request in all, retries included.

    The client is thread-safe: threads may share one store (each with its own
    ``StreamUpload``; an upload itself is for one thread).
    """

    def __init__(
        self,
        url: StoreUrl,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise Invalid(f"part_size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes")
        self.url = url
        self.endpoint_url = endpoint_url
        self.region = region
        self.part_size = part_size
        self.endpoint = endpoint_url or f"AWS S3 ({region or 'region from the AWS chain'})"
        config = Config(
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            tcp_keepalive=True,
            # Other stores are addressed by path (no bucket.host DNS); AWS picks its own.
            s3={"addressing_style": "path"} if endpoint_url else {},
            # Newer botocore adds CRC trailers by default, which several S3-compatible
            # stores refuse; integrity is ours to check anyway (SHA-256, read back).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            user_agent_extra="runyard",
        )
        session = _new_session(region)
        self.client: Any = session.client("s3", endpoint_url=endpoint_url, config=config)

    @property
    def bucket(self) -> str:
        return self.url.bucket

    @property
    def prefix(self) -> str:
        return self.url.prefix

    def key(self, *parts: str) -> str:
        """The full key of ``parts`` under the store's prefix (Invalid for bad parts)."""
        return self.url.key(*parts)

    def location(self, key: str | None = None) -> str:
        """``s3://bucket/key`` (the store itself without a key), for messages and reports."""
        return self.url.location(key)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ObjectStore({self.location()!r}, endpoint={self.endpoint!r})"

    # -- calls -------------------------------------------------------------------------

    def call(self, action: str, location: str, method: str, **params: Any) -> Any:
        """``client.<method>(Bucket=..., **params)``, its failures as store errors.

        ``action`` (write, read, delete, list) and ``location`` only shape the message.
        """
        try:
            return getattr(self.client, method)(Bucket=self.bucket, **params)
        except (ClientError, BotoCoreError) as exc:
            raise self.error(exc, action, location) from exc

    def error(self, exc: BaseException, action: str, location: str) -> StoreError:
        return store_error(
            exc, action=action, location=location, bucket=self.bucket, endpoint=self.endpoint
        )

    # -- checks ------------------------------------------------------------------------

    def probe(self) -> ProbeResult:
        """Check the bucket exists and a probe object can be written, read back and
        deleted under the prefix; raise the store error that says what failed."""
        started = time.monotonic()
        where = self.location()
        self.check_bucket()
        key = self.key(PROBE_PREFIX + secrets.token_hex(8))
        body = b"runyard probe " + secrets.token_hex(16).encode()
        self.call("write", where, "put_object", Key=key, Body=body)
        try:
            got = self._read_all(key, len(body) + 1, where)
            if got != body:
                raise StoreMismatch(
                    f"the probe object read back from {where} differs from what was written "
                    f"({len(got)} bytes, not {len(body)})"
                )
        except BaseException:
            self._delete_quietly(key)
            raise
        self.call("delete", where, "delete_object", Key=key)
        return ProbeResult(where, ("write", "read", "delete"), time.monotonic() - started)

    def check_bucket(self) -> None:
        """Raise StoreRefused when the bucket does not exist or cannot be used.

        HEAD answers carry no error code, so a 403 is asked again as a listing, whose
        answer says whether the credentials or the permissions were refused.
        """
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            status = http_status(exc)
            if status == 404 or error_code(exc) == "NoSuchBucket":
                raise StoreRefused(
                    f"bucket {self.bucket!r} does not exist at {self.endpoint}",
                    hint="create it, or correct [archive] store (runyard never creates buckets)",
                ) from exc
            if status != 403:
                raise self.error(exc, "list", self.location()) from exc
        except BotoCoreError as exc:
            raise self.error(exc, "list", self.location()) from exc
        self.call("list", self.location(), "list_objects_v2", Prefix=self.prefix, MaxKeys=1)

    # -- writing -----------------------------------------------------------------------

    def put_stream(
        self,
        key: str,
        *,
        part_size: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> StreamUpload:
        """A writer for ``key``: ``with store.put_stream(k) as up: up.write(b); up.commit()``.

        Streams a multipart upload in parts of ``part_size`` (one PutObject when it all
        fits in one part), hashing everything written; leaving the block by an exception
        or without ``commit()`` aborts it. See ``StreamUpload``.
        """
        size = part_size or self.part_size
        if not MIN_PART_SIZE <= size <= MAX_PART_SIZE:
            raise Invalid(f"part_size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes")
        return StreamUpload(self, key, part_size=size, metadata=metadata)

    def put_bytes(
        self, key: str, data: bytes, *, metadata: Mapping[str, str] | None = None
    ) -> PutResult:
        """Write a small object (a report) in one PutObject, its SHA-256 in its metadata."""
        digest = hashlib.sha256(data).hexdigest()
        answer = self.call(
            "write",
            self.location(key),
            "put_object",
            Key=key,
            Body=data,
            Metadata={**(metadata or {}), "sha256": digest},
        )
        counters.bytes_sent.add(len(data))
        return PutResult(len(data), digest, str(answer.get("ETag", "")).strip('"'))

    def delete(self, keys: Iterable[str]) -> int:
        """Delete ``keys`` (DeleteObjects, 1000 a call); missing keys are no error.

        Returns how many keys were asked for; raises StoreRefused naming the keys the
        store would not delete.
        """
        batch: list[str] = []
        done = 0
        for key in keys:
            batch.append(key)
            if len(batch) == DELETE_BATCH:
                done += self._delete_batch(batch)
                batch = []
        if batch:
            done += self._delete_batch(batch)
        return done

    def _delete_batch(self, keys: list[str]) -> int:
        answer = self.call(
            "delete",
            self.location(keys[0]),
            "delete_objects",
            Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
        )
        failed = answer.get("Errors") or []
        if failed:
            first = failed[0]
            raise StoreRefused(
                f"the archive store would not delete {len(failed)} of {len(keys)} objects; "
                f"first {self.location(first.get('Key'))}: {first.get('Code')} "
                f"({first.get('Message')})"
            )
        return len(keys)

    def _delete_quietly(self, key: str) -> None:
        # A cleanup after another failure, which is the one reported.
        with contextlib.suppress(ClientError, BotoCoreError):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def abort_incomplete_uploads(self, prefix: str | None = None) -> int:
        """Abort every multipart upload still open under ``prefix`` (default: the store's
        prefix); their parts are freed. Returns how many were aborted."""
        where = self._list_prefix(prefix)
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=where
        )
        aborted = 0
        for page in self._pages(pages, "list", self.location(where)):
            for upload in page.get("Uploads") or []:
                try:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                except ClientError as exc:
                    if error_code(exc) == "NoSuchUpload":
                        continue  # finished or aborted meanwhile
                    raise self.error(exc, "delete", self.location(upload["Key"])) from exc
                except BotoCoreError as exc:
                    raise self.error(exc, "delete", self.location(upload["Key"])) from exc
                aborted += 1
        return aborted

    # -- reading -----------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo | None:
        """Size, ETag and metadata of ``key``, or None when there is no such object."""
        try:
            answer = self.call("read", self.location(key), "head_object", Key=key)
        except StoreObjectMissing:
            return None
        return ObjectInfo(
            key=key,
            size=int(answer["ContentLength"]),
            etag=str(answer.get("ETag", "")).strip('"'),
            last_modified=answer.get("LastModified"),
            metadata=dict(answer.get("Metadata") or {}),
        )

    def open_read(self, key: str) -> ObjectReader:
        """A streaming reader of ``key`` (``read(n)``, a context manager, ``size`` from
        the answer's Content-Length); raises StoreObjectMissing when there is no such
        object."""
        answer = self.call("read", self.location(key), "get_object", Key=key)
        return ObjectReader(
            answer["Body"], self.location(key), self.error, int(answer["ContentLength"])
        )

    def get_bytes(self, key: str, max_bytes: int = MAX_SMALL_OBJECT) -> bytes:
        """The whole of a small object (a report); StoreRefused above ``max_bytes``."""
        return self._read_all(key, max_bytes, self.location(key))

    def _read_all(self, key: str, max_bytes: int, where: str) -> bytes:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise self.error(exc, "read", where) from exc
        with ObjectReader(answer["Body"], where, self.error, answer["ContentLength"]) as reader:
            data = reader.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise StoreRefused(f"{self.location(key)} is larger than {max_bytes} bytes")
        return data

    def verify(self, key: str, size: int, sha256: str) -> None:
        """Check ``key`` holds ``size`` bytes whose SHA-256 is ``sha256``, as read back
        from the store (one GET: its Content-Length checked first, then the whole body
        re-hashed; a HEAD before it cost a third of a small run's archive), never
        trusting the upload's answer or the object's metadata. Raises StoreMismatch or
        StoreObjectMissing."""
        where = self.location(key)
        digest = hashlib.sha256()
        read = 0
        with self.open_read(key) as reader:
            if reader.size != size:
                raise StoreMismatch(f"{where} holds {reader.size} bytes, not the {size} expected")
            while chunk := reader.read(READ_CHUNK):
                digest.update(chunk)
                read += len(chunk)
        if read != size:
            raise StoreMismatch(f"{where} gave {read} bytes when read, not the {size} expected")
        if digest.hexdigest() != sha256.lower():
            raise StoreMismatch(
                f"{where} has SHA-256 {digest.hexdigest()}, not the {sha256} expected"
            )

    def list_objects(self, prefix: str | None = None) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (default: all under the store's
        prefix), page after page, in key order."""
        where = self._list_prefix(prefix)
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=where
        )
        for page in self._pages(pages, "list", self.location(where)):
            for item in page.get("Contents") or []:
                yield ObjectInfo(
                    key=item["Key"],
                    size=int(item["Size"]),
                    etag=str(item.get("ETag", "")).strip('"'),
                    last_modified=item.get("LastModified"),
                )

    def _list_prefix(self, prefix: str | None) -> str:
        if prefix is not None:
            return prefix
        # "p/" and not "p": a sibling prefix "p2" is another store's.
        return self.prefix + "/" if self.prefix else ""

    def _pages(self, pages: Iterable[Any], action: str, where: str) -> Iterator[Any]:
        iterator = iter(pages)
        while True:
            try:
                page = next(iterator)
            except StopIteration:
                return
            except (ClientError, BotoCoreError) as exc:
                raise self.error(exc, action, where) from exc
            yield page


class ObjectReader:
    """A GetObject body read as a file (``read(n)``): counts the bytes fetched and turns
    a broken connection into StoreUnreachable. Close it (or use ``with``)."""

    def __init__(
        self,
        body: Any,
        location: str,
        error: Callable[[BaseException, str, str], StoreError],
        size: int,
    ) -> None:
        self._body = body
        self.location = location
        self._error = error
        self.size = size  # as the store's answer says

    def read(self, size: int = -1) -> bytes:
        try:
            data: bytes = self._body.read(None if size < 0 else size)
        except (BotoCoreError, urllib3.exceptions.HTTPError) as exc:
            raise self._error(exc, "read", self.location) from exc
        counters.bytes_fetched.add(len(data))
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
