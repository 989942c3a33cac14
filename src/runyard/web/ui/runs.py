"""``/ui/runs``: the run history, a run's page (summary, KPIs, artifacts, manifest,
archive history, pin, archive and restore one run), its files, and runs side by side.

Routes stay thin: filters are parsed here (a GET form sends empty fields, which the
API's typed parameters would refuse), then the same core calls as the CLI and the API
answer. A page of the history is one keyset query plus one query for scenario names,
whatever the registry's size.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from runyard.artifacts import media_type
from runyard.compare import CompareRow, KpiRow, RunComparison, compare_runs, flatten
from runyard.errors import Invalid, NotFound, Refused, RunyardError
from runyard.fsutil import read_regular_file
from runyard.ids import validate_run_id, validate_text
from runyard.lifecycle import actions
from runyard.lifecycle.archive import ArchiveOptions
from runyard.lifecycle.batches import run_history
from runyard.lifecycle.guards import Scope
from runyard.lifecycle.report import ArchiveReport, RestoreReport
from runyard.manifest import MANIFEST_NAME
from runyard.models import Run
from runyard.registry.runs import get_run, set_pinned
from runyard.registry.scenarios import scenario_names
from runyard.web import charts
from runyard.web.auth import acting, require_ui_write
from runyard.web.csv_preview import MAX_PREVIEWS, is_csv, preview_csv
from runyard.web.files import artifact_entries, artifact_href, resolve_requested
from runyard.web.ui.archive_places import stored_run
from runyard.web.ui.render import redirect, render
from runyard.yard import Yard

router = APIRouter()

WRITE = [Depends(require_ui_write)]
PAGE_LIMIT = 50
ARTIFACT_LIMIT = 1000
MANIFEST_MAX_BYTES = 1024 * 1024
REASON_MAX = 500
MAX_KPI_BARS = 24  # KPIs in the comparison's chart; the table has them all
LINEAGE_TITLES = {
    "plan_version_id": "plan version",
    "scenario_id": "scenario",
    "config_version_id": "config version",
}
# Served as themselves when viewed; every other type is either text (shown as plain
# text, so an HTML or SVG artifact never runs in our origin) or binary.
TEXT_LIKE_APPLICATION = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/ecmascript",
        "application/x-sh",
        "application/x-yaml",
        "application/yaml",
        "application/toml",
        "application/sql",
        "application/x-python",
        "application/xhtml+xml",
    }
)
ARTIFACT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox",
}


def _yard(request: Request) -> Yard:
    yard: Yard = request.app.state.yard
    return yard


def _web_command(*args: str) -> list[str]:
    """What the reports and the execution log record as the command that did it."""
    return ["runyard-web", *args]


# ---------------------------------------------------------------- runs side by side
# Declared before /runs/{run_id}, which would otherwise take "compare" for a run id.


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _display_rows(rows: Iterable[CompareRow]) -> list[dict[str, Any]]:
    """Params and config rows as the table shows them: each value as compact JSON."""
    return [
        {
            "key": row.key,
            "heading": row.key,
            "unit": None,
            "better": None,
            "cells": [_cell(v) for v in row.values],
            "marks": ["" for _ in row.values],
            "differs": row.differs,
            "numeric": False,
        }
        for row in rows
    ]


def _marks(row: KpiRow) -> list[str]:
    """Each cell's mark: best and worst by ``[kpis] better``, else highest and lowest."""
    marks = ["" for _ in row.values]
    if row.better is not None:
        pairs = (("best", row.best), ("worst", row.worst))
    else:
        pairs = (("highest", row.highest), ("lowest", row.lowest))
    for mark, positions in pairs:
        for i in positions:
            marks[i] = mark
    return marks


def _kpi_display_rows(rows: Iterable[KpiRow]) -> list[dict[str, Any]]:
    """KPI rows: numbers formatted by the template, with their marks; others as JSON."""
    return [
        {
            "key": row.key,
            "heading": row.label,
            "unit": row.unit,
            "better": row.better,
            "cells": row.values if row.numeric else [_cell(v) for v in row.values],
            "marks": _marks(row) if row.numeric else ["" for _ in row.values],
            "differs": row.differs,
            "numeric": row.numeric,
        }
        for row in rows
    ]


LINEAGE_ROWS = ("plan_version_id", "scenario_id", "config_version_id")


def _lineage_rows(comparison: RunComparison, only_diff: bool) -> tuple[list[str], list[str]]:
    """The lineage rows of the runs table to show, and those hidden as equal."""
    differs = {r.key: r.differs for r in comparison.lineage}
    shown = [k for k in LINEAGE_ROWS if differs.get(k, True) or not only_diff]
    return shown, [k for k in LINEAGE_ROWS if k not in shown]


def _aligned(periods: list[str], own: Sequence[str], values: Sequence[float]) -> list[float]:
    """A run's values on the shared periods; NaN (not drawn) where the run has none."""
    by_period = dict(zip(own, values, strict=False))
    return [by_period.get(p, math.nan) for p in periods]


def _psi_charts(comparison: RunComparison) -> list[dict[str, Any]]:
    """Inventory and backlog over time, one line per run with a PSI table."""
    if not comparison.series:
        return []
    names = {n.run_id: n.name for n in comparison.names}
    periods: list[str] = []
    seen: set[str] = set()
    for s in comparison.series:
        for p in s.periods:
            if p not in seen:
                seen.add(p)
                periods.append(p)
    hover = [s.run_id for s in comparison.series]
    out = []
    for key, label in (("inventory", "Inventory"), ("backlog", "Backlog")):
        lines = [
            (names.get(s.run_id, s.run_id), _aligned(periods, s.periods, getattr(s, key)))
            for s in comparison.series
        ]
        title = f"{label} per period (summed over SKUs)"
        out.append(
            {
                "svg": charts.line_chart(title, periods, lines, hover=hover),
                "caption": f"{label} over time, one line per run (from each run's psi.csv).",
            }
        )
    return out


def _kpi_chart(comparison: RunComparison) -> tuple[dict[str, Any] | None, bool, bool]:
    """One grouped bar chart of the numeric KPIs, normalised per KPI.

    Only the KPIs that differ are drawn (all of them when none differs): equal bars say
    nothing. Each KPI's bars are shares of its largest magnitude, so KPIs of any scales
    share the chart; the raw values are in the table and in each bar's tooltip. Returns
    the chart, whether only differing KPIs are drawn, and whether some were left out.
    """
    numeric = [r for r in comparison.kpis if r.numeric]
    differing = [r for r in numeric if r.differs]
    chosen = differing or numeric
    rows = chosen[:MAX_KPI_BARS]
    if not rows:
        return None, False, False
    marks = {(i, c): m for c, row in enumerate(rows) for i, m in enumerate(_marks(row)) if m}
    series = [
        (name.name, [float(v) if v is not None else None for v in (r.values[i] for r in rows)])
        for i, name in enumerate(comparison.names)
    ]
    svg = charts.normalised_bar_chart(
        "KPIs, each as a share of its largest value",
        [r.label for r in rows],
        series,
        hover=[n.run_id for n in comparison.names],
        marks=marks,
        units=[r.unit for r in rows],
    )
    caption = (
        "Each KPI's bars are scaled to that KPI's largest magnitude (100%), so KPIs of "
        "different scales share one chart; hover a bar for its value. A missing value "
        "draws no bar."
    )
    only_differing = bool(differing) and len(differing) < len(numeric)
    return {"svg": svg, "caption": caption}, only_differing, len(chosen) > len(rows)


@router.get("/runs/compare", response_class=HTMLResponse)
def run_compare(
    request: Request,
    ids: Annotated[list[str] | None, Query()] = None,
    only_diff: bool = False,
) -> Response:
    yard = _yard(request)
    comparison = compare_runs(yard, ids or [])
    run_ids = [r.run_id for r in comparison.runs]
    with yard.read() as conn:
        names = scenario_names(conn, [r.scenario_id for r in comparison.runs if r.scenario_id])
    ids_query = [("ids", run_id) for run_id in run_ids]
    params = [r for r in comparison.params if r.differs or not only_diff]
    kpis = [r for r in comparison.kpis if r.differs or not only_diff]
    config_diff = [r for r in comparison.config if r.differs]
    lineage_shown, lineage_hidden = _lineage_rows(comparison, only_diff)
    kpi_chart, only_differing, capped = _kpi_chart(comparison)
    return render(
        request,
        "runs/compare.html",
        title=f"Compare {len(run_ids)} runs",
        section="runs",
        json_href="/api/v1/runs/compare?" + urlencode(ids_query),
        comparison=comparison,
        run_names=[n.name for n in comparison.names],
        names=names,
        only_diff=only_diff,
        toggle_href="/ui/runs/compare?"
        + urlencode(ids_query + ([] if only_diff else [("only_diff", "1")])),
        lineage={r.key: r for r in comparison.lineage},
        lineage_shown=lineage_shown,
        lineage_hidden=[LINEAGE_TITLES[k] for k in lineage_hidden],
        params=_display_rows(params),
        params_total=len(comparison.params),
        config_diff=_display_rows(config_diff),
        config_total=len(comparison.config),
        kpis=_kpi_display_rows(kpis),
        kpis_total=len(comparison.kpis),
        kpis_directed=any(r.better for r in comparison.kpis if r.numeric),
        psi_charts=_psi_charts(comparison),
        kpi_chart=kpi_chart,
        kpi_chart_differing=only_differing,
        kpi_chart_capped=capped,
        max_kpi_bars=MAX_KPI_BARS,
        mark_glyphs=charts.MARK_GLYPHS,
        series_runs=[s.run_id for s in comparison.series],
    )


# ---------------------------------------------------------------- one run


def _manifest(run: Run) -> tuple[str | None, str | None]:
    """The run's ``run.json`` pretty-printed, and a problem reading it (if any)."""
    try:
        path = resolve_requested(Path(run.path), MANIFEST_NAME, None)
    except NotFound:
        return None, None
    except RunyardError as exc:
        return None, exc.message
    try:  # never blocks: a FIFO swapped in since is refused, not opened for reading
        raw = read_regular_file(path, MANIFEST_NAME, MANIFEST_MAX_BYTES)
    except Invalid as exc:
        return None, exc.message
    except OSError as exc:
        return None, f"cannot read {MANIFEST_NAME}: {exc.strerror}"
    if len(raw) > MANIFEST_MAX_BYTES:
        return None, f"{MANIFEST_NAME} is larger than {MANIFEST_MAX_BYTES // 1024} KiB"
    try:
        return json.dumps(json.loads(raw), indent=2, sort_keys=True, ensure_ascii=False), None
    except (ValueError, UnicodeDecodeError) as exc:
        return raw.decode("utf-8", "replace"), f"{MANIFEST_NAME} is not valid JSON: {exc}"
    except RecursionError:  # nested deeper than any parser should follow: shown as text
        return raw.decode("utf-8", "replace"), f"{MANIFEST_NAME} is nested too deeply to show"


def _kpis(summary: Mapping[str, Any]) -> tuple[list[tuple[str, Any]], list[tuple[str, str]]]:
    """The summary's leaves: numbers (for the KPI table), and the other values."""
    numbers, others = [], []
    for key, value in sorted(flatten(summary).items()):
        if isinstance(value, int | float) and not isinstance(value, bool):
            numbers.append((key, value))
        else:
            others.append((key, _cell(value)))
    return numbers, others


def _duration(run: Run) -> float | None:
    if run.finished_at is None:
        return None
    return (run.finished_at - run.started_at).total_seconds()


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_detail(request: Request, run_id: str) -> Response:
    yard = _yard(request)
    run = get_run(yard, validate_run_id(run_id))
    with yard.read() as conn:
        names = scenario_names(conn, [run.scenario_id] if run.scenario_id else [])
    # A run archived to an object store has no folder: its files are in one tar object,
    # shown by its location, size and checksum instead of being listed from disk.
    stored = stored_run(yard, run)
    artifacts_problem = None
    try:
        entries, truncated = (
            ([], False) if stored else artifact_entries(Path(run.path), ARTIFACT_LIMIT)
        )
    except Refused as exc:  # the folder was swapped for a symlink: shown, not followed
        entries, truncated, artifacts_problem = [], False, exc.message
    prefix = f"/ui/runs/{run.run_id}/artifacts"
    artifacts = [
        {
            "entry": e,
            "href": artifact_href(prefix, e),
            "download_href": artifact_href(prefix, e, download=True),
        }
        for e in entries
    ]
    csv_entries = [e for e in entries if is_csv(e)]
    csv_previews = [
        {"preview": preview_csv(Path(run.path), e), "href": artifact_href(prefix, e)}
        for e in csv_entries[:MAX_PREVIEWS]
    ]
    manifest, manifest_problem = (None, None) if stored else _manifest(run)
    numbers, others = _kpis(run.summary)
    return render(
        request,
        "runs/detail.html",
        title=f"Run {run.run_id}",
        section="runs",
        json_href=f"/api/v1/runs/{run.run_id}",
        run=run,
        stored=stored,
        archive_store=yard.settings.file.archive.store,
        scenario_name=names.get(run.scenario_id or ""),
        duration=_duration(run),
        kpi_numbers=numbers,
        kpi_others=others,
        artifacts=artifacts,
        artifacts_truncated=truncated,
        artifacts_problem=artifacts_problem,
        artifact_limit=ARTIFACT_LIMIT,
        csv_previews=csv_previews,
        csv_unpreviewed=len(csv_entries) - len(csv_previews),
        manifest=manifest,
        manifest_problem=manifest_problem,
        history=run_history(yard.settings, run.run_id),
    )


def _is_text(media: str) -> bool:
    base = media.split(";", 1)[0].strip().lower()
    return (
        base.startswith("text/")
        or base in TEXT_LIKE_APPLICATION
        or base.endswith("+xml")
        or base.endswith("+json")
    )


@router.get("/runs/{run_id}/artifacts/{path:path}")
def run_artifact(
    request: Request,
    run_id: str,
    path: str,
    download: bool = False,
    path_b64: str | None = None,
) -> Response:
    """One file of the run, only through ``resolve_artifact`` (a name that is not UTF-8:
    its display form in the URL and its bytes in ``path_b64``). Viewed text is plain
    text and every answer is sandboxed, so an artifact never runs as a page of this
    server."""
    run = get_run(_yard(request), validate_run_id(run_id))
    target = resolve_requested(Path(run.path), path, path_b64)
    name = path.rsplit("/", 1)[-1]
    media = media_type(target.name)
    headers = dict(ARTIFACT_HEADERS)
    if download:
        return FileResponse(
            target,
            media_type=media,
            filename=name,
            content_disposition_type="attachment",
            headers=headers,
        )
    if _is_text(media):
        media = "text/plain; charset=utf-8"
    return FileResponse(
        target,
        media_type=media,
        filename=name,
        content_disposition_type="inline",
        headers=headers,
    )


@router.post("/runs/{run_id}/pin", dependencies=WRITE)
def run_pin(request: Request, run_id: str) -> Response:
    run = set_pinned(_yard(request), validate_run_id(run_id), True)
    return redirect(
        f"/ui/runs/{run.run_id}", f"Run {run.run_id} is pinned: archiving will skip it."
    )


@router.post("/runs/{run_id}/unpin", dependencies=WRITE)
def run_unpin(request: Request, run_id: str) -> Response:
    run = set_pinned(_yard(request), validate_run_id(run_id), False)
    return redirect(f"/ui/runs/{run.run_id}", f"Run {run.run_id} is no longer pinned.")


def _reason(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    return validate_text(value, "reason", REASON_MAX)


def _archive_options(run_id: str, reason: str | None) -> ArchiveOptions:
    command = _web_command("archive", "--run-id", run_id)
    return ArchiveOptions(scope=Scope(run_ids=[run_id]), reason=reason, command=command)


def _skip_text(report: ArchiveReport, run_id: str) -> str:
    reasons = [
        f"{r.message} ({r.code})" for s in report.skips if s.run_id == run_id for r in s.reasons
    ]
    return "; ".join(reasons) or "it was not among the candidates"


@router.post("/runs/{run_id}/archive/preview", dependencies=WRITE, response_class=HTMLResponse)
def run_archive_preview(
    request: Request, run_id: str, reason: Annotated[str, Form()] = ""
) -> Response:
    """The dry run of archiving this run: would it move, or every reason it would not."""
    yard = _yard(request)
    run = get_run(yard, validate_run_id(run_id))
    why = _reason(reason)
    outcome = actions.archive(yard, _archive_options(run.run_id, why), run=False)
    report = outcome.report
    return render(
        request,
        "runs/archive_preview.html",
        title=f"Archive run {run.run_id}?",
        section="runs",
        json_href=f"/api/v1/runs/{run.run_id}",
        run=run,
        reason=why or "",
        entries=[e for e in report.entries if e.run_id == run.run_id],
        skips=[s for s in report.skips if s.run_id == run.run_id],
        problems=report.problems,
        report_path=str(outcome.report_path) if outcome.report_path else None,
    )


@router.post("/runs/{run_id}/archive", dependencies=WRITE)
def run_archive(request: Request, run_id: str, reason: Annotated[str, Form()] = "") -> Response:
    yard = _yard(request)
    run = get_run(yard, validate_run_id(run_id))
    with acting(request):
        outcome = actions.archive(yard, _archive_options(run.run_id, _reason(reason)), run=True)
    report = outcome.report
    entry = next((e for e in report.entries if e.run_id == run.run_id), None)
    if entry is not None and entry.status == "moved":
        message = f"Run {run.run_id} was archived into batch {report.batch_id}."
    elif entry is not None:
        message = (
            f"Archiving run {run.run_id} did not complete ({entry.status}"
            + (f": {entry.error}" if entry.error else "")
            + f"); see batch {report.batch_id}."
        )
    else:
        why = _skip_text(report, run.run_id)
        message = f"Run {run.run_id} was not archived: skipped because {why}."
    return redirect(f"/ui/runs/{run.run_id}", message)


def _restore_entries(report: RestoreReport, run_id: str) -> list[Any]:
    return [e for e in report.entries if e.run_id == run_id]


@router.post("/runs/{run_id}/restore/preview", dependencies=WRITE, response_class=HTMLResponse)
def run_restore_preview(request: Request, run_id: str) -> Response:
    """The dry run of restoring this archived run from its batch."""
    yard = _yard(request)
    run = get_run(yard, validate_run_id(run_id))
    outcome = actions.restore_run(
        yard, run.run_id, run=False, command=_web_command("restore", "--run-id", run.run_id)
    )
    entries = _restore_entries(outcome.report, run.run_id)
    return render(
        request,
        "runs/restore_preview.html",
        title=f"Restore run {run.run_id}?",
        section="runs",
        json_href=f"/api/v1/runs/{run.run_id}/history",
        run=run,
        batch_id=outcome.report.batch_id,
        entries=entries,
        can_restore=any(e.status == "pending" for e in entries),
        report_path=str(outcome.report_path),
    )


@router.post("/runs/{run_id}/restore", dependencies=WRITE)
def run_restore(request: Request, run_id: str) -> Response:
    yard = _yard(request)
    run = get_run(yard, validate_run_id(run_id))
    with acting(request):
        outcome = actions.restore_run(
            yard, run.run_id, run=True, command=_web_command("restore", "--run-id", run.run_id)
        )
    entries = _restore_entries(outcome.report, run.run_id)
    batch = outcome.report.batch_id
    if any(e.status == "restored" for e in entries):
        message = f"Run {run.run_id} was restored from batch {batch}."
    else:
        details = "; ".join(e.status + (f": {e.error}" if e.error else "") for e in entries)
        message = f"Run {run.run_id} was not restored from batch {batch}: {details or 'no entry'}."
    return redirect(f"/ui/runs/{run.run_id}", message)
