"""Object storage for archive batches: an S3-compatible bucket (issue 16).

What lives where:

- ``url``: ``s3://BUCKET/PREFIX`` parsed and checked (``parse_store_url``, ``StoreUrl``);
- ``errors``: the store's errors, each under the runyard error it behaves as;
- ``counters``: bytes sent to and fetched from stores by this process (for /metrics);
- ``s3``: ``ObjectStore``, the one client (boto3), and ``open_store``;
- ``upload``: ``StreamUpload``, a streamed, hashed, multipart upload with bounded memory.

Importing this package (and ``url``, ``errors``, ``counters``) loads no boto3: only
``runyard.store.s3`` and ``runyard.store.upload`` do, when a store is actually used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runyard.store.errors import (
    StoreClientMissing,
    StoreError,
    StoreMismatch,
    StoreObjectMissing,
    StoreRefused,
    StoreUnreachable,
)
from runyard.store.url import StoreUrl, parse_store_url

if TYPE_CHECKING:
    from runyard.store.s3 import ObjectStore

BOTO3_HINT = "install runyard with its s3 extra: pip install 'runyard[s3]' (it brings boto3)"


def open_store(
    url: str | StoreUrl,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    **options: Any,
) -> ObjectStore:
    """An ``ObjectStore`` for ``url`` (``s3://BUCKET/PREFIX``, parsed when text).

    Loads boto3 here, on first use; StoreClientMissing when it is not installed.
    ``options`` go to ``ObjectStore`` (part_size, timeouts, max_attempts).
    """
    parsed = parse_store_url(url) if isinstance(url, str) else url
    try:
        from runyard.store.s3 import ObjectStore
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("boto3", "botocore", "urllib3"):
            raise
        raise StoreClientMissing(
            f"the archive store {parsed} needs boto3, which is not installed", hint=BOTO3_HINT
        ) from None
    return ObjectStore(parsed, endpoint_url=endpoint_url, region=region, **options)


__all__ = [
    "StoreClientMissing",
    "StoreError",
    "StoreMismatch",
    "StoreObjectMissing",
    "StoreRefused",
    "StoreUnreachable",
    "StoreUrl",
    "open_store",
    "parse_store_url",
]
