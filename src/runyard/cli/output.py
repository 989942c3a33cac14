"""How commands print: one JSON document with ``--json``, Rich tables and panels for people.

Errors go to stderr as ``error: …`` (and a ``hint: …``); with ``--json`` the error
is the one JSON document on stdout instead, ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from runyard import fsnames
from runyard.errors import RunyardError

P = ParamSpec("P")
R = TypeVar("R")

JSON_OPTION_HELP = "Print one JSON document on stdout instead of tables."


def console() -> Console:
    out = Console(highlight=False, soft_wrap=False)
    if not out.is_terminal:
        # Piped or captured: don't squeeze tables into 80 columns.
        out.width = max(out.width, 160)
    return out


def err_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def to_jsonable(value: Any) -> Any:
    # A pydantic model, recognised without importing pydantic (the CLI starts faster).
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump(mode="json")
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def print_json(value: Any) -> None:
    # Names that are not UTF-8 in display form (runyard.fsnames): the document stays UTF-8.
    data = fsnames.json_bytes(to_jsonable(value), indent=2) + b"\n"
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def report_error(exc: RunyardError, json_mode: bool) -> None:
    if json_mode:
        print_json({"error": exc.to_dict()})
        return
    err = err_console()
    err.print(Text.assemble(("error: ", "bold red"), fsnames.shown(exc.message)))
    if exc.hint:
        err.print(Text.assemble(("hint: ", "yellow"), fsnames.shown(exc.hint)))


def handles_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a RunyardError from a command into its message and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        json_mode = bool(kwargs.get("json_output"))
        try:
            return fn(*args, **kwargs)
        except RunyardError as exc:
            report_error(exc, json_mode)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            # The filesystem said no (permissions, a file where a folder should be …).
            error = RunyardError(
                fsnames.shown(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
            )
            error.code = "os_error"
            report_error(error, json_mode)
            raise typer.Exit(1) from None

    return wrapper


def when(value: datetime | str | None) -> str:
    """A time for a table: UTC, to the second (from a datetime or its JSON form)."""
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M:%SZ")


def short_json(value: Any, limit: int = 60) -> str:
    if not value:
        return "-"
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    out = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        # Ids are copied and pasted: never break them across lines.
        out.add_column(
            column, overflow="fold", no_wrap=column.endswith("_id") or column in _TIME_COLUMNS
        )
    for row in rows:
        out.add_row(*(_cell(cell) for cell in row))
    return out


_TIME_COLUMNS = {"started", "created", "finished"}


def _cell(value: Any) -> Text | str:
    """User data is shown literally (never read as Rich markup); Text keeps its style."""
    if isinstance(value, Text):
        return value
    if value is None or value == "":
        return "-"
    return escape(fsnames.shown(str(value)))


def key_values(title: str, pairs: Sequence[tuple[str, Any]]) -> Table:
    out = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    out.add_column(style="bold")
    out.add_column(overflow="fold")
    for key, value in pairs:
        out.add_row(key, _cell(value))
    return out


STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "queued": "blue",
    "unknown": "dim",
    "skipped": "magenta",
}


def styled_status(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, "white"))


def next_page_hint(out: Console, cursor: str | None, command: str) -> None:
    if cursor:
        out.print(
            Text(
                f"more: repeat `{command}` with the same filters and --after {cursor}", style="dim"
            )
        )
