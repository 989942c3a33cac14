"""``/ui``: the overview, the yard at a glance, every figure linking to the page that
shows it (runs filtered by status, location, group or day; jobs; archives).

One core call (``registry.overview.overview``, also behind ``/api/v1/overview``)
gives every figure; this module only turns them into links, sizes and a chart. It
reads the registry only: a page view never walks a run folder.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from runyard import fsnames
from runyard.registry.overview import DayCount, JobBrief, Overview, overview
from runyard.web.charts import bar_chart
from runyard.web.ui.render import render
from runyard.yard import Yard

router = APIRouter()

CHART_WIDTH, CHART_HEIGHT = 1040, 220


def _yard(request: Request) -> Yard:
    yard: Yard = request.app.state.yard
    return yard


def runs_href(**filters: str) -> str:
    """The runs list filtered this way: ``/ui/runs?status=failed``. Text that is not
    UTF-8 (a group name from the disk) goes in its display form, as every link does."""
    shown = {k: v if fsnames.is_utf8(v) else fsnames.shown(v) for k, v in filters.items()}
    return "/ui/runs?" + urlencode(shown)


def day_href(day: DayCount) -> str:
    """The runs started on that UTC day."""
    start = datetime(day.day.year, day.day.month, day.day.day)
    end = start + timedelta(days=1)
    return runs_href(started_after=start.isoformat(), started_before=end.isoformat())


def format_age(seconds: float | None) -> str:
    """``3 days 4 h``, ``5 h 12 min``, ``12 min``, ``less than a minute``."""
    if seconds is None:
        return "—"
    minutes = int(seconds // 60)
    if minutes < 1:
        return "less than a minute"
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} day{'s' if days != 1 else ''} {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


def job_label(job: JobBrief) -> str:
    """What a job is about, by name: ``planning · Q3 baseline (base)``."""
    about = job.plan_label or job.scenario_name
    if job.plan_label and job.scenario_name:
        about = f"{job.plan_label} ({job.scenario_name})"
    if about is None and job.plan_version_id:
        about = job.plan_version_id  # a plan without label or scenario: its id, still a link
    return f"{job.type.value} · {about}" if about else job.type.value


def per_day_chart(figures: Overview) -> Markup:
    days = figures.per_day
    return bar_chart(
        f"Runs started per day, last {len(days)} days (UTC)",
        [d.day.strftime("%m-%d") for d in days],
        [("runs", [float(d.runs) for d in days])],
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
    )


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request) -> Response:
    """The yard at a glance. Its JSON twin is ``/api/v1/overview``."""
    figures = overview(_yard(request))
    context: dict[str, Any] = {
        "ov": figures,
        "chart": per_day_chart(figures),
        "runs_href": runs_href,
        "day_href": day_href,
        "job_label": job_label,
        "backup_age": format_age(figures.backup.age_seconds),
        "busiest_day": max((d.runs for d in figures.per_day), default=0),
    }
    return render(
        request,
        "overview.html",
        title="Overview",
        section="overview",
        json_href="/api/v1/overview",
        **context,
    )
