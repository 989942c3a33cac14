"""Identifiers: how runyard makes them and which names it accepts.

Generated ids sort by creation time, so "newest first" and "ls runs/" agree.
Run ids become folder names, so they are validated before anything touches the
filesystem; the rules are deliberately narrow (a portable file name that cannot
climb out of its parent or hide itself).
"""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import UTC, datetime

from runyard.errors import Invalid

RUN_ID_MAX_LENGTH = 128
GROUP_MAX_LENGTH = 200
NAME_MAX_LENGTH = 200

# Letters, digits, '.', '_' and '-'; must start with a letter, digit or '_'
# (no leading dot: hidden; no leading dash: would read as a command-line option).
_RUN_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
# C0, DEL and C1 (\x9b is an 8-bit CSI: a terminal escape sequence in disguise).
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Lone surrogates: what undecodable bytes (argv, file names) become; UTF-8 cannot hold them.
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")

_clock_lock = threading.Lock()
_last_micros = 0
_last_ulid = (0, 0)  # (milliseconds, random part) of the last new_id


def _monotonic_utc_micros() -> int:
    """Microseconds since the epoch, strictly increasing within this process."""
    global _last_micros
    with _clock_lock:
        now = time.time_ns() // 1000
        if now <= _last_micros:
            now = _last_micros + 1
        _last_micros = now
        return now


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A ULID-like id (48-bit milliseconds + 80 random bits) with a prefix: ``pv-01j…``."""
    global _last_ulid
    millis = _monotonic_utc_micros() // 1000
    rand = int.from_bytes(os.urandom(10), "big")
    with _clock_lock:
        last_millis, last_rand = _last_ulid
        if millis <= last_millis:
            # Same millisecond as the previous id: the next value after it (monotonic ULID),
            # else ids made in one millisecond would sort at random.
            millis, rand = last_millis, last_rand + 1
            if rand >> 80:
                millis, rand = millis + 1, 0
        _last_ulid = (millis, rand)
    return f"{prefix}-{_base32(millis, 10)}{_base32(rand, 16)}"


def new_run_id() -> str:
    """A run id that sorts by creation time and reads as one: ``20261121T185601.123456Z-3f9a1c``."""
    micros = _monotonic_utc_micros()
    stamp = datetime.fromtimestamp(micros / 1_000_000, tz=UTC)
    return f"{stamp:%Y%m%dT%H%M%S}.{micros % 1_000_000:06d}Z-{os.urandom(3).hex()}"


def run_id_problem(run_id: str) -> str | None:
    """Why ``run_id`` is not a valid run id, or None when it is."""
    if not run_id:
        return "a run id cannot be empty"
    if len(run_id) > RUN_ID_MAX_LENGTH:
        return f"a run id is at most {RUN_ID_MAX_LENGTH} characters (got {len(run_id)})"
    if run_id.startswith("."):
        return "a run id cannot start with '.'"
    if run_id.startswith("-"):
        return "a run id cannot start with '-'"
    if ".." in run_id:
        return "a run id cannot contain '..'"
    if not _RUN_ID_RE.fullmatch(run_id):
        bad = sorted({c for c in run_id if not (c.isascii() and (c.isalnum() or c in "._-"))})
        return "a run id may contain only letters, digits, '.', '_' and '-'" + (
            f" (found {', '.join(repr(c) for c in bad)})" if bad else ""
        )
    return None


def validate_run_id(run_id: str) -> str:
    """Return ``run_id`` unchanged, or raise Invalid saying what is wrong with it."""
    problem = run_id_problem(run_id)
    if problem:
        raise Invalid(f"invalid run id {run_id!r}: {problem}")
    return run_id


def validate_label(value: str, what: str, max_length: int = NAME_MAX_LENGTH) -> str:
    """A human label (scenario name, group, tag): non-empty, bounded, printable, trimmed."""
    if not value or not value.strip():
        raise Invalid(f"{what} cannot be empty")
    if value != value.strip():
        raise Invalid(f"{what} {value!r} has leading or trailing spaces")
    if len(value) > max_length:
        raise Invalid(f"{what} is at most {max_length} characters (got {len(value)})")
    if _CONTROL_RE.search(value):
        raise Invalid(f"{what} {value!r} contains control characters")
    if _SURROGATE_RE.search(value):
        raise Invalid(f"{what} {value!r} is not valid text (undecodable bytes, not UTF-8?)")
    return value


TEXT_MAX_LENGTH = 10_000


def validate_text(value: str, what: str, max_length: int = TEXT_MAX_LENGTH) -> str:
    """Free text (a description, an error message): bounded and storable as UTF-8."""
    if len(value) > max_length:
        raise Invalid(f"{what} is at most {max_length} characters (got {len(value)})")
    if _SURROGATE_RE.search(value):
        raise Invalid(f"{what} is not valid text (undecodable bytes, not UTF-8?)")
    return value
