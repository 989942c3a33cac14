"""The runs table the CLI prints (``run list``, ``plan show``, ``view show``): KPI columns
instead of a raw summary, chosen as the web UI chooses them (``runyard.kpis``)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from runyard import kpis
from runyard.cli.output import short_json, styled_status, table, when
from runyard.config import Settings
from runyard.models import Run
from runyard.query.ast import Query, fields_of
from runyard.registry.runs import LineageNames
from runyard.registry.search_index import kpi_values


def split_columns(text: str | None) -> list[str]:
    return [c.strip() for c in (text or "").split(",") if c.strip()]


def kpi_columns(
    settings: Settings, runs: Sequence[Run], chosen: Sequence[str], query: Query | None = None
) -> list[kpis.Kpi]:
    """``chosen``, else the KPIs the query names (found or sorted by) followed by the
    default columns."""
    if chosen:
        return kpis.columns(settings, [], chosen)
    sorted_by = [f.name for f in fields_of(query or Query()) if f.kind == "kpi"]
    default = [k.name for k in kpis.columns(settings, [r.summary for r in runs])]
    names = list(dict.fromkeys([*sorted_by, *default]))[: max(kpis.DEFAULT_COLUMNS, len(sorted_by))]
    return [kpis.kpi(settings, n) for n in names]


def number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}"


def runs_table(
    settings: Settings,
    runs: Sequence[Run],
    columns: Sequence[kpis.Kpi],
    names: LineageNames,
    title: str | None = None,
) -> Table:
    headings = ["run_id", "status", "plan", "group", "started", *(c.heading for c in columns)]
    if not columns:
        headings.append("summary")
    rows = []
    for r in runs:
        values = kpi_values(r.summary)
        row = [
            r.run_id,
            styled_status(r.status.value),
            names.plan(r.plan_version_id),
            r.group,
            when(r.started_at),
        ]
        row += [number(values.get(c.name)) for c in columns]
        if not columns:
            row.append(short_json(r.summary, 40))
        rows.append(row)
    return table(title, headings, rows)
