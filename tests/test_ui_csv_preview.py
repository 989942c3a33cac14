"""A run's page previews its CSV artifacts: the first rows as a table, the numeric columns
as a line chart, and for every hostile file (not UTF-8, ragged, a quoted newline, empty,
a header only, a huge field, a link out of the run, a FIFO, over the read limit) a 200
with a note saying what is odd, never a 500."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any

import pytest

from runyard.web import csv_preview
from tests.conftest import Cli
from tests.helpers.ui import ui_client

# The preview reads files, not the registry: one backend is enough.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

SECTION = re.compile(r'<details class="csv-preview"[^>]*>(.*?)</details>', re.S)


@pytest.fixture
def run(cli: Cli, lineage: dict[str, str], yard_path: Path) -> dict[str, Any]:
    made = cli.ok("run", "start", "--plan", lineage["plan_version_id"])
    cli.ok("run", "finish", made["run_id"], "--status", "succeeded", "--summary", "{}")
    return {"run_id": made["run_id"], "folder": yard_path / "runs" / made["run_id"]}


def _previews(yard_path: Path, run_id: str) -> dict[str, str]:
    """Each previewed CSV's section of the run page, by its path (as shown)."""
    with ui_client(yard_path) as client:
        page = client.get(f"/ui/runs/{run_id}")
    assert page.status_code == 200, page.text
    out = {}
    for section in SECTION.findall(page.text):
        found = re.search(r"<summary><code>(.*?)</code>", section)
        assert found
        out[html.unescape(found.group(1))] = section
    return out


def _cells(section: str) -> list[list[str]]:
    body = re.search(r"<tbody>(.*?)</tbody>", section, re.S)
    assert body
    rows = re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)
    return [[html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", r, re.S)] for r in rows]


def _notes(section: str) -> str:
    return " ".join(
        html.unescape(n)
        for n in re.findall(r'class="banner banner-warn csv-note"[^>]*>(.*?)</p>', section, re.S)
    )


def test_a_csv_is_previewed_and_charted(yard_path, run):
    lines = ["period,demand,inventory,note"]
    lines += [f"2026-{m:02d},{m * 10},{100 - m},row {m}" for m in range(1, 31)]
    (run["folder"] / "psi_like.csv").write_text("\n".join(lines) + "\n")
    section = _previews(yard_path, run["run_id"])["psi_like.csv"]
    assert "first 20 of 30 rows" in section
    header = re.findall(r'<th scope="col">(.*?)</th>', section)
    assert header == ["period", "demand", "inventory", "note"]
    cells = _cells(section)
    assert len(cells) == 20 and cells[0] == ["2026-01", "10", "99", "row 1"]
    # the numeric columns, over the first column (a time), one line each
    series = re.findall(r'<polyline class="series" data-series="([^"]+)" points="([^"]+)"', section)
    assert [name for name, _ in series] == ["demand", "inventory"]
    assert all(len(points.split()) == 30 for _, points in series)
    assert "Numeric columns over period" in section
    assert 'class="x-label">2026-01<' in section


def test_a_csv_without_a_time_column_is_charted_over_the_row_number(yard_path, run):
    (run["folder"] / "skus.csv").write_text("sku,qty,price\nA,1,2.5\nB,3,1e1\nC,,4\n")
    section = _previews(yard_path, run["run_id"])["skus.csv"]
    assert "3 rows" in section and "over the row number" in section
    series = dict(re.findall(r'data-series="([^"]+)" points="([^"]+)"', section))
    assert set(series) == {"qty", "price"}
    assert len(series["qty"].split()) == 2  # the empty cell is a gap, not a zero


HOSTILE: list[tuple[str, bytes, list[str]]] = [
    ("latin1.csv", "name,value\ncafé,1\n".encode("latin-1"), ["not UTF-8", "shown as �"]),
    ("ragged.csv", b"a,b,c\n1,2\n1,2,3,4\n5,6,7\n", ["2 rows have a different number"]),
    ("empty.csv", b"", ["The file is empty."]),
    ("header.csv", b"a,b,c\n", ["a header and no rows"]),
    ("blank.csv", b"\n\n  \n", ["only blank space"]),
]


@pytest.mark.parametrize(("name", "content", "words"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_csvs_are_a_200_with_a_note(yard_path, run, name, content, words):
    (run["folder"] / name).write_bytes(content)
    section = _previews(yard_path, run["run_id"])[name]
    for word in words:
        assert word in html.unescape(section), section


def test_ragged_rows_are_padded_and_widened(yard_path, run):
    (run["folder"] / "ragged.csv").write_bytes(b"a,b,c\n1,2\n1,2,3,4\n")
    section = _previews(yard_path, run["run_id"])["ragged.csv"]
    header = re.findall(r'<th scope="col">(.*?)</th>', section)
    assert header == ["a", "b", "c", "column 4"]
    assert _cells(section) == [["1", "2", "", ""], ["1", "2", "3", "4"]]


def test_a_quoted_newline_stays_in_its_cell(yard_path, run):
    (run["folder"] / "quoted.csv").write_text('id,text\n1,"two\nlines"\n2,plain\n')
    section = _previews(yard_path, run["run_id"])["quoted.csv"]
    assert "2 rows" in section
    assert _cells(section) == [["1", "two\nlines"], ["2", "plain"]]
    assert _notes(section) == ""


def test_a_huge_field_is_read_and_clipped(yard_path, run):
    big = "x" * 300_000  # past the csv module's default field limit (128 KiB)
    (run["folder"] / "huge.csv").write_text(f"id,blob,n\n1,{big},3\n2,y,4\n")
    section = _previews(yard_path, run["run_id"])["huge.csv"]
    cells = _cells(section)
    assert len(cells) == 2 and cells[1] == ["2", "y", "4"]
    assert cells[0][1].endswith("…") and len(cells[0][1]) == csv_preview.CELL_CHARS
    assert "longer than 200 characters are cut" in _notes(section)


def test_a_file_past_the_read_limit_says_first_n_of_m_plus(yard_path, run, monkeypatch):
    monkeypatch.setattr(csv_preview, "MAX_BYTES", 4096)
    lines = ["i,v"] + [f"{i},{i * i}" for i in range(5000)]
    (run["folder"] / "long.csv").write_text("\n".join(lines) + "\n")
    section = _previews(yard_path, run["run_id"])["long.csv"]
    shown = re.search(r"first 20 of ([\d,]+)\+ rows", section)
    assert shown and 100 < int(shown.group(1).replace(",", "")) < 5000
    assert "Only the first 4 KiB are read" in _notes(section)


def test_charts_are_capped_at_chart_rows(yard_path, run, monkeypatch):
    monkeypatch.setattr(csv_preview, "CHART_ROWS", 50)
    lines = ["i,v"] + [f"{i},{i}" for i in range(120)]
    (run["folder"] / "many.csv").write_text("\n".join(lines) + "\n")
    section = _previews(yard_path, run["run_id"])["many.csv"]
    (points,) = re.findall(r'data-series="v" points="([^"]+)"', section)
    assert len(points.split()) == 50 and "the first 50 rows" in section


def test_a_link_out_of_the_run_is_not_read(yard_path, run, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n")
    os.symlink(secret, run["folder"] / "escape.csv")
    os.symlink("inside.csv", run["folder"] / "alias.csv")
    (run["folder"] / "inside.csv").write_text("a\n1\n")
    previews = _previews(yard_path, run["run_id"])
    assert "hunter2" not in previews["escape.csv"]
    assert "Not previewed" in previews["escape.csv"]
    assert _cells(previews["alias.csv"]) == [["1"]]  # a link inside the run is followed


def test_a_fifo_is_never_opened(yard_path, run):
    os.mkfifo(run["folder"] / "pipe.csv")
    section = _previews(yard_path, run["run_id"])["pipe.csv"]  # would hang if opened
    assert "not a regular file" in section and "Not previewed" in section


def test_a_non_utf8_name_is_previewed(yard_path, run):
    name = os.fsencode(run["folder"]) + b"/bad\xff.csv"
    with open(name, "wb") as f:
        f.write(b"a\n1\n")
    previews = _previews(yard_path, run["run_id"])
    assert _cells(previews["bad\\xff.csv"]) == [["1"]]


def test_only_the_first_csvs_are_previewed(yard_path, run):
    for i in range(csv_preview.MAX_PREVIEWS + 2):
        (run["folder"] / f"t{i}.csv").write_text("a\n1\n")
    assert len(_previews(yard_path, run["run_id"])) == csv_preview.MAX_PREVIEWS
    with ui_client(yard_path) as client:
        page = client.get(f"/ui/runs/{run['run_id']}").text
    assert "2 more CSV files are not previewed" in page


def test_a_run_without_csvs_has_no_section(yard_path, run):
    (run["folder"] / "notes.txt").write_text("a,b\n1,2\n")
    with ui_client(yard_path) as client:
        page = client.get(f"/ui/runs/{run['run_id']}").text
    assert "CSV files" not in page and "csv-preview" not in page
