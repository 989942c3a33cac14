"""Canonical JSON: one text per JSON value, so equal content gets an equal id.

Key order, whitespace and number formatting (``1``, ``1.0``, ``10e-1``) do not
change the canonical text; any change of value does. Numbers are read as exact
decimals (never through binary floats, which would merge values that differ in
the 17th digit), and written in one normal form.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

from runyard.errors import Invalid

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


def parse_exact(text: str, what: str = "JSON") -> Any:
    """Parse JSON text keeping numbers as Decimal; raise Invalid with line and column."""
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


def canonical_text(value: Any) -> str:
    """The canonical JSON text of a parsed value (dicts, lists, str, numbers, bools, None)."""
    out: list[str] = []
    _write(value, out)
    return "".join(out)


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
