"""``runyard demo``: build a planning yard from the PSI example, then say how to browse it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from runyard.cli.common import JsonOption
from runyard.cli.output import console, err_console, handles_errors, key_values, print_json, table

if TYPE_CHECKING:
    from runyard.demo import DemoResult

# runyard.demo's own default (a test checks they agree); the demo and the NumPy of its
# simulation are imported only when the command runs, not on every `runyard` call.
DEFAULT_PATH = "demo-yard"


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


@handles_errors
def demo(
    path: Annotated[
        str,
        typer.Argument(help="Folder of the demo yard: new or empty (never touched otherwise)."),
    ] = DEFAULT_PATH,
    json_output: JsonOption = False,
) -> None:
    """Build a demo planning yard: scenarios, configs, plans, PSI runs by a worker, an
    aggregate and an archive dry run; then show the KPIs and how to browse it."""
    from runyard.demo import build_demo

    with err_console().status("Starting the demo…") as status:
        result = build_demo(path, progress=status.update)
    if json_output:
        print_json(result)
    else:
        _print(result)


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _print(result: DemoResult) -> None:
    out = console()
    out.print(
        Text(
            f"Built a demo yard at {result.yard_path} in {result.seconds['total']:.1f} s",
            style="bold green",
        )
    )
    out.print(
        table(
            "Plans",
            [
                "label",
                "plan_version_id",
                "scenario",
                "config",
                "runs",
                "mean fill rate",
                "mean total cost",
            ],
            [
                (
                    p.label,
                    p.plan_version_id,
                    p.scenario,
                    p.config_name,
                    ", ".join(f"{n} {s}" for s, n in p.runs_by_status.items()) or "0",
                    _number(p.mean_fill_rate, 4),
                    _number(p.mean_total_cost, 2),
                )
                for p in result.plans
            ],
        )
    )
    dry = result.archive_dry_run
    kept = ", ".join(f"{code} {n}" for code, n in dry.skip_reasons.items())
    aggregate = result.aggregate
    out.print(
        key_values(
            "",
            [
                (
                    "scenarios",
                    ", ".join(
                        f"{s.name} ({s.skus:,} SKUs × {s.periods} periods)"
                        for s in result.scenarios
                    ),
                ),
                ("configs", ", ".join(c.name for c in result.configs)),
                ("jobs", ", ".join(f"{n} {s}" for s, n in result.jobs_by_status.items())),
                ("yard", result.yard_path),
                (
                    "aggregate",
                    f"{aggregate.path} ({aggregate.runs} runs of {aggregate.label})"
                    if aggregate
                    else "-",
                ),
                ("archive dry run", dry.report_path),
                (
                    "",
                    f"{dry.candidates} candidates, {dry.to_archive} would be archived, "
                    f"{dry.skipped} kept" + (f" ({kept})" if kept else ""),
                ),
            ],
        )
    )
    for note in result.notes:
        out.print(Text(f"Note: {note}", style="yellow"))
    out.print(Text("How to browse:", style="bold"))
    for command in result.browse:
        out.print(Text(f"  {command}"))
    out.print(Text("  then open http://127.0.0.1:8765/ui in a browser", style="dim"))
