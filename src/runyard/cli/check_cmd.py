"""``runyard check``: list every mismatch between the registry and the disk.

Prints everything found, then exits 6 (``check_failed``) when there was anything;
with ``--json`` the document on stdout holds the mismatches and the error goes to
stderr, so a script gets both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from runyard.cli.common import JsonOption, yard_from
from runyard.cli.lazy import lazy
from runyard.cli.output import console, handles_errors, print_json, report_error, table
from runyard.cli.server import client_from
from runyard.errors import CheckFailed

if TYPE_CHECKING:
    from runyard.durability import check as _check_durability
else:
    _check_durability = lazy("runyard.durability.check")


def register(app: typer.Typer) -> None:
    app.command("check")(check)


@handles_errors
def check(
    ctx: typer.Context,
    deep: Annotated[
        bool,
        typer.Option(
            "--deep", help="Read every run object in an archive store back and re-hash it."
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Compare the registry with the runs and archive folders; exit 6 on any mismatch."""
    client = client_from(ctx)
    if client is not None:
        answer = client.get("check", **({"deep": "true"} if deep else {}))
        report = _check_durability.CheckReport(
            mismatches=[_mismatch(m) for m in answer["mismatches"]],
            counts=answer["counts"],
            runs_checked=answer["runs_checked"],
            folders_seen=answer["folders_seen"],
            objects_seen=answer.get("objects_seen", 0),
        )
        document = answer
        for m in document["mismatches"]:
            if m.get("path_b64") is None:
                m.pop("path_b64", None)
    else:
        with yard_from(ctx) as yard:
            report = _check_durability.check_yard(yard, deep=deep)
        document = report.to_dict()
    if json_output:
        print_json(document)
    else:
        _print(report)
    if not report.ok:
        # The report is out already: the error goes to stderr, also with --json.
        report_error(_failure(report), json_mode=False)
        raise typer.Exit(CheckFailed.exit_code)


def _mismatch(found: dict[str, Any]) -> _check_durability.Mismatch:
    """A server's mismatch (display forms) as the report's record."""
    return _check_durability.Mismatch(
        kind=found["kind"], run_id=found["run_id"], path=found["path"], detail=found["detail"]
    )


def _summary(report: _check_durability.CheckReport) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in report.counts.items() if n)


def _print(report: _check_durability.CheckReport) -> None:
    out = console()
    seen = f"{report.runs_checked} runs, {report.folders_seen} folders"
    if report.objects_seen:
        seen += f", {report.objects_seen} objects in archive stores"
    if report.ok:
        out.print(f"Registry and disk agree: {seen}.")
        return
    out.print(
        table(
            None,
            ["kind", "run_id", "path", "detail"],
            [(Text(m.kind, style="red"), m.run_id, m.path, m.detail) for m in report.mismatches],
        )
    )
    out.print(f"{len(report.mismatches)} mismatches ({_summary(report)}) in {seen}.")


def _failure(report: _check_durability.CheckReport) -> CheckFailed:
    hint = "each row says what disagrees; docs/cli.md (runyard check) says what to do"
    if report.counts["leftover"] or report.counts["incomplete_report"]:
        hint = "run `runyard recover` first, then check again; " + hint
    if report.counts.get("store_unavailable"):
        hint = "an archive store could not be read: its runs were not checked; " + hint
    return CheckFailed(
        f"the registry and the disk disagree: {len(report.mismatches)} mismatches "
        f"({_summary(report)})",
        hint=hint,
    )
