"""runyard.compare: params, config and KPIs side by side; PSI series from psi.csv."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import runyard
from runyard.compare import MAX_PERIODS, compare_runs, flatten
from runyard.errors import Invalid, NotFound
from tests.conftest import Cli


def _run(cli: Cli, plan: str, summary: dict[str, Any], run_id: str) -> str:
    cli.ok("run", "start", "--plan", plan, "--run-id", run_id)
    cli.ok("run", "finish", run_id, "--status", "succeeded", "--summary", json.dumps(summary))
    return run_id


def _psi(folder: Path, rows: list[tuple[str, str, float, float]]) -> None:
    lines = ["sku,period,demand,production,arrivals,sales,inventory,backlog"]
    lines += [f"{sku},{period},1,1,1,1,{inv},{back}" for sku, period, inv, back in rows]
    (folder / "psi.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def three(cli: Cli, lineage: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    """Runs a and b of the lineage plan, c of a plan with other params and config."""
    cfg = tmp_path / "config2.json"
    cfg.write_text(json.dumps({"safety_stock_periods": 3, "lot_size": 10, "extra": {"x": 1}}))
    config2 = cli.ok("config", "add", str(cfg))["config_version_id"]
    plan2 = cli.ok(
        "plan",
        "create",
        "--scenario",
        lineage["scenario_id"],
        "--config",
        config2,
        "--param",
        "horizon=26",
        "--param",
        'solver={"gap": 0.1}',
    )["plan_version_id"]
    base = lineage["plan_version_id"]
    a = _run(cli, base, {"fill_rate": 0.9, "cost": {"total": 100}, "met": True}, "a")
    b = _run(cli, base, {"fill_rate": 0.9, "cost": {"total": 120}, "met": False}, "b")
    c = _run(cli, plan2, {"fill_rate": 0.95, "note": "hi", "cost": {"total": 90}}, "c")
    return {"ids": [a, b, c], "runs": cli.yard_path / "runs"}


def compare_runs_of(yard_path: Path, ids: list[str]) -> Any:
    with runyard.open_yard(yard_path) as yard:
        return compare_runs(yard, ids)


def _rows(rows: list[Any]) -> dict[str, Any]:
    return {r.key: r for r in rows}


def test_params_config_and_kpis_side_by_side(yard_path, three):
    out = compare_runs_of(yard_path, three["ids"])
    assert [r.run_id for r in out.runs] == ["a", "b", "c"]
    params = _rows(out.params)
    assert list(params) == ["horizon", "solver.gap"]
    assert params["horizon"].values == [52, 52, 26] and params["horizon"].differs
    assert params["solver.gap"].values == [None, None, 0.1]
    config = _rows(out.config)
    assert list(config) == sorted(config)
    assert config["lot_size"].values == [10, 10, 10] and not config["lot_size"].differs
    assert config["safety_stock_periods"].differs
    assert config["extra.x"].values == [None, None, 1]
    kpis = _rows(out.kpis)
    assert kpis["fill_rate"].numeric and kpis["fill_rate"].differs
    assert kpis["cost.total"].values == [100, 120, 90] and kpis["cost.total"].numeric
    assert not kpis["met"].numeric and kpis["met"].values == [True, False, None]
    assert not kpis["note"].numeric and kpis["note"].values == [None, None, "hi"]
    two = compare_runs_of(yard_path, ["a", "b"])
    assert not _rows(two.params)["horizon"].differs
    assert not _rows(two.kpis)["fill_rate"].differs


def test_series_sum_skus_per_period_in_file_order(yard_path, three):
    runs = three["runs"]
    _psi(
        runs / "a",
        [
            ("A", "2026-02", 5, 0),
            ("A", "2026-01", 2.5, 1),
            ("B", "2026-02", 1, 2),
            ("B", "2026-01", 1, 0),
        ],
    )
    _psi(runs / "b", [("A", "w1", 1, 0)])
    (runs / "c" / "psi.csv").write_text("not,a,psi\n1,2,3\n")
    out = compare_runs_of(yard_path, ["a", "b", "c"])
    series = {s.run_id: s for s in out.series}
    assert set(series) == {"a", "b"}  # c's file is not a PSI table: no series, no error
    assert series["a"].periods == ["2026-02", "2026-01"]
    assert series["a"].inventory == [6.0, 3.5] and series["a"].backlog == [2.0, 1.0]
    assert series["b"].periods == ["w1"]


def test_runs_without_a_usable_psi_csv_have_no_series(yard_path, three, tmp_path):
    runs = three["runs"]
    _psi(runs / "a", [("A", "p1", 1, 0), ("A", "p2", float("nan"), 0)])
    outside = tmp_path / "elsewhere.csv"
    _psi(tmp_path, [("A", "p1", 1, 0)])
    os.rename(tmp_path / "psi.csv", outside)
    os.symlink(outside, runs / "b" / "psi.csv")  # a link out of the run is not read
    assert compare_runs_of(yard_path, ["a", "b", "c"]).series == []


def test_periods_are_capped(yard_path, three):
    rows = [("A", f"p{i}", 1, 0) for i in range(MAX_PERIODS + 5)] + [("B", "p0", 2, 0)]
    _psi(three["runs"] / "a", rows)
    (series,) = compare_runs_of(yard_path, ["a", "b"]).series
    assert len(series.periods) == MAX_PERIODS and series.inventory[0] == 3.0


def test_repeated_ids_count_once(yard_path, three):
    out = compare_runs_of(yard_path, ["a", "b", "a"])
    assert [r.run_id for r in out.runs] == ["a", "b"]
    with pytest.raises(Invalid, match="at least 2 different runs"):
        compare_runs_of(yard_path, ["a", "a"])


@pytest.mark.parametrize(
    ("ids", "error", "words"),
    [
        ([], Invalid, "2 to 12"),
        (["a"], Invalid, "2 to 12"),
        (["a"] * 13, Invalid, "2 to 12"),
        ("ab", Invalid, "a list"),
        (["a", "../etc"], Invalid, "invalid run id"),
        (["a", "nope"], NotFound, "no run 'nope'"),
    ],
)
def test_refusals(yard_path, three, ids, error, words):
    with pytest.raises(error) as err:
        compare_runs_of(yard_path, ids)
    assert words in err.value.message


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}, "f": None}) == {
        "a.b": 1,
        "a.c.d": [1, 2],
        "e": {},
        "f": None,
    }
