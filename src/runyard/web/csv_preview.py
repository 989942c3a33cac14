"""A CSV artifact as a run's page shows it: its first rows as a table, its numeric columns
as a line chart, and a plain note for everything odd about the file.

A pipeline may leave any bytes in a file named ``.csv``, so nothing here trusts one. The
file is found through the run's artifact rules (``web.files.resolve_requested``: never a
link out of the run, never through a run folder swapped for a link) and read with
``fsutil.read_regular_file`` (a FIFO is refused, never opened), at most ``MAX_BYTES``.
Bytes that are not UTF-8 are decoded with replacement characters, rows shorter or longer
than the header are padded or given extra columns, a quoted newline stays in its cell,
and a field longer than the csv module's default limit is read (up to the bytes read).
Each of these is said in ``notes``; none is an error page.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from markupsafe import Markup

from runyard.errors import RunyardError
from runyard.fsutil import read_regular_file
from runyard.web import charts
from runyard.web.files import ArtifactEntry, resolve_requested

MAX_BYTES = 1024 * 1024  # read of each previewed file
PREVIEW_ROWS = 20  # rows in the table
CHART_ROWS = 2000  # rows charted
CHART_COLUMNS = 8  # numeric columns charted (one colour each)
CELL_CHARS = 200  # a longer cell is clipped in the table
MAX_COLUMNS = 50  # columns shown in the table
MAX_PREVIEWS = 5  # CSV files previewed on one run page
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_YEAR_MONTH = re.compile(r"\d{4}-\d{2}")


@dataclass
class CsvPreview:
    """What the page shows of one CSV file."""

    path: str
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    row_count: int = 0  # data rows in the bytes read (not the header)
    more: bool = False  # the file goes on past the bytes read: row_count is a floor
    notes: list[str] = field(default_factory=list)
    chart: Markup | None = None
    chart_note: str | None = None
    problem: str | None = None  # why nothing is shown

    @property
    def count_text(self) -> str:
        """``first 20 of 1,234 rows``, ``first 20 of 5,000+ rows``, ``3 rows``."""
        total = f"{self.row_count:,}{'+' if self.more else ''}"
        noun = "row" if self.row_count == 1 and not self.more else "rows"
        if len(self.rows) < self.row_count or self.more:
            return f"first {len(self.rows):,} of {total} {noun}"
        return f"{total} {noun}"


def is_csv(entry: ArtifactEntry) -> bool:
    return entry.kind != "dir" and entry.path.lower().endswith(".csv")


def _decode(raw: bytes, notes: list[str]) -> str:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        text = raw.decode("utf-8-sig", "replace")
        notes.append(
            f"The file is not UTF-8 (byte {exc.start:,} is not): bytes that are not UTF-8 "
            "are shown as �."
        )
    if "\x00" in text:
        text = text.replace("\x00", "")
        notes.append("The file holds NUL bytes; they are left out.")
    return text


def _records(text: str, notes: list[str]) -> list[list[str]]:
    """Every CSV record of ``text``; a record the csv module refuses ends the read."""
    # The default limit (128 KiB a field) would refuse a long field in a file we read
    # anyway; raise it to the bytes read. It only ever grows, so no thread sees it
    # shrink under it.
    if csv.field_size_limit() < MAX_BYTES + 1:
        csv.field_size_limit(MAX_BYTES + 1)
    out: list[list[str]] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for record in reader:
            out.append(record)
    except csv.Error as exc:
        notes.append(f"Reading stopped at line {reader.line_num:,}: {exc}.")
    return out


def _is_number(cell: str) -> bool:
    return bool(_NUMBER.fullmatch(cell.strip()))


def _is_time(cell: str) -> bool:
    value = cell.strip()
    if _YEAR_MONTH.fullmatch(value):
        return True
    if len(value) < 8 or not value[:4].isdigit():
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _column(rows: list[list[str]], index: int) -> list[str]:
    return [r[index] if index < len(r) else "" for r in rows]


def _chart(path: str, header: list[str], rows: list[list[str]]) -> tuple[Markup | None, str]:
    """A line per numeric column over the row index, or over the first column when it is
    a time or a number; the note says what was drawn."""
    charted = rows[:CHART_ROWS]
    if not charted:
        return None, "No rows to chart."
    width = max(len(header), *(len(r) for r in charted))

    def kind(index: int) -> str | None:
        cells = [c for c in _column(charted, index) if c.strip()]
        if not cells:
            return None
        if all(_is_number(c) for c in cells):
            return "number"
        if all(_is_time(c) for c in cells):
            return "time"
        return None

    first = kind(0)
    x_from_first = first is not None and width > 1
    numeric = [i for i in range(1 if x_from_first else 0, width) if kind(i) == "number"]
    if not numeric:
        return None, "No numeric columns to chart."
    names = [header[i] if i < len(header) and header[i] else f"column {i + 1}" for i in numeric]
    drawn = numeric[:CHART_COLUMNS]
    series: list[tuple[str, list[float | None]]] = []
    for i, name in zip(drawn, names, strict=False):
        values: list[float | None] = []
        for cell in _column(charted, i):
            number = float(cell) if _is_number(cell) else math.nan
            values.append(number if math.isfinite(number) else None)
        series.append((name, values))
    if x_from_first:
        x_name = header[0] if header and header[0] else "column 1"
        x_labels = [c.strip() for c in _column(charted, 0)]
        over = f"over {x_name}"
    else:
        x_labels = [str(i + 1) for i in range(len(charted))]
        over = "over the row number"
    note = f"Numeric columns {over}"
    if len(rows) > CHART_ROWS:
        note += f", the first {CHART_ROWS:,} rows"
    if len(numeric) > CHART_COLUMNS:
        note += f"; the first {CHART_COLUMNS} of {len(numeric)} numeric columns"
    return charts.line_chart(path, x_labels, series), note + "."


def _shape(header: list[str], body: list[list[str]], notes: list[str]) -> list[str]:
    """The header, widened with ``column N`` names when some row is longer; a note on
    ragged rows."""
    ragged = [n + 2 for n, r in enumerate(body) if len(r) != len(header)]
    if ragged:
        lines = ", ".join(f"{n:,}" for n in ragged[:5]) + (" …" if len(ragged) > 5 else "")
        notes.append(
            f"{len(ragged):,} rows have a different number of cells than the header's "
            f"{len(header)} (rows {lines}): short rows are padded with empty cells."
        )
    widest = max((len(r) for r in body), default=0)
    return header + [f"column {i + 1}" for i in range(len(header), widest)]


def _clip(cell: str) -> str:
    return cell if len(cell) <= CELL_CHARS else cell[: CELL_CHARS - 1] + "…"


def preview_csv(run_dir: Path, entry: ArtifactEntry) -> CsvPreview:
    """The preview of one CSV artifact of the run in ``run_dir``; never raises for what
    the file holds: a file that cannot be read has its ``problem`` set instead."""
    preview = CsvPreview(path=entry.path)
    try:
        target = resolve_requested(run_dir, entry.path, entry.path_b64)
        raw = read_regular_file(target, entry.path, MAX_BYTES)
    except RunyardError as exc:  # a link out of the run, a FIFO, a display-form name …
        preview.problem = f"Not previewed: {exc.message}"
        return preview
    except OSError as exc:
        preview.problem = f"Not previewed: cannot read it ({exc.strerror or exc})."
        return preview
    notes = preview.notes
    if len(raw) > MAX_BYTES:
        preview.more = True
        raw = raw[:MAX_BYTES]
        cut = raw.rfind(b"\n")
        raw = raw[: cut + 1] if cut >= 0 else raw
        notes.append(
            f"Only the first {MAX_BYTES // 1024:,} KiB are read; the counts are of those rows."
        )
    if not raw.strip():
        preview.problem = "The file is empty." if not raw else "The file holds only blank space."
        return preview
    records = _records(_decode(raw, notes), notes)
    if preview.more and len(records) > 1:
        records = records[:-1]  # the last one may be cut (a quoted newline past the cut)
    records = [r for r in records if r]  # csv gives [] for a blank line
    if not records:
        preview.problem = "The file has no rows."
        return preview
    header, body = records[0], records[1:]
    preview.row_count = len(body)
    if not body:
        notes.append("The file has a header and no rows.")
    columns = _shape(header, body, notes)
    if len(columns) > MAX_COLUMNS:
        notes.append(f"The table shows the first {MAX_COLUMNS} of {len(columns)} columns.")
    if any(len(c) > CELL_CHARS for r in [header, *body[:PREVIEW_ROWS]] for c in r):
        notes.append(f"Cells longer than {CELL_CHARS} characters are cut in the table.")
    shown = columns[:MAX_COLUMNS]
    preview.header = [_clip(c) for c in shown]
    preview.rows = [
        [_clip(r[i]) if i < len(r) else "" for i in range(len(shown))] for r in body[:PREVIEW_ROWS]
    ]
    preview.chart, preview.chart_note = _chart(entry.path, columns, body)
    return preview
