"""Canonical JSON: one text per JSON value, so equal content gets an equal id.

Key order, whitespace and number formatting (``1``, ``1.0``, ``10e-1``) do not
change the canonical text; any change of value does. Numbers are read as exact
decimals (never through binary floats, which would merge values that differ in
the 17th digit), and written in one normal form.

Every JSON value runyard accepts (config content, plan params, scenario data, run
summaries and tags, ``run.json``) also passes ``check_json_limits``: at most
``MAX_JSON_DEPTH`` levels of nesting, at most ``MAX_JSON_BYTES`` of text, numbers that are
finite and non-zero as a float64 when they are not zero, and strings without lone
surrogates. What passes can be stored on SQLite and PostgreSQL, shown by every listing
and page, and rebuilt from disk; what does not is refused (``Invalid``, exit 5), never
changed. docs/manifest.md ("JSON limits") is the user-facing description.
"""

from __future__ import annotations

import hashlib
import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

from runyard.errors import Invalid
from runyard.fsutil import read_regular_file

MAX_JSON_DEPTH = 64
"""Levels of nested objects and arrays: ``[[1]]`` is 2 levels deep, a scalar 0."""

MAX_JSON_BYTES = 4 * 1024 * 1024
"""UTF-8 bytes of a JSON text (4 MiB)."""

# Beyond this decimal exponent a number is written as mantissa + exponent
# rather than expanded into hundreds of digits.
_PLAIN_EXPONENT_LIMIT = 30


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _text_bytes(text: str) -> int:
    """UTF-8 bytes of ``text``, counting a lone surrogate as the 3 bytes it would take."""
    if len(text) > MAX_JSON_BYTES or len(text) * 4 <= MAX_JSON_BYTES:
        return len(text)  # decided without encoding: at least 1, at most 4 bytes a character
    return len(text.encode("utf-8", "surrogatepass"))


def check_text_size(text: str, what: str = "JSON") -> None:
    """Raise Invalid if ``text`` is longer than ``MAX_JSON_BYTES`` in UTF-8."""
    if _text_bytes(text) > MAX_JSON_BYTES:
        raise Invalid(
            f"{what}: more than {MAX_JSON_BYTES} bytes of JSON; the limit is {MAX_JSON_BYTES}"
        )


def _where(path: list[str | int]) -> str:
    out = "$"
    for step in path:
        out += (
            f"[{step}]"
            if isinstance(step, int)
            else f".{step}"
            if step.isidentifier()
            else ("[" + json.dumps(step)[:40] + "]")
        )
    return out


def _number_problem(value: Any) -> str | None:
    """Why a number is refused, or None: it must be a finite float64, and not one that is
    zero only because it underflowed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return (
            None
            if math.isfinite(value)
            else f"NaN and Infinity are not valid JSON numbers ({value!r})"
        )
    if isinstance(value, int):
        try:
            float(value)
        except OverflowError:
            return "a number beyond the float64 range (about 1.8e308)"
        return None
    if isinstance(value, Decimal):
        if not value.is_finite():
            return f"NaN and Infinity are not valid JSON numbers ({value})"
        if value.is_zero():
            return None
        as_float = float(value)
        if math.isinf(as_float):
            return f"{_short(value)} is beyond the float64 range (about 1.8e308)"
        if as_float == 0.0:
            return f"{_short(value)} is too small for a float64 (it would read as 0)"
    return None


def _short(value: Decimal) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_json_limits(value: Any, what: str = "JSON", *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise Invalid if a parsed JSON value breaks runyard's limits.

    Nesting deeper than ``MAX_JSON_DEPTH``; a number that is not finite as a float64
    (``1e400``) or a non-zero one that underflows to 0 (``1e-400``); a string or key
    holding a lone surrogate. Iterative: any depth is checked without recursion.

    Args:
        max_depth: for a document that wraps limited values one level down (``run.json``
            holds a summary: ``MAX_JSON_DEPTH + 1``).
    """
    # (value, depth of the containers holding it, parent entry, step from the parent)
    stack: list[tuple[Any, int, Any, str | int | None]] = [(value, 0, None, None)]
    while stack:
        entry = stack.pop()
        item, depth, _, _ = entry
        problem: str | None = None
        if isinstance(item, dict | list | tuple):
            if depth + 1 > max_depth:
                raise Invalid(f"{what}: nested {depth + 1} levels deep; the limit is {max_depth}")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        problem = f"a key of type {type(key).__name__} (keys are strings)"
                    elif _has_lone_surrogate(key):
                        problem = (
                            f"the key {json.dumps(key)[:60]} holds an unpaired surrogate "
                            "(\\ud800-\\udfff)"
                        )
                    if problem:
                        break
                    stack.append((child, depth + 1, entry, key))
            else:
                for index, child in enumerate(item):
                    stack.append((child, depth + 1, entry, index))
        elif isinstance(item, str):
            if _has_lone_surrogate(item):
                problem = (
                    f"the string {json.dumps(item)[:60]} holds an unpaired surrogate "
                    "(\\ud800-\\udfff)"
                )
        elif isinstance(item, int | float | Decimal):
            problem = _number_problem(item)
        elif item is not None:
            problem = f"cannot store a value of type {type(item).__name__} as JSON"
        if problem:
            raise Invalid(f"{what}: {problem} at {_where(_path(entry))}")


def _path(entry: tuple[Any, int, Any, str | int | None]) -> list[str | int]:
    steps: list[str | int] = []
    while entry[2] is not None:
        step = entry[3]
        assert step is not None
        steps.append(step)
        entry = entry[2]
    steps.reverse()
    return steps


def parse_exact(text: str, what: str = "JSON") -> Any:
    """Parse JSON text keeping numbers as Decimal; raise Invalid with line and column.

    The text and the value must keep runyard's JSON limits (``check_json_limits``).
    """
    check_text_size(text, what)
    value = parse_unchecked(text, what)
    check_json_limits(value, what)
    return value


def parse_unchecked(text: str, what: str = "JSON") -> Any:
    """Parse JSON text keeping numbers as Decimal (``1e400`` is not infinity here),
    refusing NaN and a key given twice; Invalid with line and column. The limits are the
    caller's to check (``parse_exact`` does; a web request body checks each field)."""
    try:
        return json.loads(
            text,
            parse_float=Decimal,
            parse_int=Decimal,
            parse_constant=_reject_constant,
            object_pairs_hook=_pairs_without_duplicates,
        )
    except json.JSONDecodeError as exc:
        raise Invalid(
            f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValueError as exc:
        raise Invalid(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise Invalid(
            f"{what}: nested more than {MAX_JSON_DEPTH} levels deep; the limit is {MAX_JSON_DEPTH}"
        ) from None


class _OutOfRange(Exception):
    """A number ``loads_checked`` refuses (not a ValueError, which json would reword)."""


def _checked_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _OutOfRange(f"{text[:40]} is beyond the float64 range (about 1.8e308)")
    if value == 0.0 and not Decimal(text).is_zero():
        raise _OutOfRange(f"{text[:40]} is too small for a float64 (it would read as 0)")
    return value


def loads_checked(
    text: str | bytes,
    what: str = "JSON",
    *,
    max_depth: int = MAX_JSON_DEPTH,
    max_bytes: int = MAX_JSON_BYTES,
) -> Any:
    """Parse JSON into plain Python values (numbers as int/float) within runyard's limits.

    For JSON that is stored as Python values rather than canonical text (``run.json``, a
    runner's ``summary.json``): the same limits as ``parse_exact``, but no Decimals.
    Bytes must be UTF-8. Raises Invalid.
    """
    if isinstance(text, bytes):
        if len(text) > max_bytes:
            raise Invalid(f"{what}: more than {max_bytes} bytes of JSON; the limit is {max_bytes}")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Invalid(f"{what}: not UTF-8 text (byte {exc.start})") from None
    elif _text_bytes(text) > max_bytes:
        raise Invalid(f"{what}: more than {max_bytes} bytes of JSON; the limit is {max_bytes}")
    try:
        value = json.loads(text, parse_float=_checked_float, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise Invalid(
            f"{what}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except _OutOfRange as exc:
        raise Invalid(f"{what}: {exc}") from None
    except ValueError as exc:
        raise Invalid(f"{what}: not valid JSON: {exc}") from None
    except RecursionError:
        raise Invalid(
            f"{what}: nested more than {max_depth} levels deep; the limit is {max_depth}"
        ) from None
    check_json_limits(value, what, max_depth=max_depth)
    return value


def read_json_text(path: Path | str, what: str, max_bytes: int = MAX_JSON_BYTES) -> str:
    """A JSON file's text: a regular file (``read_regular_file``), at most ``max_bytes``,
    UTF-8. Raises Invalid; OSError as the OS says."""
    raw = read_regular_file(path, what, max_bytes)
    if len(raw) > max_bytes:
        raise Invalid(f"{what}: more than {max_bytes} bytes of JSON; the limit is {max_bytes}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"{what}: not UTF-8 text (byte {exc.start})") from None


def _number_text(value: Decimal) -> str:
    if value.is_nan() or value.is_infinite():
        raise Invalid("NaN and Infinity are not valid JSON numbers")
    if value.is_zero():
        return "0"
    # Trailing zeros are stripped by hand: Decimal.normalize() rounds to the context's
    # 28 digits (merging values that differ further down) and overflows past 1e999999.
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    coefficient = "".join(map(str, digits))
    mantissa = coefficient.rstrip("0")
    exponent += len(coefficient) - len(mantissa)
    adjusted = exponent + len(mantissa) - 1
    minus = "-" if sign else ""
    if -_PLAIN_EXPONENT_LIMIT <= adjusted <= _PLAIN_EXPONENT_LIMIT:
        if exponent >= 0:
            return minus + mantissa + "0" * exponent
        point = len(mantissa) + exponent
        if point > 0:
            return f"{minus}{mantissa[:point]}.{mantissa[point:]}"
        return f"{minus}0.{'0' * -point}{mantissa}"
    head = mantissa[0] + ("." + mantissa[1:] if len(mantissa) > 1 else "")
    return f"{minus}{head}e{adjusted:+d}"


def _string_text(value: str) -> str:
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # "\ud800" parses to a lone surrogate, which no UTF-8 text (or database) can hold.
        shown = json.dumps(value)  # ASCII: the message itself must be printable
        raise Invalid(
            f"string {shown[:60]} holds an unpaired surrogate (\\ud800-\\udfff)"
        ) from None
    return text


def _write(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value)):
            if i:
                out.append(",")
            out.append(_string_text(key))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    elif isinstance(value, str):
        out.append(_string_text(value))
    elif value is None or isinstance(value, bool):
        out.append(json.dumps(value))
    elif isinstance(value, Decimal):
        out.append(_number_text(value))
    elif isinstance(value, int):
        out.append(_number_text(Decimal(value)))  # 10**31 and 1e31 are one value
    elif isinstance(value, float):
        out.append(_number_text(Decimal(repr(value))))
    else:
        raise Invalid(f"cannot store a value of type {type(value).__name__} as JSON")


def canonical_text(value: Any, what: str = "JSON") -> str:
    """The canonical JSON text of a parsed value (dicts, lists, str, numbers, bools, None).

    The value must keep runyard's JSON limits (``check_json_limits``), and so must its text.
    """
    check_json_limits(value, what)
    out: list[str] = []
    _write(value, out)
    text = "".join(out)
    check_text_size(text, what)
    return text


def canonicalize(text: str, what: str = "JSON") -> str:
    """Canonical JSON text of JSON ``text``."""
    return canonical_text(parse_exact(text, what))


def content_digest(canonical: str) -> str:
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def config_version_id(canonical: str) -> str:
    """The id of a config version: derived from its canonical text only."""
    return "cfg-" + content_digest(canonical)[:20]


def loads(text: str) -> Any:
    """Parse stored canonical JSON for output (numbers as int/float)."""
    return json.loads(text)
