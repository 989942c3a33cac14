"""Charts drawn on the server as inline SVG: no JavaScript, readable without a browser.

A chart is a string of markup that a template drops in as it is, so every piece of
text that came from a run (a series name, a period, a category) is escaped here. The
y axis always includes zero: a run's small change is not drawn as a cliff. Values that
are not finite numbers are left out. The colours are the Okabe-Ito palette, told apart
by people with colour-blindness too.

A series has a short name (the legend's text) and may have a longer ``hover`` text (a
run's full id) shown as the legend item's and the line's tooltip. ``normalised_bar_chart``
draws quantities of different scales in one chart: each category's bars are shares of
that category's largest magnitude, and every bar's tooltip gives its raw value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from markupsafe import Markup, escape

PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#882255",
    "#444444",
)
MAX_X_LABELS = 8
MAX_CATEGORY_LABELS = 12
LABEL_CHARS = 14
LEGEND_CHARS = 40
# Drawn beyond a bar's end by ``normalised_bar_chart``'s marks.
MARK_GLYPHS = {"best": "★", "worst": "✕", "highest": "▲", "lowest": "▼"}
FONT = 'font-family="system-ui, sans-serif" font-size="11"'
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 30, 26  # margins of the plot area
_LEGEND_ROW = 16
MIN_WIDTH, MIN_HEIGHT = 200, 120  # below this the margins leave no plot


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def compact(value: float) -> str:
    """A number in a few characters: 1.2k, 3.4M, 0.25, -7."""
    if not math.isfinite(value):
        return "–"
    magnitude = abs(value)
    if magnitude >= 999.5e12:
        return f"{value:.2g}"
    for divisor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= divisor * 0.9995:  # 999_999 is "1M", not "1e+03k"
            return f"{value / divisor:.3g}{suffix}"
    return f"{value:.3g}"


def full(value: float) -> str:
    """A number for a tooltip: exact when whole, else to 4 decimals."""
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.4f}".rstrip("0").rstrip(".")


def _nice(x: float, rounded: bool) -> float:
    exponent = math.floor(math.log10(x))
    fraction = x / 10.0**exponent
    if rounded:
        steps = ((1.5, 1.0), (3.0, 2.0), (7.0, 5.0))
        nice = next((n for limit, n in steps if fraction < limit), 10.0)
    else:
        nice = next((n for n in (1.0, 2.0, 5.0) if fraction <= n), 10.0)
    return nice * 10.0**exponent


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [lo, hi] (Heckbert's nice numbers)."""
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    span = hi - lo
    if not math.isfinite(span) or span <= 0:
        return [lo, hi]
    step = _nice(_nice(span, rounded=False) / max(count - 1, 1), rounded=True)
    decimals = max(0, -math.floor(math.log10(step)) + 1)
    first, last = math.floor(lo / step), math.ceil(hi / step)
    return [round(i * step, decimals) for i in range(first, last + 1)]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _f(x: float) -> str:
    return f"{x:.1f}"


class _Frame:
    """The plot area and the y scale shared by both kinds of chart."""

    def __init__(
        self,
        width: int,
        height: int,
        values: Sequence[float],
        tick_format: Callable[[float], str] = compact,
    ) -> None:
        self.left, self.right = _LEFT, width - _RIGHT
        self.top, self.bottom = _TOP, height - _BOTTOM
        self.ticks = nice_ticks(min(0.0, *values), max(0.0, *values))
        self.lo, self.hi = self.ticks[0], self.ticks[-1]
        self.tick_format = tick_format

    def y(self, value: float) -> float:
        share = (value - self.lo) / (self.hi - self.lo)
        return self.bottom - share * (self.bottom - self.top)

    def axes(self) -> list[str]:
        out = []
        for tick in self.ticks:
            y = _f(self.y(tick))
            stroke = "#666666" if tick == 0 else "#e5e5e5"
            out.append(
                f'<line x1="{self.left}" x2="{self.right}" y1="{y}" y2="{y}" '
                f'stroke="{stroke}" stroke-width="1"/>'
            )
            out.append(
                f'<text x="{self.left - 6}" y="{y}" text-anchor="end" '
                f'dominant-baseline="middle" {FONT} fill="#333333">{self.tick_format(tick)}</text>'
            )
        return out


def _open(title: str, width: int, height: int) -> list[str]:
    t = escape(title)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{t}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" class="chart">',
        f"<title>{t}</title>",
        f'<text x="{_LEFT}" y="18" {FONT} font-weight="bold" fill="#111111">{t}</text>',
    ]


def _no_data(title: str, width: int) -> Markup:
    body = [
        f'<text x="{width // 2}" y="42" text-anchor="middle" {FONT} fill="#666666">no data</text>'
    ]
    return Markup("".join([*_open(title, width, 60), *body, "</svg>"]))


def _hover_of(names: Sequence[str], hover: Sequence[str] | None) -> list[str]:
    """Each series' tooltip: its ``hover`` text when given, else its name."""
    given = list(hover or ())
    return [given[i] if i < len(given) and given[i] else name for i, name in enumerate(names)]


def _legend(
    names: Sequence[str], width: int, top: int, hover: Sequence[str] | None = None
) -> tuple[list[str], int]:
    """Legend items in rows that wrap at the chart's width; returns them and their height."""
    out: list[str] = []
    x, y = _LEFT, top
    for i, (name, tip) in enumerate(zip(names, _hover_of(names, hover), strict=True)):
        label = _clip(name, LEGEND_CHARS)
        item_width = 18 + 7 * len(label) + 14
        if x + item_width > width and x > _LEFT:
            x, y = _LEFT, y + _LEGEND_ROW
        out.append(
            f'<g class="legend-item" data-series="{escape(name)}"><title>{escape(tip)}</title>'
            f'<rect x="{x}" y="{y - 9}" width="12" height="10" fill="{colour(i)}"/>'
            f'<text x="{x + 16}" y="{y}" {FONT} fill="#333333">{escape(label)}</text></g>'
        )
        x += item_width
    return out, (y - top + _LEGEND_ROW if names else 0)


def _finish(
    title: str,
    body: list[str],
    names: Sequence[str],
    width: int,
    height: int,
    hover: Sequence[str] | None = None,
) -> Markup:
    legend, legend_height = _legend(names, width, height + 4, hover)
    total = height + legend_height + 4 if legend else height
    return Markup("".join([*_open(title, width, total), *body, *legend, "</svg>"]))


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    width: int = 640,
    height: int = 260,
    hover: Sequence[str] | None = None,
) -> Markup:
    """One line per named series over the x labels (``height`` excludes the legend).

    A None (or non-finite) value is a missing point: the line joins its neighbours.
    ``hover`` gives each series a longer tooltip than its name (a run's full id).
    """
    width, height = max(width, MIN_WIDTH), max(height, MIN_HEIGHT)
    finite = [v for _, values in series for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return _no_data(title, width)
    frame = _Frame(width, height, finite)
    n = max(len(x_labels), *(len(values) for _, values in series))

    def x(i: int) -> float:
        if n == 1:
            return (frame.left + frame.right) / 2
        return frame.left + i * (frame.right - frame.left) / (n - 1)

    parts = frame.axes()
    step = max(1, math.ceil(n / MAX_X_LABELS))
    for i in range(0, min(n, len(x_labels)), step):
        parts.append(
            f'<text x="{_f(x(i))}" y="{frame.bottom + 16}" text-anchor="middle" {FONT} '
            f'fill="#333333" class="x-label">{escape(_clip(x_labels[i], LABEL_CHARS))}</text>'
        )
    tips = _hover_of([name for name, _ in series], hover)
    for index, (name, values) in enumerate(series):
        points = " ".join(
            f"{_f(x(i))},{_f(frame.y(v))}"
            for i, v in enumerate(values)
            if v is not None and math.isfinite(v)
        )
        parts.append(
            f'<polyline class="series" data-series="{escape(name)}" points="{points}" '
            f'fill="none" stroke="{colour(index)}" stroke-width="2" '
            'stroke-linejoin="round" stroke-linecap="round">'
            f"<title>{escape(tips[index])}</title></polyline>"
        )
        if points and " " not in points:  # a lone point draws no line: mark it
            cx, cy = points.split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{colour(index)}"/>')
    return _finish(title, parts, [name for name, _ in series], width, height, hover)


def _bars(
    frame: _Frame,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    tip: Callable[[int, int, float], str],
    marks: Mapping[tuple[int, int], str] | None = None,
) -> list[str]:
    """Grouped bars: one group per category, one bar per series, each with a tooltip
    (``tip(series, category, value)``) and an optional mark drawn beyond its end."""
    group = (frame.right - frame.left) / len(categories)
    bar = group * 0.8 / max(len(series), 1)
    zero = frame.y(0.0)
    parts = frame.axes()
    step = max(1, math.ceil(len(categories) / MAX_CATEGORY_LABELS))
    for c, category in enumerate(categories):
        if c % step == 0:
            parts.append(
                f'<text x="{_f(frame.left + (c + 0.5) * group)}" y="{frame.bottom + 16}" '
                f'text-anchor="middle" {FONT} fill="#333333" class="x-label">'
                f"{escape(_clip(category, LABEL_CHARS))}<title>{escape(category)}</title></text>"
            )
        for s, (name, values) in enumerate(series):
            value = values[c] if c < len(values) else None
            if value is None or not math.isfinite(value):
                continue
            top = frame.y(value)
            x = frame.left + c * group + group * 0.1 + s * bar
            mark = (marks or {}).get((s, c))
            parts.append(
                f'<rect class="bar" data-series="{escape(name)}" '
                f'data-category="{escape(category)}"'
                + (f' data-mark="{escape(mark)}"' if mark else "")
                + f' x="{_f(x)}" '
                f'y="{_f(min(top, zero))}" width="{_f(max(bar - 1, 1))}" '
                f'height="{_f(max(abs(top - zero), 1))}" fill="{colour(s)}">'
                f"<title>{escape(tip(s, c, value))}</title></rect>"
            )
            if mark in MARK_GLYPHS:
                y = top - 3 if value >= 0 else top + 10
                parts.append(
                    f'<text class="mark" data-mark="{mark}" x="{_f(x + max(bar - 1, 1) / 2)}" '
                    f'y="{_f(y)}" text-anchor="middle" font-family="system-ui, sans-serif" '
                    f'font-size="9" fill="#111111">{MARK_GLYPHS[mark]}</text>'
                )
    return parts


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    width: int = 640,
    height: int = 260,
    hover: Sequence[str] | None = None,
) -> Markup:
    """Grouped bars, one group per category and one bar per series; None draws no bar."""
    width, height = max(width, MIN_WIDTH), max(height, MIN_HEIGHT)
    finite = [
        v
        for _, values in series
        for v in values[: len(categories)]
        if v is not None and math.isfinite(v)
    ]
    if not finite:
        return _no_data(title, width)
    frame = _Frame(width, height, finite)
    names = [name for name, _ in series]

    def tip(s: int, c: int, value: float) -> str:
        return f"{names[s]} · {categories[c]}: {full(value)}"

    parts = _bars(frame, categories, series, tip)
    return _finish(title, parts, names, width, height, hover)


def _finite_or_none(values: Sequence[float | None], index: int) -> float | None:
    value = values[index] if index < len(values) else None
    return value if value is not None and math.isfinite(value) else None


def percent(share: float) -> str:
    """A share of the largest magnitude as an axis label: 1.0 is 100%."""
    return f"{share * 100:.0f}%" if math.isfinite(share) else "–"


def normalised_bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    width: int = 640,
    height: int = 260,
    hover: Sequence[str] | None = None,
    marks: Mapping[tuple[int, int], str] | None = None,
    units: Sequence[str | None] | None = None,
) -> Markup:
    """Grouped bars of quantities with different scales, in one chart.

    Each category's bars are divided by that category's largest magnitude, so the
    tallest bar of every category reaches 100% (or -100%) and a fill rate of 0.9 is not
    a flat line beside a cost of 12,000. The y axis is in percent of that magnitude;
    each bar's tooltip gives its raw value (with ``units[c]``) and its share. ``marks``
    maps (series, category) to ``best``, ``worst``, ``highest`` or ``lowest``: a glyph
    drawn beyond the bar's end and a word in its tooltip. A category whose values are
    all zero draws bars of height zero.
    """
    width, height = max(width, MIN_WIDTH), max(height, MIN_HEIGHT)
    count = len(categories)
    raw = [[_finite_or_none(values, c) for c in range(count)] for _, values in series]
    scales = [
        max((abs(x) for r in raw if (x := r[c]) is not None), default=0.0) for c in range(count)
    ]

    def share(value: float | None, c: int) -> float | None:
        if value is None:
            return None
        return value / scales[c] if scales[c] else 0.0

    shares = [
        (name, [share(v, c) for c, v in enumerate(r)])
        for (name, _), r in zip(series, raw, strict=True)
    ]
    finite = [v for _, values in shares for v in values if v is not None]
    if not finite:
        return _no_data(title, width)
    frame = _Frame(width, height, [*finite, 1.0], tick_format=percent)
    names = [name for name, _ in series]
    unit_of = list(units or [])

    def tip(s: int, c: int, share: float) -> str:
        unit = unit_of[c] if c < len(unit_of) and unit_of[c] else ""
        mark = (marks or {}).get((s, c))
        text = f"{names[s]} · {categories[c]}: {full(raw[s][c] or 0.0)}{' ' + unit if unit else ''}"
        text += f" ({percent(share)} of the largest)"
        return text + (f", {mark}" if mark else "")

    parts = _bars(frame, categories, shares, tip, marks)
    return _finish(title, parts, names, width, height, hover)
