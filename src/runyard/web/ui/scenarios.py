"""``/ui/scenarios``: scenarios with their lock state, lock and unlock, the way to a new
plan, and the closed legacy path ``/ui/scenarios/{sid}/run``.

Locking goes through ``registry.scenarios.set_locked`` and then rewrites the scenario's
lineage file, as ``runyard scenario lock`` does, so that ``runyard rebuild`` brings the
lock back too.
"""

from __future__ import annotations

from typing import Annotated, NoReturn
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from runyard.errors import LegacyPathClosed
from runyard.ids import validate_label
from runyard.registry import plans, scenarios
from runyard.web.auth import require_ui_write
from runyard.web.ui.render import redirect, render
from runyard.yard import Yard

router = APIRouter()

PAGE_SIZE = 50
PLANS_SHOWN = 50


def yard_of(request: Request) -> Yard:
    yard: Yard = request.app.state.yard
    return yard


def checked_id(value: str, what: str) -> str:
    """An id (or name) from the URL or a form: printable text of sane length, else a 422.

    Ids are looked up, never used as paths; this keeps text no id can have (control
    characters, NUL, which PostgreSQL refuses outright) away from the database."""
    return validate_label(value, what)


def _api(path: str, **params: str | None) -> str:
    kept = {k: v for k, v in params.items() if v}
    return f"/api/v1{path}" + (f"?{urlencode(kept)}" if kept else "")


@router.get("/scenarios", response_class=HTMLResponse)
def scenario_list(request: Request, after: str | None = None) -> Response:
    with yard_of(request).read() as conn:
        page = scenarios.list_scenarios(conn, limit=PAGE_SIZE, after=after or None)
    return render(
        request,
        "scenarios/list.html",
        title="Scenarios",
        section="scenarios",
        json_href=_api("/scenarios", after=after),
        page=page,
    )


@router.get("/scenarios/{scenario}", response_class=HTMLResponse)
def scenario_show(request: Request, scenario: str) -> Response:
    checked_id(scenario, "scenario id or name")
    with yard_of(request).read() as conn:
        found = scenarios.get_scenario(conn, scenario)
        data_bytes = None
        if found.data_digest:
            data_bytes = len(scenarios.data_content(conn, found.data_digest).encode())
        its_plans = plans.list_plans(conn, limit=PLANS_SHOWN, scenario=found.scenario_id)
    return render(
        request,
        "scenarios/show.html",
        title=f"Scenario {found.name}",
        section="scenarios",
        json_href=_api(f"/scenarios/{found.scenario_id}"),
        scenario=found,
        data_bytes=data_bytes,
        plans=its_plans,
    )


def _back(scenario_id: str, back: str) -> str:
    """Where a lock form returns: the scenario's page or the list (never a URL from the form)."""
    return f"/ui/scenarios/{scenario_id}" if back == "detail" else "/ui/scenarios"


@router.post("/scenarios/{scenario}/lock", dependencies=[Depends(require_ui_write)])
def scenario_lock(
    request: Request,
    scenario: str,
    reason: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "list",
) -> Response:
    checked_id(scenario, "scenario id or name")
    yard = yard_of(request)
    locked = scenarios.set_locked_in_yard(yard, scenario, True, reason.strip() or None)
    return redirect(
        _back(locked.scenario_id, back),
        f"Locked scenario {locked.name}: no new plans or runs from it.",
    )


@router.post("/scenarios/{scenario}/unlock", dependencies=[Depends(require_ui_write)])
def scenario_unlock(
    request: Request, scenario: str, back: Annotated[str, Form()] = "list"
) -> Response:
    checked_id(scenario, "scenario id or name")
    yard = yard_of(request)
    unlocked = scenarios.set_locked_in_yard(yard, scenario, False)
    return redirect(_back(unlocked.scenario_id, back), f"Unlocked scenario {unlocked.name}.")


# The closed legacy path. It answers 403 for EVERY sid, known or not, on GET and POST,
# without looking the scenario up: the path itself is closed (no run is ever made from a
# scenario directly), and the answer does not tell whether a scenario exists. The app's
# error handler adds the banner link to /ui/plans/new?scenario={sid} (autoescaped in the
# template). There is deliberately no require_ui_write: the route changes nothing, and an
# old form or script posting here (without our CSRF token) must see where runs are made
# now, not a CSRF refusal.
@router.api_route(
    "/scenarios/{sid}/run",
    methods=["GET", "POST"],
    response_class=HTMLResponse,
    response_model=None,
)
def legacy_run(sid: str) -> NoReturn:
    raise LegacyPathClosed(
        "Runs are no longer started from a scenario: every run is made from a plan version. "
        "This legacy path is closed and made no run.",
        hint="Create a plan from this scenario and a config version, then run it.",
    )
