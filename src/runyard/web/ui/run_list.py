"""``/ui/runs``: the run history, a page of runs at a time with filters.

Routes stay thin: filters are parsed here (a GET form sends empty fields, which the
API's typed parameters would refuse), then the same core calls as the CLI and the API
answer. A page of the history is one keyset query plus one query for scenario names,
whatever the registry's size.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from runyard.errors import Invalid, NotFound
from runyard.models import Run, RunLocation, RunStatus
from runyard.registry.runs import RunFilter, list_runs
from runyard.registry.scenarios import scenario_names
from runyard.web.ui.render import render
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
    runs: list[Run] = []
    next_cursor: str | None = None
    unmatched: str | None = None
    try:
        page = list_runs(yard, filters, limit=limit, after=cursor)
        runs, next_cursor = page.items, page.next_cursor
    except NotFound as exc:  # an unknown plan, scenario or config: nothing can match
        unmatched = exc.message
    with yard.read() as conn:
        names = scenario_names(conn, [r.scenario_id for r in runs if r.scenario_id])
    active = {k: v for k, v in raw.items() if v is not None}
    api_query = {**active, **({"limit": str(limit)} if limit != PAGE_LIMIT else {})}
    if cursor:
        api_query["after"] = cursor
    context: dict[str, Any] = {
        "runs": runs,
        "names": names,
        "next_cursor": next_cursor,
        "unmatched": unmatched,
        "filtered": bool(active),
        "filters": {k: v or "" for k, v in raw.items()},
        "statuses": [s.value for s in RunStatus],
        "locations": [loc.value for loc in RunLocation],
        "limit": limit,
    }
    json_href = "/api/v1/runs" + ("?" + urlencode(api_query) if api_query else "")
    template = "runs/_table.html" if _is_partial(request) else "runs/list.html"
    response = render(
        request, template, title="Runs", section="runs", json_href=json_href, **context
    )
    response.headers["Vary"] = "HX-Request"
    return response
