"""What every command module shares: the --json option, opening the yard, parsing helpers."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import typer

from runyard.canonical import (
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    check_json_limits,
    parse_exact,
    read_json_text,
)
from runyard.errors import Invalid
from runyard.yard import Yard, open_yard

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")
]
LimitOption = Annotated[int, typer.Option("--limit", help="Items per page (1-1000).", metavar="N")]
AfterOption = Annotated[
    str | None,
    typer.Option("--after", help="Cursor from a previous page's next_cursor.", metavar="CURSOR"),
]


def yard_from(ctx: typer.Context, check_schema: bool = True) -> Yard:
    """Open the yard chosen by --yard, RUNYARD_YARD, or the folders above the current one."""
    explicit: str | None = (ctx.find_root().obj or {}).get("yard")
    return open_yard(explicit, check_schema=check_schema)


def parse_key_values(items: list[str] | None, what: str, json_values: bool) -> dict[str, Any]:
    """``KEY=VALUE`` options into a dict; with ``json_values`` a value that parses as JSON
    (``52``, ``true``, ``[1,2]``) is kept as that value, anything else as a string."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise Invalid(f"{what} {item!r} is not KEY=VALUE")
        if key in out:
            raise Invalid(f"{what} {key!r} is given twice")
        if json_values:
            # Numbers as exact decimals, so that the JSON limits see 1e-400 as what it is.
            try:
                parsed = json.loads(
                    value, parse_float=Decimal, parse_int=Decimal, parse_constant=_no_constant
                )
            except ValueError:
                out[key] = value  # not JSON: the text itself
                continue
            except RecursionError:
                raise Invalid(
                    f"{what} {key}: nested more than {MAX_JSON_DEPTH} levels deep; "
                    f"the limit is {MAX_JSON_DEPTH}"
                ) from None
            check_json_limits(parsed, f"{what} {key}")
            out[key] = parsed
        else:
            out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def read_json_object(value: str, what: str) -> dict[str, Any]:
    """A JSON object given inline or as ``@FILE`` (``@-`` reads standard input)."""
    source = what
    if value.startswith("@"):
        name = value[1:]
        source = f"{what} ({name})"
        if name == "-":
            text = _read_stdin()
        else:
            try:
                text = read_json_text(name, source)
            except OSError as exc:
                raise Invalid(f"{what}: cannot read {name}: {exc.strerror}") from None
    else:
        text = value
    parse_exact(text, source)  # the JSON limits, and a clear message on bad JSON
    parsed = json.loads(text)
    if not isinstance(parsed, dict):
        raise Invalid(f"{source} must be a JSON object")
    return parsed


def parse_time(value: str | None, what: str) -> datetime | None:
    """An ISO 8601 date or date-time (``2026-11-21``, ``2026-11-21T09:00+09:00``); naive = UTC."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(
            f"{what} {value!r} is not an ISO 8601 date or time (e.g. 2026-11-21 or "
            "2026-11-21T09:00:00Z)"
        ) from None


def _read_stdin() -> str:
    """Standard input, up to just past the JSON size limit (the parser says it is too big)."""
    try:
        return typer.get_text_stream("stdin").read(MAX_JSON_BYTES + 1)
    except UnicodeDecodeError:
        raise Invalid("standard input is not UTF-8 text") from None


def read_text_file(file: str) -> str:
    """A UTF-8 JSON file given on the command line ('-': standard input); Invalid if not.

    Never blocks: a FIFO, socket or device is refused without being opened, and a file
    over the JSON size limit is not read whole.
    """
    if file == "-":
        return _read_stdin()
    try:
        return read_json_text(file, file)
    except FileNotFoundError:
        raise Invalid(f"no such file: {file}") from None
    except OSError as exc:
        raise Invalid(f"cannot read {file}: {exc.strerror}") from None
