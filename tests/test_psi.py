"""The PSI example runner: input validation, the simulation's equations, KPIs, outputs."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runyard.errors import Invalid, NotFound
from runyard.examples.psi import (
    PsiResult,
    example_path,
    generate_large,
    kpis,
    load_policy,
    load_scenario,
    run,
    simulate,
    write_outputs,
)
from runyard.examples.psi.generate import large_json_bytes
from runyard.examples.psi.outputs import CSV_COLUMNS

QUANTITIES = ("demand", "production", "arrivals", "sales", "inventory", "backlog")
CONFIGS = ("config-base.json", "config-lean.json", "config-safe.json")


def small_data() -> dict[str, Any]:
    return {
        "skus": ["A", "B"],
        "periods": ["t1", "t2", "t3"],
        "demand": {"A": [1, 2, 3], "B": [0, 0, 4]},
        "initial_inventory": {"A": 5, "B": 0},
        "capacity": {"A": 10, "B": 10},
        "lead_time": 1,
    }


@dataclass(frozen=True)
class Context:
    run_dir: Path
    config: Mapping[str, Any] = field(default_factory=dict)
    scenario_data: Mapping[str, Any] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


# --- random scenarios ----------------------------------------------------------------
# Demand, stock and capacity are whole numbers and lot sizes are integers, so every
# quantity the simulation computes is a whole number well below 2**53: float64 holds
# them exactly and the balance equations can be checked with ``==``, not a tolerance.


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    n_skus = draw(st.integers(1, 5))
    n_periods = draw(st.integers(1, 20))
    skus = [f"S{i}" for i in range(n_skus)]
    quantity = st.integers(0, 60)

    def per_sku(values: st.SearchStrategy[int]) -> dict[str, int]:
        return {sku: draw(values) for sku in skus}

    lead_time: int | dict[str, int] = (
        per_sku(st.integers(0, 4)) if draw(st.booleans()) else draw(st.integers(0, 4))
    )
    return {
        "skus": skus,
        "periods": [f"p{t}" for t in range(n_periods)],
        "demand": {
            sku: draw(st.lists(quantity, min_size=n_periods, max_size=n_periods)) for sku in skus
        },
        "initial_inventory": per_sku(st.integers(0, 100)),
        "capacity": per_sku(st.one_of(st.just(0), st.integers(0, 80))),
        "lead_time": lead_time,
    }


policies = st.fixed_dictionaries(
    {
        "safety_stock_periods": st.sampled_from([0, 0.5, 1, 1.5, 2, 3]),
        "lot_size": st.integers(1, 25),
    }
)


@given(data=scenarios(), config=policies)
@settings(max_examples=300, deadline=None)
def test_simulation_keeps_the_psi_equations(data: dict[str, Any], config: dict[str, Any]) -> None:
    scenario = load_scenario(data)
    policy = load_policy(config)
    r = simulate(scenario, policy)
    demand, initial, capacity, lead = scenario.arrays()
    n_skus, n_periods = demand.shape
    for q in QUANTITIES:
        assert getattr(r, q).shape == (n_skus, n_periods)
    assert np.array_equal(r.demand, demand)

    inventory_in = np.column_stack([initial, r.inventory[:, :-1]])
    backlog_in = np.column_stack([np.zeros(n_skus), r.backlog[:, :-1]])
    # the balance equations, exactly
    assert np.array_equal(r.inventory, inventory_in + r.arrivals - r.sales)
    assert np.array_equal(r.backlog, backlog_in + r.demand - r.sales)
    assert (r.inventory >= 0).all() and (r.backlog >= 0).all()
    # nobody waits while stock sits on the shelf
    assert not ((r.inventory > 0) & (r.backlog > 0)).any()
    # sales: never more than wanted, never more than available
    assert (r.sales <= r.demand + backlog_in).all()
    assert (r.sales <= inventory_in + r.arrivals).all()
    # production: within capacity, in whole lots
    assert (r.production <= capacity[:, None]).all()
    assert np.array_equal(r.production % policy.lot_size, np.zeros_like(r.production))
    # arrivals are production shifted by each SKU's lead time
    for i in range(n_skus):
        shift = int(lead[i])
        expected = np.zeros(n_periods)
        if shift < n_periods:
            expected[shift:] = r.production[i, : n_periods - shift]
        assert np.array_equal(r.arrivals[i], expected), (i, shift)


@given(data=scenarios(), config=policies, horizon=st.integers(1, 25))
@settings(max_examples=100, deadline=None)
def test_a_horizon_simulates_the_first_periods_of_the_full_run(
    data: dict[str, Any], config: dict[str, Any], horizon: int
) -> None:
    scenario = load_scenario(data)
    policy = load_policy(config)
    full = simulate(scenario, policy)
    short = simulate(scenario, policy, horizon=horizon)
    n = min(horizon, len(scenario.periods))
    for q in QUANTITIES:
        assert np.array_equal(getattr(short, q), getattr(full, q)[:, :n]), q


def test_simulation_is_deterministic() -> None:
    scenario = load_scenario(json.loads(example_path("large.json").read_text()))
    policy = load_policy(json.loads(example_path("config-base.json").read_text()))
    a, b = simulate(scenario, policy), simulate(scenario, policy)
    for q in QUANTITIES:
        assert np.array_equal(getattr(a, q), getattr(b, q)), q
    assert kpis(a, policy) == kpis(b, policy)


# --- KPIs worked out by hand ---------------------------------------------------------
#
# Policy: safety_stock_periods 0.5, lot_size 5; costs holding 1, backorder 5, production 0.5.
#
# SKU A: demand 4 4 4 4, initial 3, capacity 10, lead time 1. Average demand 4, so the
# order-up-to level is 4 × (1 + 1 + 0.5) = 10; whole lots that fit the capacity: 10.
#   t  position = stock + on order − backlog   start   arrive  sold          stock  backlog
#   1  3 + 0 − 0 = 3   short 7 → 2 lots        10      0       min(4, 3)=3   0      1
#   2  0 + 10 − 1 = 9  short 1 → 1 lot          5      10      min(5, 10)=5  5      0
#   3  5 + 5 − 0 = 10  short 0                  0      5       4             6      0
#   4  6 + 0 − 0 = 6   short 4 → 1 lot          5      0       4             2      0
#   On time (sold minus backlog carried in): 3, 5 − 1 = 4, 4, 4 = 15 of 16.
#
# SKU B: demand 2 0 2 0, initial 0, capacity 1, lead time 0. The capacity holds no whole
# lot of 5, so B never produces: nothing sold, backlog 2 2 4 4, on time 0 of 4.
#
# Fill rate 15 / 20 = 0.75, below the 0.95 target. Periods ending with backlog > 0:
# 1 (A) + 4 (B) = 5 (B's 2nd and 4th periods count although they had no demand).
# Inventory per period (A + B): 0 5 6 2, average 13 / 4 = 3.25; turns 16 / 3.25 = 4.923.
# Cost: holding 1 × 13 = 13, backorder 5 × (1 + 12) = 65, production 0.5 × 20 = 10; 88.

TINY = {
    "skus": ["A", "B"],
    "periods": ["w1", "w2", "w3", "w4"],
    "demand": {"A": [4, 4, 4, 4], "B": [2, 0, 2, 0]},
    "initial_inventory": {"A": 3, "B": 0},
    "capacity": {"A": 10, "B": 1},
    "lead_time": {"A": 1, "B": 0},
}
TINY_POLICY = {
    "safety_stock_periods": 0.5,
    "lot_size": 5,
    "holding_cost": 1,
    "backorder_cost": 5,
    "production_cost": 0.5,
}


def test_tiny_case_matches_the_hand_computation() -> None:
    policy = load_policy(TINY_POLICY)
    r = simulate(load_scenario(TINY), policy)
    assert r.production.tolist() == [[10, 5, 0, 5], [0, 0, 0, 0]]
    assert r.arrivals.tolist() == [[0, 10, 5, 0], [0, 0, 0, 0]]
    assert r.sales.tolist() == [[3, 5, 4, 4], [0, 0, 0, 0]]
    assert r.inventory.tolist() == [[0, 5, 6, 2], [0, 0, 0, 0]]
    assert r.backlog.tolist() == [[1, 0, 0, 0], [2, 2, 4, 4]]

    summary = kpis(r, policy)
    assert summary["skus"] == 2 and summary["periods"] == 4
    assert summary["fill_rate"] == 0.75
    assert summary["service_target"] == 0.95
    assert summary["service_target_met"] is False
    assert summary["stockout_periods"] == 5
    assert summary["average_inventory"] == 3.25
    assert summary["inventory_turns"] == 4.923
    assert summary["cost"] == {"holding": 13.0, "backorder": 65.0, "production": 10.0}
    assert summary["total_cost"] == 88.0
    assert summary["total_demand"] == 20 and summary["total_sales"] == 16
    assert summary["total_production"] == 20
    assert summary["ending_inventory"] == 2 and summary["ending_backlog"] == 4
    json.dumps(summary, allow_nan=False)  # plain JSON


def test_sales_of_old_backlog_are_not_on_time() -> None:
    # A single SKU short in period 1, served late in period 2: 2 of 4 units on time
    # (the 2 late units count as sold, not as on time).
    data = {
        "skus": ["A"],
        "periods": ["w1", "w2"],
        "demand": {"A": [2, 2]},
        "initial_inventory": {"A": 0},
        "capacity": {"A": 4},
        "lead_time": 1,
    }
    policy = load_policy({"safety_stock_periods": 0, "lot_size": 4, "service_target": 0.5})
    r = simulate(load_scenario(data), policy)
    assert r.sales.tolist() == [[0, 4]]
    summary = kpis(r, policy)
    assert summary["fill_rate"] == 0.5
    assert summary["service_target_met"] is True
    assert summary["stockout_periods"] == 1


def test_no_demand_and_no_stock_give_fill_rate_one_and_no_turns() -> None:
    data = {
        "skus": ["A"],
        "periods": ["w1", "w2"],
        "demand": {"A": [0, 0]},
        "initial_inventory": {"A": 0},
        "capacity": {"A": 0},
        "lead_time": 0,
    }
    summary = kpis(simulate(load_scenario(data), load_policy({})), load_policy({}))
    assert summary["fill_rate"] == 1.0
    assert summary["inventory_turns"] is None
    assert summary["average_inventory"] == 0
    assert summary["stockout_periods"] == 0
    assert summary["service_target_met"] is True


def test_policy_defaults() -> None:
    policy = load_policy({})
    assert policy.model_dump() == {
        "safety_stock_periods": 1.0,
        "lot_size": 1,
        "service_target": 0.95,
        "holding_cost": 1.0,
        "backorder_cost": 5.0,
        "production_cost": 0.0,
    }


def test_exact_decimals_from_canonical_json_are_accepted() -> None:
    policy = load_policy({"lot_size": Decimal("10"), "safety_stock_periods": Decimal("1.5")})
    assert policy.lot_size == 10 and policy.safety_stock_periods == 1.5
    data = small_data()
    data["lead_time"] = Decimal("2")
    assert load_scenario(data).lead_time == 2


# --- bad input -------------------------------------------------------------------------


def _with(**changes: Any) -> dict[str, Any]:
    data = small_data()
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_with(demand={"A": [1, 2], "B": [0, 0, 4]}), "demand['A']: expected 3 values"),
        (_with(demand={"A": [1, 2, 3]}), "demand: expected one entry per SKU"),
        (_with(demand={"A": [1, 2, 3], "B": [0, 0, 4], "C": [1, 1, 1]}), "unknown SKU 'C'"),
        (
            _with(demand={"A": [1, -2, 3], "B": [0, 0, 4]}),
            "demand['A'][1]: input should be greater",
        ),
        (
            _with(demand={"A": [1, "2", 3], "B": [0, 0, 4]}),
            "demand['A'][1]: input should be a valid number",
        ),
        (_with(initial_inventory={"A": 5}), "initial_inventory: expected one entry per SKU"),
        (_with(capacity={"A": 10, "B": -1}), "capacity['B']: input should be greater"),
        (_with(capacity=10), "capacity: input should be a valid dictionary"),
        (_with(lead_time=-1), "lead_time: expected 0 to 1000 periods, got -1"),
        (_with(lead_time=10**30), "lead_time: expected 0 to 1000 periods"),
        (_with(lead_time={"A": 1, "B": -2}), "lead_time['B']: expected 0 to 1000 periods"),
        (_with(lead_time={"A": 1}), "lead_time: expected one entry per SKU"),
        (_with(lead_time=1.5), "lead_time: expected a whole number of periods, got 1.5"),
        (_with(lead_time=True), "lead_time: expected a whole number of periods, got True"),
        (_with(skus=["A", "A"]), "skus: SKU 'A' appears twice"),
        (_with(skus=[]), "skus: list should have at least 1 item"),
        (_with(periods=["t1", "t1", "t3"]), "periods: period label 't1' appears twice"),
        (_with(colour="red"), "colour: extra inputs are not permitted"),
        ({k: v for k, v in small_data().items() if k != "capacity"}, "capacity: field required"),
        (
            _with(demand={"A": [1, float("nan"), 3], "B": [0, 0, 4]}),
            "demand['A'][1]: input should be a finite number",
        ),
    ],
)
def test_bad_scenario_data_is_invalid_and_names_the_field(data: Any, expected: str) -> None:
    with pytest.raises(Invalid) as caught:
        load_scenario(data)
    assert expected in caught.value.message
    assert caught.value.message.startswith("scenario data is invalid: ")


def test_scenario_data_must_be_an_object() -> None:
    with pytest.raises(Invalid, match="scenario data must be a JSON object, not list"):
        load_scenario([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"lot_size": 0}, "lot_size: input should be greater than or equal to 1"),
        ({"lot_size": 2.5}, "lot_size: input should be a valid integer"),
        ({"lot_size": True}, "lot_size: input should be a valid integer"),
        ({"service_target": 1.5}, "service_target: input should be less than or equal to 1"),
        ({"safety_stock_periods": -1}, "safety_stock_periods: input should be greater"),
        ({"holding_cost": "cheap"}, "holding_cost: input should be a valid number"),
        ({"safety_stock": 2}, "unknown key 'safety_stock' (known keys: safety_stock_periods,"),
    ],
)
def test_bad_config_is_invalid_and_names_the_field(config: dict[str, Any], expected: str) -> None:
    with pytest.raises(Invalid) as caught:
        load_policy(config)
    assert expected in caught.value.message


# --- the runner ------------------------------------------------------------------------


def test_run_writes_psi_csv_and_summary_and_returns_it(tmp_path: Path) -> None:
    context = Context(
        run_dir=tmp_path,
        config={"lot_size": 2},
        scenario_data=json.loads(example_path("small.json").read_text()),
    )
    summary = run(context)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert summary["skus"] == 3 and summary["periods"] == 12
    with (tmp_path / "psi.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) - 1 == 3 * 12
    assert rows[1][:3] == ["beans-1kg", "2025-W01", "38"]
    assert rows[-1][:3] == ["burr-set", "2025-W12", "1"]
    # the file holds the simulation, SKU-major
    scenario = load_scenario(context.scenario_data or {})
    result = simulate(scenario, load_policy(context.config))
    for column, name in enumerate(QUANTITIES, start=2):
        cells = [float(row[column]) for row in rows[1:]]
        assert cells == getattr(result, name).ravel().tolist(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["psi.csv", "summary.json"]


def test_run_applies_the_horizon_param(tmp_path: Path) -> None:
    context = Context(
        run_dir=tmp_path,
        scenario_data=json.loads(example_path("small.json").read_text()),
        params={"horizon": 5},
    )
    assert run(context)["periods"] == 5
    assert len((tmp_path / "psi.csv").read_text().splitlines()) == 1 + 3 * 5


@pytest.mark.parametrize(
    ("params", "expected"),
    [({"horizon": 0}, "horizon: input should be greater"), ({"seed": 1}, "unknown key 'seed'")],
)
def test_run_refuses_bad_params(tmp_path: Path, params: dict[str, Any], expected: str) -> None:
    context = Context(run_dir=tmp_path, scenario_data=small_data(), params=params)
    with pytest.raises(Invalid, match=expected):
        run(context)
    assert list(tmp_path.iterdir()) == []


def test_run_without_scenario_data_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="runyard scenario add NAME --data FILE"):
        run(Context(run_dir=tmp_path, scenario_data=None))
    assert list(tmp_path.iterdir()) == []


def test_fractional_quantities_are_written_exactly(tmp_path: Path) -> None:
    data = _with(demand={"A": [1.5, 2, 3], "B": [0, 0, 4]})
    scenario = load_scenario(data)
    result = simulate(scenario, load_policy({}))
    write_outputs(result, scenario, tmp_path)
    rows = list(csv.DictReader((tmp_path / "psi.csv").open(newline="")))
    assert [r["demand"] for r in rows[:3]] == ["1.5", "2.0", "3.0"]
    assert all("." not in r["production"] for r in rows)  # whole numbers stay integers


def test_write_outputs_refuses_a_result_of_another_scenario(tmp_path: Path) -> None:
    result = simulate(load_scenario(TINY), load_policy({}))
    with pytest.raises(Invalid, match="does not belong to this scenario"):
        write_outputs(result, load_scenario(_with(skus=["A", "B", "C"], **_three_skus())), tmp_path)


def _three_skus() -> dict[str, Any]:
    return {
        "demand": {"A": [1, 2, 3], "B": [0, 0, 4], "C": [1, 1, 1]},
        "initial_inventory": {"A": 5, "B": 0, "C": 0},
        "capacity": {"A": 10, "B": 10, "C": 1},
    }


# --- shipped data ----------------------------------------------------------------------


def test_large_json_is_the_generators_output() -> None:
    path = example_path("large.json")
    assert json.loads(path.read_text()) == generate_large()
    assert path.read_bytes() == large_json_bytes()  # compact, byte for byte


def test_generate_large_has_the_promised_shape() -> None:
    data = generate_large()
    scenario = load_scenario(data)
    assert len(scenario.skus) == 1000 and len(scenario.periods) == 104
    assert generate_large() == data


@pytest.mark.parametrize("scenario_file", ["small.json", "large.json"])
@pytest.mark.parametrize("config_file", CONFIGS)
def test_shipped_scenarios_and_configs_load_and_simulate(
    scenario_file: str, config_file: str
) -> None:
    scenario = load_scenario(json.loads(example_path(scenario_file).read_text()))
    policy = load_policy(json.loads(example_path(config_file).read_text()))
    result = simulate(scenario, policy)
    assert isinstance(result, PsiResult)
    summary = kpis(result, policy)
    assert summary["skus"] == len(scenario.skus)
    assert 0 < summary["fill_rate"] <= 1


def test_more_safety_stock_means_more_inventory_on_the_shipped_configs() -> None:
    scenario = load_scenario(json.loads(example_path("small.json").read_text()))
    averages = []
    for name in ("config-lean.json", "config-base.json", "config-safe.json"):
        policy = load_policy(json.loads(example_path(name).read_text()))
        averages.append(kpis(simulate(scenario, policy), policy)["average_inventory"])
    assert averages == sorted(averages) and len(set(averages)) == 3


def test_example_path_refuses_unknown_names() -> None:
    with pytest.raises(NotFound, match="no data file"):
        example_path("../model.py")
    assert example_path("small.json").is_file()
