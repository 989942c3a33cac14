"""Runs side by side: what differed in their inputs (lineage, params, config) and outcomes
(KPIs).

Nested objects are flattened to dotted keys so that one row holds one leaf across all
runs, and ``differs`` marks the rows worth looking at. Each run gets a name people can
tell apart (its plan's label and a short run id); each numeric KPI row says which runs
are best and worst by ``[kpis.NAME] better`` (``runyard.kpis``), and which are highest and
lowest whatever is configured. The PSI series are read from each run's ``psi.csv``
through ``resolve_artifact``, so a link out of a run is never read.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from runyard import kpis as kpi_rules
from runyard.artifacts import resolve_artifact
from runyard.config import Settings
from runyard.errors import Invalid, RunyardError
from runyard.ids import validate_run_id
from runyard.models import FrozenModel, PlanVersion, Run
from runyard.registry.configs import get_config
from runyard.registry.plans import get_plan
from runyard.registry.runs import get_run
from runyard.registry.scenarios import scenario_names

if TYPE_CHECKING:
    from runyard.yard import Yard

MIN_RUNS = 2
MAX_RUNS = 12
MAX_PERIODS = 1000
PSI_FILE = "psi.csv"
SHORT_ID = 6  # characters of a run id in its name: the random end of a generated id
NAME_SEPARATOR = " · "


class CompareRow(FrozenModel):
    key: str = Field(description="dotted path of the leaf")
    values: list[Any] = Field(description="one per run, in the runs' order; None where missing")
    differs: bool
    numeric: bool = Field(
        default=False, description="every present value is a number (bools are not)"
    )


class KpiRow(CompareRow):
    """A summary value across the runs; for numeric rows, which runs stand out."""

    label: str = Field(description="`[kpis.NAME] label`, else the key")
    unit: str | None = Field(default=None, description="`[kpis.NAME] unit`")
    better: Literal["higher", "lower"] | None = Field(
        default=None, description="`[kpis.NAME] better`; None when not configured"
    )
    best: list[int] = Field(
        default_factory=list,
        description="positions (in `runs`) of the best value: empty unless `better` is set "
        "and at least two values differ",
    )
    worst: list[int] = Field(default_factory=list, description="positions of the worst value")
    highest: list[int] = Field(
        default_factory=list, description="positions of the highest value, whatever is better"
    )
    lowest: list[int] = Field(default_factory=list, description="positions of the lowest value")
    scale: float | None = Field(
        default=None,
        description="the largest magnitude of the row: the chart draws each value as a share of it",
    )


class RunName(FrozenModel):
    run_id: str
    name: str = Field(
        description="what the pages call the run: its plan's label (else its scenario's "
        "name, else its plan id) and the end of its run id, unique among the runs compared"
    )
    plan_label: str | None


class RunSeries(FrozenModel):
    run_id: str
    periods: list[str]
    inventory: list[float] = Field(description="summed over SKUs, per period")
    backlog: list[float] = Field(description="summed over SKUs, per period")


class RunComparison(FrozenModel):
    runs: list[Run]
    names: list[RunName] = Field(description="one per run, in the runs' order")
    lineage: list[CompareRow] = Field(
        description="plan_version_id, plan_label, scenario_id, config_version_id"
    )
    params: list[CompareRow]
    config: list[CompareRow]
    kpis: list[KpiRow]
    series: list[RunSeries] = Field(description="only runs with a readable psi.csv")
    config_names: dict[str, str] = Field(
        default_factory=dict, description="the compared config versions' names, where named"
    )


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaves of a nested object under dotted keys; lists and empty objects are leaves."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, Mapping) and item:
            for sub, leaf in flatten(item, f"{path}.").items():
                out.setdefault(sub, leaf)
        else:
            out.setdefault(path, item)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _identity(value: Any) -> str:
    # 1, 1.0 and true compare equal in Python; a changed type is a difference here,
    # as it is in `config diff`.
    return json.dumps(value, sort_keys=True, default=str) + type(value).__name__


def _row(key: str, values: list[Any]) -> CompareRow:
    present = [v for v in values if v is not None]
    return CompareRow(
        key=key,
        values=values,
        differs=len({_identity(v) for v in values}) > 1,
        numeric=bool(present) and all(_is_number(v) for v in present),
    )


def rows(per_run: Sequence[Mapping[str, Any] | None]) -> list[CompareRow]:
    """One row per dotted key found in any run, sorted by key."""
    flat = [flatten(d) if d is not None else {} for d in per_run]
    keys = sorted({k for f in flat for k in f})
    return [_row(key, [f.get(key) for f in flat]) for key in keys]


def kpi_rows(settings: Settings, summaries: Sequence[Mapping[str, Any]]) -> list[KpiRow]:
    """The summaries' rows, each with its ``[kpis]`` label, unit and direction, and for
    numeric rows the positions of the best, worst, highest and lowest values."""
    out = []
    for row in rows(summaries):
        spec = kpi_rules.kpi(settings, row.key)
        extra: dict[str, Any] = {"label": spec.label, "unit": spec.unit, "better": spec.better}
        if row.numeric:
            numbers = [float(v) if v is not None else None for v in row.values]
            best, worst = kpi_rules.best_and_worst(numbers, spec.better)
            highest, lowest = kpi_rules.best_and_worst(numbers, "higher")
            extra |= {
                "best": sorted(best),
                "worst": sorted(worst),
                "highest": sorted(highest),
                "lowest": sorted(lowest),
                "scale": max((abs(v) for v in numbers if v is not None), default=None),
            }
        out.append(KpiRow(**row.model_dump(), **extra))
    return out


def _short(run_id: str, length: int) -> str:
    """The end of a run id: ``20261121T185601.123456Z-3f9a1c`` gives ``3f9a1c``."""
    return run_id[-length:]


def run_names(
    runs: Sequence[Run], plans: Mapping[str, PlanVersion], scenarios: Mapping[str, str]
) -> list[RunName]:
    """A name per run, unique among ``runs``: ``small-base · 4f2a1c``. The short id grows
    until no two runs share a name (at worst it is the whole id)."""

    def what(run: Run) -> tuple[str, str | None]:
        plan = plans.get(run.plan_version_id or "")
        if plan is not None and plan.label:
            return plan.label, plan.label
        if run.scenario_id and run.scenario_id in scenarios:
            return scenarios[run.scenario_id], None
        return run.plan_version_id or "legacy", None

    heads = [what(r) for r in runs]

    def named(short: Callable[[str], str]) -> list[str]:
        return [
            f"{h}{NAME_SEPARATOR}{short(r.run_id)}" for (h, _), r in zip(heads, runs, strict=True)
        ]

    longest = max(len(r.run_id) for r in runs)
    for length in range(SHORT_ID, longest + 2, 2):
        names = named(lambda run_id: _short(run_id, length))  # noqa: B023 (called at once)
        if len(set(names)) == len(names):
            break
    else:  # a label ending in " · x" beside a plan named "…": the whole ids tell them apart
        names = named(str)
    return [
        RunName(run_id=r.run_id, name=name, plan_label=label)
        for r, name, (_, label) in zip(runs, names, heads, strict=True)
    ]


def _lineage(runs: Sequence[Run], plans: Mapping[str, PlanVersion]) -> list[CompareRow]:
    def label(run: Run) -> str | None:
        plan = plans.get(run.plan_version_id or "")
        return plan.label if plan else None

    return [
        _row("plan_version_id", [r.plan_version_id for r in runs]),
        _row("plan_label", [label(r) for r in runs]),
        _row("scenario_id", [r.scenario_id for r in runs]),
        _row("config_version_id", [r.config_version_id for r in runs]),
    ]


def _unique_ids(run_ids: Sequence[str]) -> list[str]:
    if isinstance(run_ids, str):
        raise Invalid("give the run ids to compare as a list, not one string")
    if len(run_ids) < MIN_RUNS or len(run_ids) > MAX_RUNS:
        raise Invalid(
            f"compare takes {MIN_RUNS} to {MAX_RUNS} run ids (got {len(run_ids)})",
            hint="pick at least two runs and at most twelve",
        )
    unique = list(dict.fromkeys(validate_run_id(r) for r in run_ids))
    if len(unique) < MIN_RUNS:
        raise Invalid(f"compare needs at least {MIN_RUNS} different runs (got {unique})")
    return unique


def compare_runs(yard: Yard, run_ids: Sequence[str]) -> RunComparison:
    """Compare 2 to 12 runs: their names, lineage, plan params, config, KPIs (read with
    the yard's ``[kpis]``) and PSI series.

    Repeated ids are compared once. Invalid for a bad list or id, NotFound for an
    unknown run.
    """
    runs = [get_run(yard, run_id) for run_id in _unique_ids(run_ids)]
    params: list[Mapping[str, Any] | None] = []
    configs: list[Mapping[str, Any] | None] = []
    with yard.read() as conn:
        plan_ids = {r.plan_version_id for r in runs if r.plan_version_id}
        plans = {pid: get_plan(conn, pid) for pid in plan_ids}
        config_ids = {r.config_version_id for r in runs if r.config_version_id}
        found = {cid: get_config(conn, cid) for cid in config_ids}
        contents = {cid: config.content for cid, config in found.items()}
        config_names = {cid: c.name for cid, c in found.items() if c.name}
        scenarios = scenario_names(conn, [r.scenario_id for r in runs if r.scenario_id])
    for run in runs:
        params.append(plans[run.plan_version_id].params if run.plan_version_id else None)
        configs.append(contents[run.config_version_id] if run.config_version_id else None)
    series = [s for s in (read_series(r) for r in runs) if s is not None]
    return RunComparison(
        runs=runs,
        names=run_names(runs, plans, scenarios),
        lineage=_lineage(runs, plans),
        params=rows(params),
        config=rows(configs),
        kpis=kpi_rows(yard.settings, [r.summary for r in runs]),
        series=series,
        config_names=config_names,
    )


def _totals(reader: Iterable[dict[str, str]]) -> dict[str, list[float]]:
    totals: dict[str, list[float]] = {}
    for row in reader:
        period = row["period"]
        if period is None:
            raise ValueError("a row without a period")
        inventory, backlog = float(row["inventory"]), float(row["backlog"])
        if not (math.isfinite(inventory) and math.isfinite(backlog)):
            raise ValueError(f"period {period!r} has a value that is not a finite number")
        sums = totals.get(period)
        if sums is None:
            if len(totals) == MAX_PERIODS:
                continue  # capped: later periods are left out, earlier ones still add up
            sums = totals[period] = [0.0, 0.0]
        sums[0] += inventory
        sums[1] += backlog
    return totals


def read_series(run: Run) -> RunSeries | None:
    """A run's inventory and backlog per period from its psi.csv; None if it has none.

    Periods keep the order they first appear in, as the PSI example writes them.
    """
    try:
        path = resolve_artifact(Path(run.path), PSI_FILE)
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not {"period", "inventory", "backlog"} <= set(reader.fieldnames or ()):
                return None
            totals = _totals(reader)
    except (RunyardError, OSError, UnicodeDecodeError, ValueError, TypeError, csv.Error):
        return None  # no file, a link out, not a PSI table: no series, not an error
    return RunSeries(
        run_id=run.run_id,
        periods=list(totals),
        inventory=[round(v[0], 6) for v in totals.values()],
        backlog=[round(v[1], 6) for v in totals.values()],
    )
