"""Upper bounds of numbers the CLI and ``runyard.toml`` take, in a module with no
dependencies (the CLI checks its options against them before importing anything heavy).

They keep every number inside what timers, dates and BIGINT columns can hold
(``time.sleep(1e20)`` and ``timedelta(minutes=10**15)`` overflow); docs/configuration.md.
"""

from __future__ import annotations

MAX_COUNT = 10**9
MAX_KEEP_RECENT_MINUTES = 52_560_000  # 100 years
MAX_KEEP_LAST_RUNS = 1_000_000
MAX_SECONDS = 10_000_000  # about 115 days
MAX_PAGE_SIZE = 1000  # the largest page of any list (registry.common re-exports it)
