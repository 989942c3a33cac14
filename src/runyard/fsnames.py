"""Names from the disk that are not UTF-8, in one lossless form for every output.

Linux names are bytes. Python hands a name that is not valid UTF-8 over as a ``str``
holding lone surrogates (``surrogateescape``: the byte ``0xff`` becomes ``'\\udcff'``),
which works for every ``os`` call but which no UTF-8 text can hold: a JSON file, a
database, an HTTP response or a terminal. runyard therefore writes such a name in two
forms, documented in docs/lifecycle.md ("Names that are not UTF-8"):

- its **display form** (:func:`shown`): the name with each byte that is not UTF-8
  written as ``\\xNN``, everything else as it is. Messages, tables, pages and every
  text field of a report, a log or an API answer use it;
- its **exact bytes** (:func:`exact_b64`), base64, in a field named like the display
  field with ``_b64`` after it, present only when the name is not UTF-8. Whatever
  reads a report back (``restore``, ``recover``) uses these bytes.

:func:`clean` is the last line of defence of every output: any string that still
holds a surrogate is turned into its display form, so that no odd name ever turns a
report, a ``--json`` document or an API answer into a crash.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

from runyard.errors import Invalid


def is_utf8(name: str) -> bool:
    """True when ``name`` holds no lone surrogate (it came from valid UTF-8)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(name: str) -> str:
    """The display form: each byte that is not UTF-8 as ``\\xNN``."""
    if is_utf8(name):
        return name
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        # A lone surrogate that did not come from a byte (a JSON "\\ud800"): \\udNNN.
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def exact_b64(name: str) -> str | None:
    """Base64 of the name's bytes when it is not UTF-8; None when the display form is exact."""
    if is_utf8(name):
        return None
    return base64.b64encode(os.fsencode(name)).decode("ascii")


def from_b64(value: str, what: str = "name") -> str:
    """The name (as ``os`` functions take it) from its ``_b64`` form."""
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise Invalid(f"{what} is not valid base64") from None
    if not raw or b"\x00" in raw:
        raise Invalid(f"{what} is empty or holds a NUL byte")
    return os.fsdecode(raw)


def exact(display: str, b64: str | None, what: str = "name") -> str:
    """A name read back from a document: its ``_b64`` bytes if present, else the display form."""
    return from_b64(b64, what) if b64 is not None else display


def clean(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, strings …) with every string in display form."""
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, dict):
        return {clean(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def json_bytes(value: Any, indent: int | None = None) -> bytes:
    """UTF-8 JSON of ``value``; strings holding surrogates are written in display form."""
    try:
        return json.dumps(value, ensure_ascii=False, indent=indent).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(clean(value), ensure_ascii=False, indent=indent).encode("utf-8")
