"""``/ui/archives``: what was archived and how to bring it back.

- ``/archives``: the batches (each in the archive root or an object store, issue 16),
  and the archive form: preview (the dry run, every candidate with its action and every
  skip reason), then archive for real with the same fields.
- ``/archives/log``: the execution log (every executed archive, restore, recover,
  retention pass and purge).
- ``/archives/{batch_id}``: one batch's report (entries, skips, symlinks), the restores
  done from it, and the restore form: preview (restore or conflict per run), then
  restore all or the chosen runs.

The moves are ``lifecycle/actions.py`` (the core ``plan_archive``/``run_archive`` and
``plan_restore``/``run_restore`` behind the CLI), so every guard, the journal, the
reports and the execution log are the same as on the command line. Nothing from a
request names a path: a batch id is checked against the shape the archive gives it
and resolved inside the archive root by the core; run ids are validated by the core.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from runyard.config import Settings
from runyard.errors import Invalid, NotFound
from runyard.ids import run_id_problem
from runyard.lifecycle import actions
from runyard.lifecycle.archive import ArchiveOptions
from runyard.lifecycle.batches import BatchDetail, get_batch, list_batches, validate_batch_id
from runyard.lifecycle.guards import Scope
from runyard.lifecycle.report import ArchiveReport, RestoreReport, relative_to_yard
from runyard.registry import lifecycle as lifecycle_registry
from runyard.web.auth import acting, require_ui_write
from runyard.web.ui.archive_places import (
    BatchPlace,
    batch_place,
    batch_places,
    short_sha,
)
from runyard.web.ui.render import format_size, redirect, render
from runyard.yard import Yard

router = APIRouter()

LOG_PAGE_SIZE = 50
REASON_MAX = 500
_TRUE = frozenset({"1", "on", "true", "yes"})


def _yard(request: Request) -> Yard:
    yard: Yard = request.app.state.yard
    return yard


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _command(request: Request) -> list[str]:
    """How the execution log names a change made here (as the JSON API does), before
    the flags that say what it was."""
    return ["runyard serve", f"{request.method} {request.url.path}"]


def _checked(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() in _TRUE


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _optional_int(raw: str, name: str) -> int | None:
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise Invalid(f"{name} must be a whole number (got {raw[:40]!r})") from None


def _optional_days(raw: str) -> float | None:
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise Invalid(f"older than (days) must be a number (got {raw[:40]!r})") from None


# ---------------------------------------------------------------------------- forms


@dataclass
class ArchiveForm:
    """The archive form's fields as typed (kept as text, to show them back)."""

    groups: list[str] = field(default_factory=list)
    all: bool = False
    unscoped_only: bool = False
    legacy: bool = False
    older_than_days: str = ""
    keep_recent_minutes: str = ""
    keep_last_runs: str = ""
    reason: str = ""

    def options(self, command: Sequence[str] = ()) -> ArchiveOptions:
        """The core's options (Invalid for a bad value or a bad combination)."""
        if len(self.reason) > REASON_MAX:
            raise Invalid(f"the reason is longer than {REASON_MAX} characters")
        scope = Scope(
            groups=self.groups,
            all=self.all,
            unscoped_only=self.unscoped_only,
            legacy=self.legacy,
            older_than_days=_optional_days(self.older_than_days),
        )
        return ArchiveOptions(
            scope=scope,
            keep_recent_minutes=_optional_int(self.keep_recent_minutes, "keep recent minutes"),
            keep_last_runs=_optional_int(self.keep_last_runs, "keep last runs"),
            reason=self.reason or None,
            command=[*command, *self.flags()],
        )

    def flags(self) -> list[str]:
        """The same archive as ``runyard archive`` flags, for the execution log."""
        out: list[str] = []
        for group in self.groups:
            out += ["--group", group]
        if self.all:
            out.append("--all")
        if self.unscoped_only:
            out.append("--unscoped-only")
        if self.legacy:
            out.append("--legacy")
        for flag, value in (
            ("--older-than", self.older_than_days),
            ("--keep-recent-minutes", self.keep_recent_minutes),
            ("--keep-last-runs", self.keep_last_runs),
            ("--reason", self.reason),
        ):
            if value:
                out += [flag, value]
        return out

    def hidden(self) -> list[tuple[str, str]]:
        """The fields again, for the "archive now" form under a preview."""
        out = [("groups", g) for g in self.groups]
        for name, on in (
            ("all", self.all),
            ("unscoped_only", self.unscoped_only),
            ("legacy", self.legacy),
        ):
            if on:
                out.append((name, "1"))
        for name, value in (
            ("older_than_days", self.older_than_days),
            ("keep_recent_minutes", self.keep_recent_minutes),
            ("keep_last_runs", self.keep_last_runs),
            ("reason", self.reason),
        ):
            if value:
                out.append((name, value))
        return out


async def archive_form(request: Request) -> ArchiveForm:
    """Groups come comma separated, in repeated fields, or both."""
    form = await request.form()
    groups = [
        group.strip()
        for raw in form.getlist("groups")
        if isinstance(raw, str)
        for group in raw.split(",")
        if group.strip()
    ]
    return ArchiveForm(
        groups=list(dict.fromkeys(groups)),
        all=_checked(form.get("all")),
        unscoped_only=_checked(form.get("unscoped_only")),
        legacy=_checked(form.get("legacy")),
        older_than_days=_text(form.get("older_than_days")),
        keep_recent_minutes=_text(form.get("keep_recent_minutes")),
        keep_last_runs=_text(form.get("keep_last_runs")),
        reason=_text(form.get("reason")),
    )


@dataclass
class RestoreForm:
    """The restore form: chosen run ids, or every run of the batch."""

    run_ids: list[str] = field(default_factory=list)
    all_runs: bool = False

    def selection(self) -> list[str]:
        """The run ids to pass to the core: none means all (Invalid when nothing chosen)."""
        if self.all_runs:
            return []
        if not self.run_ids:
            raise Invalid('choose the runs to restore, or "all runs"')
        return self.run_ids

    def flags(self) -> list[str]:
        """The same restore as ``runyard restore`` flags, for the execution log."""
        out: list[str] = []
        for run_id in self.selection():
            out += ["--only-run-id", run_id]
        return out

    def hidden(self) -> list[tuple[str, str]]:
        if self.all_runs:
            return [("all_runs", "1")]
        return [("run_ids", r) for r in self.run_ids]


async def restore_form(request: Request) -> RestoreForm:
    form = await request.form()
    run_ids = [r.strip() for r in form.getlist("run_ids") if isinstance(r, str) and r.strip()]
    return RestoreForm(
        run_ids=list(dict.fromkeys(run_ids)), all_runs=_checked(form.get("all_runs"))
    )


ArchiveFormDep = Annotated[ArchiveForm, Depends(archive_form)]
RestoreFormDep = Annotated[RestoreForm, Depends(restore_form)]


# ---------------------------------------------------------------------------- batches


def _candidates(report: ArchiveReport) -> list[dict[str, Any]]:
    """Every candidate of a (dry-run) report: archive, or skip with every reason."""
    rows: list[dict[str, Any]] = [
        {
            "run_id": e.run_id,
            "group": e.group,
            "action": "archive",
            "reasons": [],
            "bytes": e.bytes,
            "legacy": e.legacy,
            "linkable": not run_id_problem(e.run_id),
        }
        for e in report.entries
    ]
    rows += [
        {
            "run_id": s.run_id,
            "group": s.group,
            "action": "skip",
            "reasons": s.reasons,
            "bytes": s.bytes,
            "legacy": False,
            "linkable": not run_id_problem(s.run_id),
        }
        for s in report.skips
    ]
    return sorted(rows, key=lambda r: (r["action"] != "archive", r["run_id"]))


def _index_page(
    request: Request,
    form: ArchiveForm,
    *,
    preview: ArchiveReport | None = None,
    preview_path: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    yard = _yard(request)
    settings: Settings = yard.settings
    batches = list_batches(settings)
    return render(
        request,
        "archives/index.html",
        title="Archives",
        section="archives",
        json_href="/api/v1/archives",
        status_code=status_code,
        batches=batches,
        places=batch_places(yard, batches),
        form=form,
        defaults=settings.file,
        archive_root=relative_to_yard(settings, settings.archive_root),
        archive_store=settings.file.archive.store,
        error=error,
        preview=preview,
        preview_path=preview_path,
        candidates=_candidates(preview) if preview is not None else [],
        hidden=form.hidden(),
    )


def _form_refused(request: Request, form: ArchiveForm, exc: Invalid | NotFound) -> Response:
    """The archive form again, as typed, with why nothing was archived (422 or 404)."""
    status = 404 if isinstance(exc, NotFound) else 422
    error = exc.message + (f" ({exc.hint})" if exc.hint else "")
    return _index_page(request, form, error=error, status_code=status)


@router.get("/archives", response_class=HTMLResponse)
def archives(request: Request) -> Response:
    """The archive batches, newest first, and the archive form."""
    return _index_page(request, ArchiveForm())


@router.post(
    "/archives/preview", response_class=HTMLResponse, dependencies=[Depends(require_ui_write)]
)
def archive_preview(request: Request, form: ArchiveFormDep) -> Response:
    """The dry run: what an archive with these fields would move and skip, and why."""
    yard = _yard(request)
    try:
        outcome = actions.archive(yard, form.options(), run=False)
    except (Invalid, NotFound) as exc:  # a bad field, or a group with no active run
        return _form_refused(request, form, exc)
    path = relative_to_yard(yard.settings, outcome.report_path) if outcome.report_path else None
    return _index_page(request, form, preview=outcome.report, preview_path=path)


@router.post("/archives/run", response_class=HTMLResponse, dependencies=[Depends(require_ui_write)])
def archive_run(request: Request, form: ArchiveFormDep) -> Response:
    """Archive for real (guards applied again, now); to the new batch's page."""
    yard = _yard(request)
    try:
        with acting(request):
            outcome = actions.archive(yard, form.options(_command(request)), run=True)
    except (Invalid, NotFound) as exc:
        return _form_refused(request, form, exc)
    report = outcome.report
    recovered = (
        f" (first finished {_plural(len(outcome.recovered), 'interrupted operation')})"
        if outcome.recovered
        else ""
    )
    if report.batch_id is None:
        return redirect(
            "/ui/archives",
            f"Nothing was archived: no run was eligible "
            f"({_plural(report.summary.skipped, 'candidate')} skipped){recovered}.",
        )
    s = report.summary
    failed = f", {s.failed} FAILED (see the report)" if s.failed else ""
    where = f" in {report.store}" if report.store else ""
    return redirect(
        f"/ui/archives/{report.batch_id}",
        f"Archived {_plural(s.moved, 'run')} ({format_size(s.bytes_moved)}) into batch "
        f"{report.batch_id}{where}{failed}{recovered}.",
    )


@router.get("/archives/log", response_class=HTMLResponse)
def execution_log(request: Request, after: Annotated[str | None, Query()] = None) -> Response:
    """Every executed archive, restore, recover, retention pass and purge, newest first."""
    after = (after or "").strip() or None
    with _yard(request).read() as conn:
        page = lifecycle_registry.list_executions(conn, limit=LOG_PAGE_SIZE, after=after)
    rows = [
        {
            "e": e,
            "command": shlex.join(e.command),
            "batch_linkable": e.batch_id is not None and _is_batch_id(e.batch_id),
        }
        for e in page.items
    ]
    return render(
        request,
        "archives/log.html",
        title="Execution log",
        section="archives",
        json_href="/api/v1/executions" + (f"?{urlencode({'after': after})}" if after else ""),
        page=page,
        rows=rows,
    )


def _is_batch_id(value: str) -> bool:
    try:
        validate_batch_id(value)
    except Invalid:
        return False
    return True


# ---------------------------------------------------------------------------- one batch


def _present(settings: Settings, detail: BatchDetail, place: BatchPlace) -> list[str]:
    """Run ids of the batch's moved entries still in it: whose folder is still in the
    batch, or, for a batch in a store (its runs have no folder), that the registry has
    archived there."""
    if place.store is not None:
        return place.in_store
    batch_id = detail.summary.batch_id
    out: list[str] = []
    for entry in detail.report.entries:
        if entry.status != "moved" or run_id_problem(entry.run_id) or entry.run_id in out:
            continue
        folder = settings.run_dir(entry.run_id, batch_id)
        if folder.is_dir() and not folder.is_symlink():
            out.append(entry.run_id)
    return out


def _batch(settings: Settings, batch_id: str) -> BatchDetail:
    validate_batch_id(batch_id)  # Invalid (422) before anything is looked at
    return get_batch(settings, batch_id)  # NotFound (404)


def _restore_rows(report: RestoreReport) -> list[dict[str, Any]]:
    rows = []
    for entry in report.entries:
        action = {"pending": "restore", "conflict": "conflict"}.get(entry.status, entry.status)
        rows.append({"entry": entry, "action": action})
    return rows


def _batch_page(
    request: Request,
    detail: BatchDetail,
    *,
    form: RestoreForm | None = None,
    preview: RestoreReport | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    yard = _yard(request)
    report = detail.report
    batch_id = detail.summary.batch_id
    place = batch_place(yard, report)
    shown_ids = [e.run_id for e in report.entries] + [s.run_id for s in report.skips]
    shown_ids += [e.run_id for r in detail.restores for e in r.entries]
    form = form or RestoreForm()
    to_restore = (
        sum(1 for e in preview.entries if e.status == "pending") if preview is not None else 0
    )
    return render(
        request,
        "archives/batch.html",
        title=f"Archive batch {batch_id}",
        section="archives",
        json_href=f"/api/v1/archives/{batch_id}",
        status_code=status_code,
        batch_id=batch_id,
        detail=detail,
        summary=detail.summary,
        report=report,
        command=shlex.join(report.command),
        restores=[
            {"report": r, "command": shlex.join(r.command), "rows": _restore_rows(r)}
            for r in detail.restores
        ],
        linkable={r for r in shown_ids if not run_id_problem(r)},
        present=_present(yard.settings, detail, place),
        place=place,
        batch_folder=relative_to_yard(yard.settings, yard.settings.archive_root / batch_id),
        short_sha=short_sha,
        form=form,
        error=error,
        preview=preview,
        preview_rows=_restore_rows(preview) if preview is not None else [],
        to_restore=to_restore,
        hidden=form.hidden(),
    )


@router.get("/archives/{batch_id}", response_class=HTMLResponse)
def batch_page(request: Request, batch_id: str) -> Response:
    """One batch: its report's entries and skips, its restores, and the restore form."""
    return _batch_page(request, _batch(_yard(request).settings, batch_id))


def _restore(
    request: Request, batch_id: str, form: RestoreForm, run: bool
) -> tuple[BatchDetail, actions.RestoreOutcome | Response]:
    yard = _yard(request)
    detail = _batch(yard.settings, batch_id)
    try:
        selection: Sequence[str] = form.selection()
        command = [*_command(request), *form.flags()] if run else []
        with acting(request):
            outcome = actions.restore(yard, batch_id, selection, run=run, command=command)
    except Invalid as exc:
        page = _batch_page(request, detail, form=form, error=exc.message, status_code=422)
        return detail, page
    return detail, outcome


@router.post(
    "/archives/{batch_id}/restore/preview",
    response_class=HTMLResponse,
    dependencies=[Depends(require_ui_write)],
)
def restore_preview(request: Request, batch_id: str, form: RestoreFormDep) -> Response:
    """The restore's dry run: each chosen run restored, or a conflict (never overwritten)."""
    detail, outcome = _restore(request, batch_id, form, run=False)
    if isinstance(outcome, Response):
        return outcome
    return _batch_page(request, detail, form=form, preview=outcome.report)


@router.post(
    "/archives/{batch_id}/restore",
    response_class=HTMLResponse,
    dependencies=[Depends(require_ui_write)],
)
def restore_run(request: Request, batch_id: str, form: RestoreFormDep) -> Response:
    """Restore for real: back to where each run was; a taken place is left alone."""
    _detail, outcome = _restore(request, batch_id, form, run=True)
    if isinstance(outcome, Response):
        return outcome
    report = outcome.report
    parts = [f"restored {_plural(report.restored, 'run')}", _plural(report.conflicts, "conflict")]
    if report.failed:
        parts.append(f"{report.failed} FAILED (see the restore report)")
    not_archived = sum(1 for e in report.entries if e.status == "not_archived")
    if not_archived:
        parts.append(f"{not_archived} not archived here")
    message = f"Batch {batch_id}: " + ", ".join(parts) + "."
    return redirect(f"/ui/archives/{batch_id}", message)
