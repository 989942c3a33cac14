"""Hostile input at every entrance: JSON limits, files that are not regular files, option
values at their edges, errors that name the right thing, text that is not UTF-8.

Each test here failed on main before issue 13; see docs/manifest.md ("JSON limits") and
docs/exit-codes.md for the answers they hold runyard to.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from runyard.canonical import (
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    canonical_text,
    check_json_limits,
    parse_exact,
)
from runyard.errors import Invalid


def nested(depth: int, leaf: str = "1") -> str:
    """JSON text of ``depth`` nested arrays around ``leaf``."""
    return "[" * depth + leaf + "]" * depth


def nested_value(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


# --- the limits themselves (runyard.canonical) ---------------------------------------------


def test_depth_limit_is_64_levels_exactly():
    assert MAX_JSON_DEPTH == 64
    assert parse_exact(nested(64)) is not None
    parse_exact('{"a":' * 63 + "[1]" + "}" * 63)  # objects count too: 64 levels
    with pytest.raises(Invalid, match=r"^c\.json: nested 65 levels deep; the limit is 64$"):
        parse_exact(nested(65), "c.json")
    with pytest.raises(Invalid, match="nested 65 levels deep"):
        parse_exact('{"a":' * 64 + "[1]" + "}" * 64)


def test_deep_nesting_never_raises_recursion_error():
    with pytest.raises(Invalid, match="the limit is 64"):
        parse_exact(nested(100_000))
    with pytest.raises(Invalid, match="nested 65 levels deep"):
        check_json_limits(nested_value(100_000), "x")
    with pytest.raises(Invalid, match="nested 65 levels deep"):
        canonical_text({"deep": nested_value(100_000)})


def test_size_limit_is_4_mib_of_utf8():
    assert MAX_JSON_BYTES == 4 * 1024 * 1024
    fits = '"' + "a" * (MAX_JSON_BYTES - 2) + '"'
    assert len(parse_exact(fits)) == MAX_JSON_BYTES - 2
    with pytest.raises(Invalid, match="the limit is 4194304"):
        parse_exact(fits + " ")
    # counted in UTF-8 bytes, not characters: 2 bytes each
    with pytest.raises(Invalid, match="the limit is 4194304"):
        parse_exact('"' + "é" * (MAX_JSON_BYTES // 2) + '"')


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"n": 1e400}', r"^f: 1E\+400 is beyond the float64 range .* at \$\.n$"),
        ('{"n": -1e400}', r"^f: -1E\+400 is beyond the float64 range"),
        ('{"n": [0, 1e-400]}', r"^f: 1E-400 is too small for a float64 .* at \$\.n\[1\]$"),
        ('{"a b": "\\ud800"}', r'unpaired surrogate .* at \$\["a b"\]$'),
        ('{"\\udc80": 1}', r"^f: the key .* holds an unpaired surrogate"),
    ],
)
def test_values_beyond_the_limits_say_what_and_where(text, message):
    with pytest.raises(Invalid, match=message):
        parse_exact(text, "f")


def test_python_values_get_the_same_answer():
    for bad in ({"n": float("inf")}, {"n": 10**400}, {"n": Decimal("1e-400")}, {"\udc80": 1}):
        with pytest.raises(Invalid):
            check_json_limits(bad, "v")
    check_json_limits({"n": 1e308, "m": 5e-324, "z": 0, "b": True, "s": "😀"}, "v")
