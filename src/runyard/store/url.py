"""``s3://BUCKET/PREFIX``: where an archive store lives, parsed strictly.

The bucket follows the S3 naming rules (3–63 characters of lowercase letters, digits,
dots and hyphens, ...), so a typo is refused here rather than by the store after a
long batch has been planned. The prefix is optional and normalised without leading
or trailing slashes; every key runyard writes is ``PREFIX/...`` (or ``...`` without
one). Anything else is ``Invalid`` with a message that says what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runyard.errors import Invalid

SCHEME = "s3://"
MAX_KEY_BYTES = 1024  # S3's limit on a key, in UTF-8 bytes
MAX_PREFIX_BYTES = 512  # leaves room under MAX_KEY_BYTES for batch and run names

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4_RE = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
# Reserved by AWS for its own features (access points, directory buckets, ...).
_RESERVED_STARTS = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_ENDS = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
# Legal in S3 keys, but in a URL they would read as a query or fragment, and a backslash
# as a Windows path separator; control characters cannot be shown in a message.
_REFUSED_KEY_CHARS = re.compile(r"[\x00-\x1f\x7f?#\\]")


def bucket_problem(bucket: str) -> str | None:
    """Why ``bucket`` is not a valid S3 bucket name, or None when it is."""
    if not 3 <= len(bucket) <= 63:
        return f"a bucket name has 3 to 63 characters, not {len(bucket)}"
    if not _BUCKET_RE.fullmatch(bucket):
        return (
            "a bucket name holds only lowercase letters, digits, '.' and '-', "
            "and begins and ends with a letter or a digit"
        )
    if ".." in bucket or ".-" in bucket or "-." in bucket:
        return "a bucket name has no '..', '.-' or '-.'"
    if _IPV4_RE.fullmatch(bucket):
        return "a bucket name is not an IP address"
    if bucket.startswith(_RESERVED_STARTS) or bucket.endswith(_RESERVED_ENDS):
        return "that bucket name uses a prefix or suffix AWS reserves"
    return None


def key_problem(key: str, what: str = "a key") -> str | None:
    """Why ``key`` (a prefix or a key below it) is refused, or None when it is fine."""
    if key.startswith("/") or key.endswith("/"):
        return f"{what} neither begins nor ends with '/'"
    bad = _REFUSED_KEY_CHARS.search(key)
    if bad:
        return f"{what} may not hold {bad.group()!r}"
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return f"{what} is not valid UTF-8 text"
    if any(part in ("", ".", "..") for part in key.split("/")):
        return f"{what} has no empty, '.' or '..' parts between its slashes"
    if size > MAX_KEY_BYTES:
        return f"{what} has {size} bytes of UTF-8; S3 allows {MAX_KEY_BYTES}"
    return None


@dataclass(frozen=True)
class StoreUrl:
    """A parsed ``s3://BUCKET/PREFIX``; ``prefix`` is ``""`` when there is none."""

    bucket: str
    prefix: str = ""

    def key(self, *parts: str) -> str:
        """The full key of ``parts`` under the prefix: ``key("b1", "run.tar")`` is
        ``PREFIX/b1/run.tar``. Each part may hold slashes, but no empty, ``.`` or ``..``
        parts; Invalid otherwise."""
        if not parts:
            raise Invalid("a key needs at least one part below the store's prefix")
        for part in parts:
            problem = key_problem(part, f"the key part {part!r}")
            if problem:
                raise Invalid(problem)
        key = "/".join((self.prefix, *parts) if self.prefix else parts)
        problem = key_problem(key, f"the key {key!r}")
        if problem:
            raise Invalid(problem)
        return key

    def location(self, key: str | None = None) -> str:
        """``s3://bucket/key`` for people; the store itself without a key."""
        return f"{SCHEME}{self.bucket}/{key if key is not None else self.prefix}".rstrip("/")

    def __str__(self) -> str:
        return self.location()


def parse_store_url(text: str) -> StoreUrl:
    """Parse ``s3://BUCKET`` or ``s3://BUCKET/PREFIX``; Invalid, saying why, otherwise."""
    if not isinstance(text, str):
        raise Invalid(f"an archive store is a text URL s3://BUCKET/PREFIX, not {text!r}")
    shown = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if not text.lower().startswith(SCHEME):
        raise Invalid(
            f"archive store {shown!r} is not an s3:// URL",
            hint="write it as s3://BUCKET or s3://BUCKET/PREFIX",
        )
    bucket, _, prefix = text[len(SCHEME) :].partition("/")
    problem = bucket_problem(bucket)
    if problem:
        raise Invalid(f"archive store {shown!r}: invalid bucket {bucket!r}: {problem}")
    prefix = prefix.strip("/")
    if prefix:
        problem = key_problem(prefix, "the prefix")
        if problem is None and len(prefix.encode("utf-8")) > MAX_PREFIX_BYTES:
            problem = f"the prefix has more than {MAX_PREFIX_BYTES} bytes of UTF-8"
        if problem:
            raise Invalid(f"archive store {shown!r}: {problem}")
    return StoreUrl(bucket=bucket, prefix=prefix)
