"""KPIs as people read them: which way is good, their label and unit, and which to show.

A KPI is a finite number of a run's summary, named by its dotted path (``cost.holding``
for ``{"cost": {"holding": 3}}``); ``runyard.registry.search_index.kpi_values`` finds
them. ``[kpis.NAME]`` in ``runyard.toml`` says ``better = "higher" | "lower"``, a
``label`` and a ``unit``; the pages use it to mark best and worst and to choose the
default KPI columns. The CLI, the API and the UI read it from here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from runyard.config import Settings
from runyard.query.ast import Query, fields_of
from runyard.registry.search_index import kpi_values

DEFAULT_COLUMNS = 4  # KPI columns shown when the yard configures none


@dataclass(frozen=True)
class Kpi:
    """One KPI column: its name, what people call it, its unit and which way is good."""

    name: str
    label: str
    unit: str | None = None
    better: Literal["higher", "lower"] | None = None

    @property
    def heading(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


def kpi(settings: Settings, name: str) -> Kpi:
    """The KPI ``name`` as configured (or plain, when ``runyard.toml`` does not say)."""
    spec = settings.kpis.get(name)
    if spec is None:
        return Kpi(name=name, label=name)
    return Kpi(name=name, label=spec.label or name, unit=spec.unit, better=spec.better)


def configured(settings: Settings) -> list[Kpi]:
    """The yard's configured KPIs, in the order ``runyard.toml`` lists them."""
    return [kpi(settings, name) for name in settings.kpis]


def most_common(summaries: Iterable[Mapping[str, Any]], count: int = DEFAULT_COLUMNS) -> list[str]:
    """The ``count`` KPI names that most of ``summaries`` have (ties by name)."""
    seen: Counter[str] = Counter()
    for summary in summaries:
        seen.update(kpi_values(summary).keys())
    ranked = sorted(seen.items(), key=lambda item: (-item[1], item[0]))
    return [name for name, _ in ranked[:count]]


def columns(
    settings: Settings, summaries: Iterable[Mapping[str, Any]], chosen: Sequence[str] = ()
) -> list[Kpi]:
    """The KPI columns of a table: ``chosen`` when given, else the configured KPIs, else
    the most common KPIs of the rows shown."""
    if chosen:
        return [kpi(settings, name) for name in chosen]
    if settings.kpis:
        return configured(settings)
    return [kpi(settings, name) for name in most_common(summaries)]


def best_and_worst(
    values: Sequence[float | None], better: Literal["higher", "lower"] | None
) -> tuple[set[int], set[int]]:
    """The positions of the best and of the worst of ``values`` (ties all marked); nothing
    when ``better`` is unknown, or when fewer than two values differ."""
    present = [v for v in values if v is not None]
    if better is None or len(set(present)) < 2:
        return set(), set()
    high, low = max(present), min(present)
    best, worst = (high, low) if better == "higher" else (low, high)
    return (
        {i for i, v in enumerate(values) if v == best},
        {i for i, v in enumerate(values) if v == worst},
    )


def table_columns(
    settings: Settings,
    summaries: Sequence[Mapping[str, Any]],
    chosen: Sequence[str],
    query: Query | None = None,
) -> list[Kpi]:
    """The KPI columns of a runs table (the CLI's and the UI's): ``chosen``, else the
    KPIs the query names (what the runs were found or sorted by) followed by the default
    columns, at least ``DEFAULT_COLUMNS`` of them."""
    if chosen:
        return columns(settings, [], chosen)
    queried = [f.name for f in fields_of(query or Query()) if f.kind == "kpi"]
    default = [k.name for k in columns(settings, summaries)]
    names = list(dict.fromkeys([*queried, *default]))
    return [kpi(settings, n) for n in names[: max(DEFAULT_COLUMNS, len(queried))]]
