"""runyard.web.charts: well-formed, escaped SVG for every input, empty ones included."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
from markupsafe import Markup

from runyard.web.charts import (
    PALETTE,
    bar_chart,
    compact,
    full,
    line_chart,
    nice_ticks,
    normalised_bar_chart,
)

NS = "{http://www.w3.org/2000/svg}"


def _parse(markup: Markup) -> ET.Element:
    assert isinstance(markup, Markup)
    root = ET.fromstring(str(markup))
    assert root.tag == f"{NS}svg"
    assert root.get("role") == "img" and root.get("aria-label")
    assert root.find(f"{NS}title") is not None
    return root


def _all(root: ET.Element, tag: str, cls: str | None = None) -> list[ET.Element]:
    found = root.iter(f"{NS}{tag}")
    return [e for e in found if cls is None or e.get("class") == cls]


def _texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in _all(root, "text")]


def test_line_chart_draws_one_polyline_per_series():
    root = _parse(
        line_chart(
            "Inventory",
            [f"2026-{m:02d}" for m in range(1, 13)],
            [("run a", [float(i) for i in range(12)]), ("run b", [5.0] * 12)],
        )
    )
    lines = _all(root, "polyline", "series")
    assert [p.get("data-series") for p in lines] == ["run a", "run b"]
    assert len({p.get("stroke") for p in lines}) == 2
    assert all(len((p.get("points") or "").split()) == 12 for p in lines)
    labels = _all(root, "text", "x-label")
    assert 2 <= len(labels) <= 8 and labels[0].text == "2026-01"
    assert "run a" in _texts(root) and "run b" in _texts(root)  # the legend
    assert "10" in _texts(root)  # a y tick


def test_names_and_title_are_escaped():
    evil = "<script>alert('x')</script>"
    out = line_chart(evil, [evil], [(evil, [1.0]), ('q"uote', [2.0])])
    assert "<script>" not in out
    root = _parse(out)
    assert root.get("aria-label") == evil
    assert [p.get("data-series") for p in _all(root, "polyline", "series")] == [evil, 'q"uote']
    bars = bar_chart(evil, [evil], [(evil, [1.0])])
    assert "<script>" not in bars
    (rect,) = _all(_parse(bars), "rect", "bar")
    assert rect.get("data-series") == evil and rect.get("data-category") == evil


@pytest.mark.parametrize(
    "markup",
    [
        line_chart("Empty", [], []),
        line_chart("No values", ["a", "b"], [("s", [])]),
        line_chart("Only NaN", ["a"], [("s", [math.nan])]),
        bar_chart("Empty", [], []),
        bar_chart("All None", ["a", "b"], [("s", [None, None])]),
        bar_chart("No categories", [], [("s", [1.0])]),
    ],
)
def test_empty_input_says_no_data(markup):
    root = _parse(markup)
    assert "no data" in _texts(root)
    assert not _all(root, "polyline") and not _all(root, "rect", "bar")


def test_a_single_point_is_drawn():
    root = _parse(line_chart("One", ["p1"], [("s", [3.0])]))
    (line,) = _all(root, "polyline", "series")
    assert len((line.get("points") or "").split()) == 1
    assert len(_all(root, "circle")) == 1


def test_missing_and_non_finite_points_are_left_out():
    root = _parse(
        line_chart("Gaps", ["a", "b", "c"], [("s", [1.0, math.inf, 2.0]), ("t", [None, 4.0, 5.0])])
    )
    first, second = _all(root, "polyline", "series")
    assert len((first.get("points") or "").split()) == 2
    xs = [float(p.split(",")[0]) for p in (second.get("points") or "").split()]
    assert len(xs) == 2 and xs[0] > 56  # still at b and c, not shifted to a
    lone = _parse(line_chart("Lone", ["a", "b"], [("s", [None, 1.0])]))
    assert len(_all(lone, "circle")) == 1


def test_bar_chart_groups_negatives_and_none():
    root = _parse(
        bar_chart(
            "Cost",
            ["holding", "backorder", "production"],
            [("a", [10.0, -5.0, None]), ("b", [4.0, 0.0, 7.0])],
        )
    )
    bars = _all(root, "rect", "bar")
    assert len(bars) == 5  # None draws no bar
    got = {(b.get("data-series"), b.get("data-category")) for b in bars}
    assert ("a", "production") not in got and ("b", "production") in got
    by_key = {(b.get("data-series"), b.get("data-category")): b for b in bars}
    zero = [t for t in _all(root, "text") if t.text == "0"]
    assert zero, "the y axis includes zero"
    negative = by_key[("a", "backorder")]
    positive = by_key[("a", "holding")]
    zero_y = float(positive.get("y") or 0) + float(positive.get("height") or 0)
    assert float(negative.get("y") or 0) == pytest.approx(zero_y)  # hangs from the zero line
    title = negative.find(f"{NS}title")
    assert title is not None and title.text == "a · backorder: -5"
    fills = {b.get("fill") for b in bars}
    assert fills == {PALETTE[0], PALETTE[1]}


def test_many_series_wrap_the_legend_and_cycle_colours():
    series = [(f"run-{i:02d}-with-a-long-identifier", [float(i)]) for i in range(12)]
    root = _parse(line_chart("Many", ["p"], series))
    assert len(_all(root, "polyline", "series")) == 12
    assert float(root.get("height") or 0) > 260  # the legend added rows
    assert len(_all(root, "g")) == 12


def test_nice_ticks_and_number_formats():
    assert nice_ticks(0, 0.95) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0, 100) == [0, 20, 40, 60, 80, 100]
    ticks = nice_ticks(-3, 47)
    assert ticks[0] <= -3 and ticks[-1] >= 47 and 0 in ticks
    assert nice_ticks(5, 5)[0] < 5 < nice_ticks(5, 5)[-1]
    assert [compact(v) for v in (0, 950, 12345, 999_999, 2.5e9, -1500, 0.125)] == [
        "0",
        "950",
        "12.3k",
        "1M",
        "2.5G",
        "-1.5k",
        "0.125",
    ]
    assert full(1234.0) == "1,234" and full(0.12345678) == "0.1235"


def test_hover_gives_legend_items_and_lines_a_longer_tooltip():
    root = _parse(line_chart("H", ["p"], [("short", [1.0])], hover=["the-full-run-id"]))
    (item,) = [g for g in _all(root, "g") if g.get("class") == "legend-item"]
    assert item.findtext(f"{NS}title") == "the-full-run-id"
    (line,) = _all(root, "polyline", "series")
    assert line.findtext(f"{NS}title") == "the-full-run-id"
    plain = _parse(bar_chart("B", ["c"], [("name", [1.0])]))
    (item,) = [g for g in _all(plain, "g") if g.get("class") == "legend-item"]
    assert item.findtext(f"{NS}title") == "name"  # without hover: the name


def test_normalised_bars_scale_each_category_to_its_largest_magnitude():
    root = _parse(
        normalised_bar_chart(
            "N",
            ["cost", "rate"],
            [("a", [200_000.0, 0.5]), ("b", [100_000.0, 1.0])],
            marks={(1, 0): "best", (0, 0): "worst"},
            units=["EUR", None],
        )
    )
    bars = {(b.get("data-series"), b.get("data-category")): b for b in _all(root, "rect", "bar")}

    def height(key: tuple[str, str]) -> float:
        return float(bars[key].get("height") or 0)

    assert height(("a", "cost")) == pytest.approx(height(("b", "rate")))
    assert height(("b", "cost")) == pytest.approx(height(("a", "rate")))
    assert height(("b", "cost")) == pytest.approx(height(("a", "cost")) / 2, rel=0.02)
    assert bars[("b", "cost")].get("data-mark") == "best"
    assert [t.text for t in _all(root, "text", "mark")] == ["✕", "★"]
    tip = bars[("a", "cost")].findtext(f"{NS}title")
    assert tip == "a · cost: 200,000 EUR (100% of the largest), worst"
    assert "100%" in _texts(root) and "0%" in _texts(root)
