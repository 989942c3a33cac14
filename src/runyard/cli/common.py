"""What every command module shares: the --json option, opening the yard, parsing helpers."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from runyard.yard import Yard

from runyard import fsnames
from runyard.canonical import (
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    check_json_limits,
    parse_exact,
    read_json_text,
)
from runyard.errors import Invalid
from runyard.timeutil import days_before, shown_number

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")
]
LimitOption = Annotated[int, typer.Option("--limit", help="Items per page (1-1000).", metavar="N")]
AfterOption = Annotated[
    str | None,
    typer.Option("--after", help="Cursor from a previous page's next_cursor.", metavar="CURSOR"),
]


def yard_from(ctx: typer.Context, check_schema: bool = True) -> Yard:
    """Open the yard chosen by --yard, RUNYARD_YARD, or the folders above the current one.

    First refuses a text argument that is not UTF-8 (``check_text_params``): every
    command that opens a yard does so before anything happens. A command that gets here
    with --server has no remote form: Invalid (exit 5) naming it (``cli.server``).
    """
    check_text_params(ctx)
    if (ctx.find_root().obj or {}).get("server"):
        from runyard.cli.server import local_only

        raise local_only(ctx.command_path.partition(" ")[2] or ctx.command_path)
    explicit: str | None = (ctx.find_root().obj or {}).get("yard")
    from runyard.yard import open_yard

    return open_yard(explicit, check_schema=check_schema)


# Parameters that name files: their bytes are used as they are (os functions take them
# losslessly), so they may be any bytes. Every other text parameter must be UTF-8.
PATH_PARAMETERS = frozenset({"yard", "path", "paths", "file", "data", "report", "summary"})


def _label(param: Any) -> str:
    """``--reason`` for an option, ``NAME`` for an argument."""
    if param.param_type_name == "option":
        return str(max(param.opts, key=len))
    return str(param.metavar or param.name.upper()).strip("[]")


def check_text_params(ctx: typer.Context) -> None:
    """Refuse (Invalid, exit 5) any text argument or option that is not UTF-8.

    Bytes that are not UTF-8 in argv reach Python as lone surrogates; the registry (and
    PostgreSQL, and every report) holds text as UTF-8, so such a value could not be stored
    or even looked up. File names (``PATH_PARAMETERS``) are exempt: they are used as the
    bytes they are. Called before anything is read or changed.
    """
    here: Any = ctx  # typer's Context, then its parents (the command groups, the root)
    while here is not None:
        for param in here.command.params:
            if param.name is None or param.name in PATH_PARAMETERS:
                continue
            value = here.params.get(param.name)
            values = value if isinstance(value, list | tuple) else [value]
            for item in values:
                if isinstance(item, str) and not fsnames.is_utf8(item):
                    raise Invalid(
                        f"{_label(param)} '{fsnames.shown(item)}' is not valid UTF-8 text",
                        hint="runyard stores text as UTF-8: give it in UTF-8 (check the "
                        "terminal's locale, LANG/LC_ALL); nothing was changed",
                    )
        here = here.parent


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


def json_object(text: str, source: str | None) -> dict[str, Any]:
    """The JSON object ``text`` (read from ``source``), within runyard's JSON limits."""
    parse_exact(text, source or "the JSON")
    parsed = json.loads(text)
    if not isinstance(parsed, dict):
        raise Invalid(f"{source or 'the JSON'} must be a JSON object")
    return parsed


def parse_time(value: str | None, what: str) -> datetime | None:
    """An ISO 8601 date or date-time (``2026-11-21``, ``2026-11-21T09:00+09:00``); naive = UTC.

    It must stay within the years 1 to 9999 once converted to UTC (``0001-01-01T00:00+01:00``
    does not): Invalid, never an OverflowError.
    """
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(
            f"{what} {value!r} is not an ISO 8601 date or time (e.g. 2026-11-21 or "
            "2026-11-21T09:00:00Z); years 1 to 9999"
        ) from None
    if parsed.tzinfo is not None:
        try:
            parsed.astimezone(UTC)
        except OverflowError:
            raise Invalid(
                f"{what} {value!r} falls outside the years 1 to 9999 once converted to UTC"
            ) from None
    return parsed


def check_range(value: int | None, what: str, low: int, high: int) -> None:
    """Invalid (exit 5, like every other bad value) unless ``low <= value <= high``."""
    if value is not None and not low <= value <= high:
        raise Invalid(f"{what} must be between {low:,} and {high:,} (got {shown_number(value)})")


def check_seconds(value: float, what: str, high: int) -> None:
    """A finite number of seconds from 0 to ``high``; Invalid otherwise (inf, nan too)."""
    if not (math.isfinite(value) and 0 <= value <= high):
        raise Invalid(f"{what} must be between 0 and {high:,} seconds (got {value})")


def check_days(value: float | None, what: str) -> None:
    """A number of days back from now: finite, 0 or more, and not before the year 1."""
    if value is not None:
        days_before(datetime.now(UTC), value, what)


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


WhereOption = Annotated[
    str | None,
    typer.Option(
        "--where",
        help="Only runs matching this query, e.g. \"kpi.fill_rate >= 0.95 and tag.owner = 'ann'\" "
        "(docs/query.md).",
        metavar="QUERY",
    ),
]
OrderByOption = Annotated[
    list[str] | None,
    typer.Option(
        "--order-by",
        help='Sort by a field, e.g. "kpi.total_cost asc" (repeatable; ties: newest first).',
        metavar="FIELD [asc|desc]",
    ),
]
ColumnsOption = Annotated[
    str | None,
    typer.Option(
        "--columns",
        help="KPI columns of the table, comma-separated (default: [kpis] in runyard.toml, "
        "else the most common KPIs).",
        metavar="KPI,KPI",
    ),
]
