"""The runs table the CLI prints (``run list``, ``plan show``, ``view show``): KPI columns
instead of a raw summary, chosen as the web UI chooses them (``runyard.kpis``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.table import Table

from runyard.cli.lazy import lazy
from runyard.cli.output import short_json, styled_status, table, when

if TYPE_CHECKING:
    from runyard import config as _config
    from runyard import kpis
    from runyard import models as _models
    from runyard.query import ast as _ast_query
    from runyard.registry import runs as _runs_registry
    from runyard.registry import search_index as _search_index_registry
else:
    kpis = lazy("runyard.kpis")
    _config = lazy("runyard.config")
    _models = lazy("runyard.models")
    _ast_query = lazy("runyard.query.ast")
    _runs_registry = lazy("runyard.registry.runs")
    _search_index_registry = lazy("runyard.registry.search_index")


def split_columns(text: str | None) -> list[str]:
    return [c.strip() for c in (text or "").split(",") if c.strip()]


def kpi_columns(
    settings: _config.Settings,
    runs: Sequence[_models.Run],
    chosen: Sequence[str],
    query: _ast_query.Query | None = None,
) -> list[kpis.Kpi]:
    """The table's KPI columns, chosen as the web UI chooses them."""
    return kpis.table_columns(settings, [r.summary for r in runs], chosen, query)


def number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}"


def runs_table(
    settings: _config.Settings,
    runs: Sequence[_models.Run],
    columns: Sequence[kpis.Kpi],
    names: _runs_registry.LineageNames,
    title: str | None = None,
) -> Table:
    headings = ["run_id", "status", "plan", "group", "started", *(c.heading for c in columns)]
    if not columns:
        headings.append("summary")
    rows = []
    for r in runs:
        values = _search_index_registry.kpi_values(r.summary)
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
