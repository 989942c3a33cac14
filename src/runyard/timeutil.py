"""Times from numbers people type: "older than N days", checked the same everywhere."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from runyard.errors import Invalid


def shown_number(value: float) -> str:
    """A number for a message, shortened when it has hundreds of digits."""
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 30 else text[:12] + "…" + f" ({len(text)} digits)"


def days_before(now: datetime, days: float, what: str) -> datetime:
    """``now`` minus ``days``; Invalid (exit 5) for a number that is not finite, is
    negative, or reaches before the year 1 (Python's datetimes end there)."""
    if not (math.isfinite(days) and days >= 0):
        raise Invalid(f"{what} must be a number of days, 0 or more (got {days})")
    try:
        return now - timedelta(days=days)
    except OverflowError:
        largest = (now - datetime(1, 1, 1, tzinfo=now.tzinfo or UTC)).days
        raise Invalid(
            f"{what} {shown_number(days)} days reaches before the year 1; the largest "
            f"accepted is {largest:,} days"
        ) from None
