"""The aggregate job: one table of KPIs over the succeeded runs of a plan version.

This module owns the pure part (summaries in, table out) and the files it leaves
behind (``aggregate.csv`` and ``aggregate.json``); finding the runs and reading
their summaries is the caller's business.

A metric is any finite number (int or float, not bool) in a run's summary; nested
objects are flattened with ``.`` (``{"cost": {"holding": 1}}`` gives ``cost.holding``).
Strings, bools, lists, nulls and non-finite numbers are not metrics.

``aggregate.json`` is written last: its presence marks a finished aggregate, so a
second write into the same folder is refused while a crashed one may be retried.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runyard.errors import Conflict, Invalid
from runyard.fsutil import write_atomic

SCHEMA_VERSION = 1
CSV_NAME = "aggregate.csv"
JSON_NAME = "aggregate.json"
STAT_ROWS = ("mean", "min", "max", "std", "count")
_RESERVED_META_KEYS = frozenset({"schema_version", "metrics", "runs", "stats"})


@dataclass(frozen=True)
class AggregateTable:
    """Per-run KPIs and their statistics.

    Attributes:
        metrics: sorted metric names, nested keys flattened with ``.``.
        runs: ``(run_id, values)`` in the order given; every metric is a key of
            ``values``, ``None`` where that run lacks it.
        stats: per metric ``count``, ``mean``, ``min``, ``max`` and ``std`` (sample
            standard deviation; ``None`` below two values or when it overflows a float).
    """

    metrics: list[str]
    runs: list[tuple[str, dict[str, float | None]]]
    stats: dict[str, dict[str, float | int | None]]


def _as_metric(value: Any) -> float | None:
    """The value as a float when it is a finite int or float (bools are not), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None


def _flatten(summary: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{name}.")
            continue
        number = _as_metric(value)
        if number is not None:
            yield name, number


def _metrics_of(run_id: str, summary: Mapping[str, Any]) -> dict[str, float]:
    if not isinstance(summary, Mapping):
        raise Invalid(f"the summary of run {run_id} is not a JSON object")
    found: dict[str, float] = {}
    for name, number in _flatten(summary):
        if name in found:
            raise Invalid(
                f"the summary of run {run_id} names metric {name!r} twice "
                "(once as a dotted key, once nested)"
            )
        found[name] = number
    return found


def _stats_of(values: list[float]) -> dict[str, float | int | None]:
    std: float | None = None
    if len(values) >= 2:
        try:
            std = statistics.stdev(values)
        except OverflowError:
            std = None
    return {
        "count": len(values),
        # statistics.mean sums exactly, so it neither overflows nor leaves [min, max].
        "mean": statistics.mean(values),
        "min": min(values),
        "max": max(values),
        "std": std,
    }


def aggregate_summaries(summaries: Sequence[tuple[str, Mapping[str, Any]]]) -> AggregateTable:
    """Build the table of per-run KPIs and their statistics.

    Args:
        summaries: ``(run_id, summary)`` per succeeded run, in the order the table keeps.

    Raises:
        Invalid: no runs, a run listed twice, a summary that is not an object, or no
            numeric KPI in any summary.
    """
    if not summaries:
        raise Invalid("no succeeded runs to aggregate")
    per_run: list[tuple[str, dict[str, float]]] = []
    seen: set[str] = set()
    for run_id, summary in summaries:
        if run_id in seen:
            raise Invalid(f"run {run_id} is listed twice")
        seen.add(run_id)
        per_run.append((run_id, _metrics_of(run_id, summary)))
    metrics = sorted({name for _, found in per_run for name in found})
    if not metrics:
        raise Invalid("the runs' summaries hold no numeric KPIs to aggregate")
    runs = [(run_id, {m: found.get(m) for m in metrics}) for run_id, found in per_run]
    stats = {m: _stats_of([found[m] for _, found in per_run if m in found]) for m in metrics}
    return AggregateTable(metrics=metrics, runs=runs, stats=stats)


def _cell(value: float | int | None) -> str:
    if value is None:
        return ""
    return repr(value)  # repr(float) round-trips exactly through float()


def _csv_bytes(table: AggregateTable) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["run_id", *table.metrics])
    for run_id, values in table.runs:
        writer.writerow([run_id, *(_cell(values[m]) for m in table.metrics)])
    for stat in STAT_ROWS:
        writer.writerow([stat, *(_cell(table.stats[m][stat]) for m in table.metrics)])
    return out.getvalue().encode("utf-8")


def _json_bytes(table: AggregateTable, meta: Mapping[str, Any]) -> bytes:
    document = {
        "schema_version": SCHEMA_VERSION,
        **meta,
        "metrics": table.metrics,
        "runs": [{"run_id": run_id, "values": values} for run_id, values in table.runs],
        "stats": table.stats,
    }
    text = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def write_aggregate(
    folder: Path, table: AggregateTable, meta: Mapping[str, Any]
) -> tuple[Path, Path]:
    """Write ``aggregate.csv`` and then ``aggregate.json`` into ``folder``, creating it.

    Args:
        meta: JSON-ready facts about the job (plan_version_id, job_id, created_at …),
            placed in the JSON after ``schema_version`` and before the table.

    Returns:
        ``(csv_path, json_path)``.

    Raises:
        Conflict: ``folder`` already holds an ``aggregate.json``.
        Invalid: ``meta`` uses a key the document reserves for itself.
    """
    clash = sorted(_RESERVED_META_KEYS & set(meta))
    if clash:
        raise Invalid(f"meta may not set {', '.join(clash)}: the aggregate document owns them")
    csv_path = folder / CSV_NAME
    json_path = folder / JSON_NAME
    if json_path.exists():
        raise Conflict(f"an aggregate already exists in {folder}")
    json_data = _json_bytes(table, meta)  # fail on unserialisable meta before writing
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(csv_path, _csv_bytes(table))
    write_atomic(json_path, json_data)
    return csv_path, json_path
