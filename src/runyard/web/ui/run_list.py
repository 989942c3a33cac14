"""``/ui/runs``: the run history, a page of runs at a time with filters.

Routes stay thin: filters are parsed here (a GET form sends empty fields, which the
API's typed parameters would refuse), then the same core calls as the CLI and the API
answer. A page of the history is one keyset query plus one query for scenario names,
whatever the registry's size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from runyard import kpis
from runyard.errors import Invalid, NotFound
from runyard.models import Run, RunLocation, RunStatus
from runyard.query import Query as Query_
from runyard.query import QueryError, parse_query
from runyard.registry import views
from runyard.registry.run_query import known_names
from runyard.registry.runs import LineageNames, RunFilter, lineage_names, list_runs
from runyard.registry.search_index import kpi_values
from runyard.web.auth import require_ui_write
from runyard.web.ui.render import query, redirect, render
from runyard.yard import Yard

router = APIRouter()

PAGE_LIMIT = 50
# The filters of the history, in the order of the form; the API takes the same names.
FILTER_KEYS = (
    "plan_version_id",
    "scenario",
    "config_version_id",
    "status",
    "group",
    "location",
    "legacy",
    "started_after",
    "started_before",
)


def _yard(request: Request) -> Yard:
    yard: Yard = request.app.state.yard
    return yard


# ---------------------------------------------------------------- the history


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


E = TypeVar("E", bound=StrEnum)


def _enum(value: str | None, kind: type[E], what: str) -> E | None:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise Invalid(f"{what} {value[:80]!r} is not one of: {allowed}") from None


def _datetime(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(
            f"{what} {value[:80]!r} is not a date and time",
            hint="write it like 2026-11-22T10:30 (UTC)",
        ) from None


def _legacy(value: str | None) -> bool | None:
    if value is None:
        return None
    if value in ("true", "yes", "1"):
        return True
    if value in ("false", "no", "0"):
        return False
    raise Invalid(f"legacy {value[:80]!r} must be true or false")


def _run_filter(raw: Mapping[str, str | None]) -> RunFilter:
    return RunFilter(
        plan_version_id=raw["plan_version_id"],
        scenario=raw["scenario"],
        config_version_id=raw["config_version_id"],
        status=_enum(raw["status"], RunStatus, "status"),
        group=raw["group"],
        location=_enum(raw["location"], RunLocation, "location"),
        legacy=_legacy(raw["legacy"]),
        started_after=_datetime(raw["started_after"], "started after"),
        started_before=_datetime(raw["started_before"], "started before"),
    )


def _is_partial(request: Request) -> bool:
    """An htmx swap of the table (not htmx restoring a page missing from its history)."""
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


@router.get("/runs", response_class=HTMLResponse)
def run_list(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = PAGE_LIMIT,
    after: str | None = None,
    plan_version_id: str | None = None,
    scenario: str | None = None,
    config_version_id: str | None = None,
    status: str | None = None,
    group: str | None = None,
    location: str | None = None,
    legacy: str | None = None,
    started_after: str | None = None,
    started_before: str | None = None,
    where: Annotated[str | None, Query(max_length=10_000)] = None,
    order_by: Annotated[list[str] | None, Query(max_length=8)] = None,
    columns: Annotated[list[str] | None, Query(max_length=24)] = None,
    view: str | None = None,
) -> Response:
    raw = {
        "plan_version_id": _blank_to_none(plan_version_id),
        "scenario": _blank_to_none(scenario),
        "config_version_id": _blank_to_none(config_version_id),
        "status": _blank_to_none(status),
        "group": _blank_to_none(group),
        "location": _blank_to_none(location),
        "legacy": _blank_to_none(legacy),
        "started_after": _blank_to_none(started_after),
        "started_before": _blank_to_none(started_before),
    }
    filters = _run_filter(raw)
    cursor = _blank_to_none(after)
    yard = _yard(request)
    settings = yard.settings
    view_name = _blank_to_none(view)
    with yard.read() as conn:
        saved = views.list_views(conn)
        chosen = next((v for v in saved if v.name == view_name), None)
    if view_name is not None and chosen is None:
        raise NotFound(f"no saved view {view_name!r}", hint="the runs page lists the saved ones")
    where_text = _blank_to_none(where)
    order_texts = [o for o in (order_by or []) if o.strip()]
    column_names = views.clean_columns(columns or [])
    if chosen is not None:  # the view fills what the URL does not say
        where_text = where_text if where is not None else (chosen.where or None)
        order_texts = order_texts or chosen.order_by
        column_names = column_names or chosen.columns
    runs: list[Run] = []
    next_cursor: str | None = None
    unmatched: str | None = None
    query_error: str | None = None
    query = Query_()
    try:
        query = parse_query(where_text, order_texts)
        page = list_runs(yard, filters, limit=limit, after=cursor, query=query)
        runs, next_cursor = page.items, page.next_cursor
    except QueryError as exc:
        query_error = exc.message + (f" ({exc.hint})" if exc.hint else "")
    except NotFound as exc:  # an unknown plan, scenario or config: nothing can match
        unmatched = exc.message
    with yard.read() as conn:
        names = lineage_names(conn, runs)
        known_kpis = known_names(conn, "kpi", MAX_CHOOSER)
    shown = kpis.table_columns(settings, [r.summary for r in runs], column_names, query)
    active = {k: v for k, v in raw.items() if v is not None}
    api_query: list[tuple[str, str]] = list(active.items())
    if where_text:
        api_query.append(("where", where_text))
    api_query += [("order_by", o) for o in order_texts]
    if limit != PAGE_LIMIT:
        api_query.append(("limit", str(limit)))
    if cursor:
        api_query.append(("after", cursor))
    sorted_by = query.order_by[0] if query.order_by else None
    context: dict[str, Any] = {
        "runs": runs,
        "rows": [_row(run, shown, names) for run in runs],
        "names": names,
        "next_cursor": next_cursor,
        "unmatched": unmatched,
        "query_error": query_error,
        "where": where_text or "",
        "order_texts": order_texts,
        "columns": shown,
        "chosen_columns": column_names,
        "known_kpis": sorted(set(known_kpis) | {c.name for c in shown}),
        "sort": {
            "field": sorted_by.field.text if sorted_by else "started_at",
            "descending": sorted_by.descending if sorted_by else True,
        },
        "sort_links": _sort_links(request, shown),
        "views": saved,
        "view": chosen,
        "filtered": bool(active) or bool(where_text),
        "filters": {k: v or "" for k, v in raw.items()},
        "statuses": [s.value for s in RunStatus],
        "locations": [loc.value for loc in RunLocation],
        "limit": limit,
    }
    json_href = "/api/v1/runs" + ("?" + urlencode(api_query) if api_query else "")
    template = "runs/_table.html" if _is_partial(request) else "runs/list.html"
    status_code = 422 if query_error and not _is_partial(request) else 200
    response = render(
        request,
        template,
        title="Runs",
        section="runs",
        json_href=json_href,
        status_code=status_code,
        **context,
    )
    response.headers["Vary"] = "HX-Request"
    return response


MAX_CHOOSER = 200  # KPI names offered by the column chooser
SORTABLE = (
    ("run_id", "Run"),
    ("status", "Status"),
    ("plan_label", "Plan"),
    ("scenario", "Scenario"),
    ("config", "Config"),
    ("group", "Group"),
    ("location", "Location"),
    ("started_at", "Started (UTC)"),
    ("duration", "Duration"),
)


def _sort_links(request: Request, shown: Sequence[kpis.Kpi]) -> dict[str, dict[str, str]]:
    """For each sortable column, the URL that sorts by it (the way it is not sorted now)."""
    current = request.query_params.getlist("order_by")
    first = current[0].strip().lower() if current else "started_at desc"
    fields = [f for f, _ in SORTABLE] + [f"kpi.{k.name}" for k in shown]
    links: dict[str, dict[str, str]] = {}
    for field in fields:
        name = field if not field.startswith("kpi.") else "kpi." + _quoted_name(field[4:])
        # KPIs sort best first when the yard says which way is better, else high first.
        spec = next((k for k in shown if f"kpi.{k.name}" == field), None)
        natural = "asc" if spec is not None and spec.better == "lower" else "desc"
        if field in ("run_id", "status", "plan_label", "scenario", "config", "group", "location"):
            natural = "asc"
        if first in (f"{name} asc".lower(), f"{name}".lower()):
            direction = "desc"
        elif first == f"{name} desc".lower():
            direction = "asc"
        else:
            direction = natural
        links[field] = {
            "href": query(request, order_by=f"{name} {direction}", after=None),
            "direction": direction,
        }
    return links


def _quoted_name(name: str) -> str:
    """A KPI name as the query language reads it (quoted when it needs to be)."""
    plain = all(part and (part[0].isalpha() or part[0] == "_") for part in name.split("."))
    ok = plain and all(ch.isalnum() or ch in "_.-" for ch in name)
    return name if ok else "`" + name.replace("`", "``") + "`"


def _row(run: Run, shown: Sequence[kpis.Kpi], names: LineageNames) -> dict[str, Any]:
    values = kpi_values(run.summary)
    return {
        "run": run,
        "short_id": short_run_id(run.run_id),
        "plan": names.plan(run.plan_version_id),
        "scenario": names.scenario(run.scenario_id),
        "config": names.config(run.config_version_id),
        "kpis": [values.get(k.name) for k in shown],
        "duration": (run.finished_at - run.started_at).total_seconds() if run.finished_at else None,
    }


def short_run_id(run_id: str) -> str:
    """A run id that fits a table cell: whole when short, else its last 8 characters (the
    random part of a generated id); the full id is on hover and on the run's page."""
    return run_id if len(run_id) <= 16 else "…" + run_id[-8:]


@router.post("/views", dependencies=[Depends(require_ui_write)])
def view_save(
    request: Request,
    name: Annotated[str, Form(max_length=200)] = "",
    where: Annotated[str, Form(max_length=10_000)] = "",
    order_by: Annotated[list[str] | None, Form()] = None,
    columns: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """ "Save this view": the query, order and columns on screen, under a name."""
    yard = _yard(request)
    with yard.write() as conn:
        saved = views.save_view(
            conn,
            name.strip(),
            where,
            [o for o in order_by or [] if o.strip()],
            columns or [],
            list(yard.settings.kpis),
        )
    return redirect(f"/ui/runs?view={quote(saved.name)}", f"Saved the view {saved.name}.")
