"""Runs side by side: what differed in their inputs (params, config) and outcomes (KPIs).

Nested objects are flattened to dotted keys so that one row holds one leaf across all
runs, and ``differs`` marks the rows worth looking at. The PSI series are read from each
run's ``psi.csv`` through ``resolve_artifact``, so a link out of a run is never read.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from runyard.artifacts import resolve_artifact
from runyard.errors import Invalid, RunyardError
from runyard.ids import validate_run_id
from runyard.models import FrozenModel, Run
from runyard.registry.configs import get_config
from runyard.registry.plans import get_plan
from runyard.registry.runs import get_run

if TYPE_CHECKING:
    from runyard.yard import Yard

MIN_RUNS = 2
MAX_RUNS = 12
MAX_PERIODS = 1000
PSI_FILE = "psi.csv"


class CompareRow(FrozenModel):
    key: str = Field(description="dotted path of the leaf")
    values: list[Any] = Field(description="one per run, in the runs' order; None where missing")
    differs: bool
    numeric: bool = Field(
        default=False, description="every present value is a number (bools are not)"
    )


class RunSeries(FrozenModel):
    run_id: str
    periods: list[str]
    inventory: list[float] = Field(description="summed over SKUs, per period")
    backlog: list[float] = Field(description="summed over SKUs, per period")


class RunComparison(FrozenModel):
    runs: list[Run]
    params: list[CompareRow]
    config: list[CompareRow]
    kpis: list[CompareRow]
    series: list[RunSeries] = Field(description="only runs with a readable psi.csv")


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


def rows(per_run: Sequence[Mapping[str, Any] | None]) -> list[CompareRow]:
    """One row per dotted key found in any run, sorted by key."""
    flat = [flatten(d) if d is not None else {} for d in per_run]
    keys = sorted({k for f in flat for k in f})
    out = []
    for key in keys:
        values = [f.get(key) for f in flat]
        present = [v for v in values if v is not None]
        out.append(
            CompareRow(
                key=key,
                values=values,
                differs=len({_identity(v) for v in values}) > 1,
                numeric=bool(present) and all(_is_number(v) for v in present),
            )
        )
    return out


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
    """Compare 2 to 12 runs: their plan params, config, KPIs and PSI series.

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
        contents = {cid: get_config(conn, cid).content for cid in config_ids}
    for run in runs:
        params.append(plans[run.plan_version_id].params if run.plan_version_id else None)
        configs.append(contents[run.config_version_id] if run.config_version_id else None)
    series = [s for s in (read_series(r) for r in runs) if s is not None]
    return RunComparison(
        runs=runs,
        params=rows(params),
        config=rows(configs),
        kpis=rows([r.summary for r in runs]),
        series=series,
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
