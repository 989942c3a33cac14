"""runyard.jobs.aggregate: per-run KPIs and their statistics, and the files they land in."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runyard.errors import Conflict, Invalid
from runyard.jobs.aggregate import AggregateTable, aggregate_summaries, write_aggregate

THREE_RUNS: list[tuple[str, dict[str, Any]]] = [
    ("r1", {"fill_rate": 0.5, "stockout_periods": 4, "total_cost": 100.0}),
    ("r2", {"fill_rate": 0.75, "stockout_periods": 2, "total_cost": 200.0}),
    ("r3", {"fill_rate": 1.0, "stockout_periods": 6, "total_cost": 600.0}),
]


def _table() -> AggregateTable:
    return aggregate_summaries(
        [
            ("r1", {"fill_rate": 0.93, "cost": {"holding": 10.0, "backorder": 3.0}, "n": 7}),
            ("r2", {"fill_rate": 0.1 + 0.2, "cost": {"holding": 12.5}, "note": "text"}),
            ("r3", {"fill_rate": 1 / 3, "cost": {"holding": -1e-17, "backorder": 4.0}}),
        ]
    )


# --- aggregate_summaries ---------------------------------------------------------------


def test_stats_on_three_runs_are_exact() -> None:
    table = aggregate_summaries(THREE_RUNS)

    assert table.metrics == ["fill_rate", "stockout_periods", "total_cost"]
    assert [run_id for run_id, _ in table.runs] == ["r1", "r2", "r3"]
    assert table.runs[1] == (
        "r2",
        {"fill_rate": 0.75, "stockout_periods": 2.0, "total_cost": 200.0},
    )
    # fill_rate: mean 0.75, deviations ±0.25 → variance 0.125/2 = 0.0625 → std 0.25
    assert table.stats["fill_rate"] == {
        "count": 3,
        "mean": 0.75,
        "min": 0.5,
        "max": 1.0,
        "std": 0.25,
    }
    # stockout_periods: mean 4, deviations 0, -2, 2 → variance 8/2 = 4 → std 2
    assert table.stats["stockout_periods"] == {
        "count": 3,
        "mean": 4.0,
        "min": 2.0,
        "max": 6.0,
        "std": 2.0,
    }
    # total_cost: mean 300, deviations -200, -100, 300 → variance 140000/2 → std √70000
    assert table.stats["total_cost"]["mean"] == 300.0
    assert table.stats["total_cost"]["std"] == math.sqrt(70000)


def test_a_metric_missing_from_one_run_is_none_there_and_counts_two() -> None:
    table = aggregate_summaries(
        [("a", {"x": 1.0, "y": 5}), ("b", {"x": 3.0}), ("c", {"x": 5.0, "y": 9})]
    )

    assert dict(table.runs)["b"] == {"x": 3.0, "y": None}
    assert table.stats["y"] == {"count": 2, "mean": 7.0, "min": 5.0, "max": 9.0, "std": 8**0.5}
    assert table.stats["x"]["count"] == 3


def test_one_value_has_no_std() -> None:
    table = aggregate_summaries([("a", {"x": 2.0, "y": 1}), ("b", {"x": 4.0})])

    assert table.stats["y"] == {"count": 1, "mean": 1.0, "min": 1.0, "max": 1.0, "std": None}


def test_nested_objects_are_flattened_with_dots() -> None:
    table = aggregate_summaries(
        [("a", {"cost": {"holding": 10.0, "backorder": 3.0, "deep": {"x": 1}}, "empty": {}})]
    )

    assert table.metrics == ["cost.backorder", "cost.deep.x", "cost.holding"]
    assert table.runs == [("a", {"cost.backorder": 3.0, "cost.deep.x": 1.0, "cost.holding": 10.0})]


def test_a_dotted_key_that_clashes_with_a_nested_one_is_invalid() -> None:
    with pytest.raises(Invalid, match=r"'cost\.holding' twice"):
        aggregate_summaries([("a", {"cost.holding": 1.0, "cost": {"holding": 2.0}})])


def test_bools_strings_lists_nulls_and_non_finite_numbers_are_not_metrics() -> None:
    summary = {
        "fill_rate": 0.93,
        "service_target_met": True,
        "flag": False,
        "note": "text",
        "numeric_text": "12",
        "series": [1, 2, 3],
        "missing": None,
        "nan": math.nan,
        "inf": -math.inf,
        "huge": 10**400,
        "cost": {"ok": False},
    }
    table = aggregate_summaries([("a", summary)])

    assert table.metrics == ["fill_rate"]


def test_no_runs_is_invalid() -> None:
    with pytest.raises(Invalid) as caught:
        aggregate_summaries([])
    assert caught.value.message == "no succeeded runs to aggregate"


def test_summaries_without_numbers_are_invalid() -> None:
    with pytest.raises(Invalid) as caught:
        aggregate_summaries([("a", {"note": "x", "ok": True}), ("b", {})])
    assert caught.value.message == "the runs' summaries hold no numeric KPIs to aggregate"


def test_a_run_listed_twice_is_invalid() -> None:
    with pytest.raises(Invalid, match="r1 is listed twice"):
        aggregate_summaries([THREE_RUNS[0], THREE_RUNS[0]])


def test_a_summary_that_is_not_an_object_is_invalid() -> None:
    with pytest.raises(Invalid, match="not a JSON object"):
        aggregate_summaries([("a", [1, 2])])  # type: ignore[list-item]


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1))
def test_mean_lies_between_min_and_max_and_std_is_the_sample_stdev(xs: list[float]) -> None:
    table = aggregate_summaries([(f"r{i}", {"x": x}) for i, x in enumerate(xs)])
    stats = table.stats["x"]

    assert stats["count"] == len(xs)
    assert stats["min"] == min(xs)
    assert stats["max"] == max(xs)
    assert min(xs) <= stats["mean"] <= max(xs)  # type: ignore[operator]
    if len(xs) < 2:
        assert stats["std"] is None
        return
    try:
        expected = statistics.stdev(xs)
    except OverflowError:  # the spread of values near ±1.8e308 is no float
        assert stats["std"] is None
        return
    assert stats["std"] == expected
    assert stats["std"] >= 0


# --- write_aggregate -------------------------------------------------------------------


def test_csv_round_trips_every_value(tmp_path: Path) -> None:
    table = _table()
    csv_path, _ = write_aggregate(tmp_path / "out" / "agg", table, {"job_id": "j1"})

    assert csv_path == tmp_path / "out" / "agg" / "aggregate.csv"
    with csv_path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["run_id", "cost.backorder", "cost.holding", "fill_rate", "n"]
    assert [row[0] for row in rows[1:]] == ["r1", "r2", "r3", "mean", "min", "max", "std", "count"]
    metrics = rows[0][1:]
    for (run_id, values), row in zip(table.runs, rows[1:4], strict=True):
        assert row[0] == run_id
        for metric, cell in zip(metrics, row[1:], strict=True):
            expected = values[metric]
            assert (cell == "") if expected is None else (float(cell) == expected)
    assert rows[2][1] == ""  # r2 has no cost.backorder
    for row in rows[4:]:
        for metric, cell in zip(metrics, row[1:], strict=True):
            expected_stat = table.stats[metric][row[0]]
            assert (cell == "") if expected_stat is None else (float(cell) == expected_stat)
    assert rows[-1][1:] == ["2", "3", "3", "1"]  # counts are written as integers
    assert rows[7][4] == ""  # n has one value, so no std


def test_json_holds_meta_table_and_stats(tmp_path: Path) -> None:
    table = _table()
    meta = {"plan_version_id": "pv-1", "job_id": "j1", "created_at": "2024-05-01T12:00:00+00:00"}
    _, json_path = write_aggregate(tmp_path, table, meta)

    text = json_path.read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert text.startswith('{\n  "schema_version": 1,\n')
    document = json.loads(text)
    assert list(document) == [
        "schema_version",
        "plan_version_id",
        "job_id",
        "created_at",
        "metrics",
        "runs",
        "stats",
    ]
    assert document["plan_version_id"] == "pv-1"
    assert document["metrics"] == table.metrics
    assert document["runs"][1] == {
        "run_id": "r2",
        "values": {"cost.backorder": None, "cost.holding": 12.5, "fill_rate": 0.1 + 0.2, "n": None},
    }
    assert document["runs"][2]["values"]["cost.holding"] == -1e-17  # full precision kept
    assert document["stats"] == table.stats
    assert document["stats"]["n"] == {"count": 1, "mean": 7.0, "min": 7.0, "max": 7.0, "std": None}


def test_writing_twice_into_one_folder_is_a_conflict(tmp_path: Path) -> None:
    table = _table()
    write_aggregate(tmp_path, table, {"job_id": "j1"})
    before = (tmp_path / "aggregate.json").read_bytes()

    with pytest.raises(Conflict):
        write_aggregate(tmp_path, aggregate_summaries(THREE_RUNS), {"job_id": "j2"})
    assert (tmp_path / "aggregate.json").read_bytes() == before


def test_a_leftover_csv_without_json_is_overwritten(tmp_path: Path) -> None:
    (tmp_path / "aggregate.csv").write_text("half,written\n", encoding="utf-8")

    csv_path, _ = write_aggregate(tmp_path, _table(), {})

    assert csv_path.read_text(encoding="utf-8").startswith("run_id,")


def test_meta_may_not_overwrite_the_documents_own_keys(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="schema_version"):
        write_aggregate(tmp_path, _table(), {"schema_version": 2})
    assert not (tmp_path / "aggregate.csv").exists()
