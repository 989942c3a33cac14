"""The runs table the CLI prints (``run list``, ``plan show``, ``view show``): KPI columns
instead of a raw summary, chosen as the web UI chooses them (``runyard.kpis``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import Enum
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

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
    from runyard.remote.client import Client
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


def remote_filters(conditions: Mapping[str, Any]) -> dict[str, Any]:
    """A run list's filters as GET /api/v1/runs takes them (query parameters)."""
    out: dict[str, Any] = {}
    for key, value in conditions.items():
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        out[key] = value
    return out


def remote_settings() -> Any:
    """What the runs table needs of a yard's settings, for a server's runs: no
    ``[kpis]`` sections (the server's runyard.toml is not read from here), so KPI columns
    are the most common KPIs of the rows shown, under their own names."""
    return SimpleNamespace(kpis={})


def remote_names(client: Client, page: Sequence[_models.Run]) -> _runs_registry.LineageNames:
    """The plan labels of a page of a server's runs (one request per plan shown)."""
    labels: dict[str, str] = {}
    for plan_id in sorted({r.plan_version_id for r in page if r.plan_version_id}):
        detail = client.get(f"plans/{quote(plan_id, safe='')}", runs=0)
        label = detail.get("label")
        if label:
            labels[plan_id] = label
    return _runs_registry.LineageNames(labels, {}, {})
