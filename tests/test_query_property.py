"""The query language against its reference: for random runs and random queries, what
``list_runs`` returns page by page equals ``runyard.query.evaluate`` over all runs, on both
engines, under every order, for every page size."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runyard
from runyard.query import parse_query
from runyard.query.evaluate import RunFacts, answer
from runyard.registry import configs, plans, runs, scenarios
from tests.conftest import fresh_pg_schema

BASE = datetime(2026, 5, 1, 8, 0)
SCENARIOS = ["alpha", "beta", "Gamma"]
CONFIGS = [
    {"policy": {"lot": 10, "mode": "fast"}, "flags": ["a", "b"]},
    {"policy": {"lot": 25, "mode": "slow"}, "flags": []},
    {"policy": {"lot": 10, "mode": "Fast", "extra": True}},
]
PLANS = [  # (scenario, config, params, label)
    (0, 0, {"horizon": 4, "method": "ss", "on": True}, "small-base"),
    (0, 1, {"horizon": 8, "method": "ss", "on": False}, "big-base"),
    (1, 2, {"horizon": 4, "method": "eoq"}, None),
    (2, 0, {"horizon": 12.5, "method": "eoq", "on": True, "nested": {"k": "v"}}, "gamma_1"),
]
OWNERS = ["ann", "bob", "Émile", "ann%", "b_b"]


def _make_runs(rng: random.Random) -> list[dict[str, Any]]:
    records = []
    for i in range(70):
        summary: dict[str, Any] = {"note": "x", "ok": rng.random() < 0.5}
        if rng.random() < 0.8:
            summary["fill_rate"] = round(rng.random(), 2)
        if rng.random() < 0.7:
            summary["cost"] = {"holding": rng.choice([1.5, 2.0, 3.25, 10.0, -4.0])}
            if rng.random() < 0.5:
                summary["cost"]["total"] = rng.randint(0, 5) * 100
        if rng.random() < 0.6:
            summary["count"] = rng.randint(0, 3)  # many ties
        tags = {}
        if rng.random() < 0.7:
            tags["owner"] = rng.choice(OWNERS)
        if rng.random() < 0.4:
            tags["stage"] = rng.choice(["dev", "prod", "Prod"])
        started = BASE + timedelta(seconds=10 * rng.randint(0, 40))  # ties of started_at too
        records.append(
            {
                "plan": rng.randrange(len(PLANS)),
                "run_id": f"r{i:03d}-{rng.randint(0, 9)}",
                "group": rng.choice([None, "CH01", "CH02", "ch01"]),
                "status": rng.choice(["succeeded", "failed", "cancelled"]),
                "summary": summary,
                "tags": tags,
                "started_at": started.replace(tzinfo=UTC),
                "finished_at": (started + timedelta(seconds=rng.randint(0, 30) * 2)).replace(
                    tzinfo=UTC
                ),
                "pinned": rng.random() < 0.2,
            }
        )
    return records


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[runyard.Yard, list[RunFacts]]]:
    path = tmp_path_factory.mktemp("query") / "yard"
    mp = pytest.MonkeyPatch()
    if request.param == "postgresql":
        mp.setenv("RUNYARD_DB", fresh_pg_schema(request.getfixturevalue("pg_database")))
    runyard.init_yard(path)
    rng = random.Random(20261207)
    with runyard.open_yard(path) as yard:
        with yard.write() as conn:
            scens = [scenarios.add_scenario(conn, name) for name in SCENARIOS]
            confs = [configs.add_config(conn, json.dumps(c)) for c in CONFIGS]
            made = [
                plans.create_plan(
                    conn, scens[s].scenario_id, confs[c].config_version_id, params, label
                )
                for s, c, params, label in PLANS
            ]
        records = _make_runs(rng)
        yard.record_runs(
            [
                {
                    "plan_version_id": made[r["plan"]].plan_version_id,
                    **{k: v for k, v in r.items() if k not in ("plan", "pinned")},
                }
                for r in records
            ]
        )
        for r in records:
            if r["pinned"]:
                runs.set_pinned(yard, r["run_id"], True)
        facts = []
        for r in records:
            s, c, params, label = PLANS[r["plan"]]
            facts.append(
                RunFacts(
                    run_id=r["run_id"],
                    status=r["status"],
                    group=r["group"],
                    location="active",
                    legacy=False,
                    pinned=r["pinned"],
                    plan=made[r["plan"]].plan_version_id,
                    plan_label=label,
                    scenario_id=scens[s].scenario_id,
                    scenario_name=scens[s].name,
                    config=confs[c].config_version_id,
                    started_at=r["started_at"].replace(tzinfo=None),
                    finished_at=r["finished_at"].replace(tzinfo=None),
                    summary=r["summary"],
                    tags=r["tags"],
                    params=params,
                    config_content=CONFIGS[c],
                )
            )
        yield yard, facts
    mp.undo()


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


NUMBER_FIELDS = {
    "kpi.fill_rate": [0.0, 0.25, 0.5, 0.505, 0.9, 1.0],
    "kpi.cost.holding": [-4.0, 1.5, 2.0, 3.0, 10.0],
    "kpi.cost.total": [0.0, 100.0, 250.0, 500.0],
    "kpi.count": [0.0, 1.0, 2.0, 3.0],
    "duration": [0.0, 9.0, 21.0, 59.0],
    "param.horizon": [4.0, 8.0, 12.5],
    "param.on": [0.0, 1.0],
    "config.policy.lot": [10.0, 25.0],
    "config.policy.extra": [1.0],
}
TEXT_FIELDS = {
    "tag.owner": [*OWNERS, "ann\\%", "%", "_nn", "É%"],
    "tag.stage": ["dev", "prod", "Prod", "p%"],
    "param.method": ["ss", "eoq", "e%"],
    "config.policy.mode": ["fast", "Fast", "slow", "%a%"],
    "config.flags": ['["a", "b"]', "[]"],
    "param.nested.k": ["v"],
    "status": ["succeeded", "failed", "cancelled"],
    "group": ["CH01", "CH02", "ch01", "CH%"],
    "plan_label": ["small-base", "big-base", "gamma_1", "%base"],
    "scenario": SCENARIOS,
    "run_id": ["r010-1", "r050", "r0%"],
}
BOOL_FIELDS = ["pinned", "legacy"]
TIME_FIELDS = ["started_at", "finished_at"]
ORDER_FIELDS = [
    *NUMBER_FIELDS,
    *[f for f in TEXT_FIELDS if f != "status"],
    "status",
    "pinned",
    "started_at",
    "finished_at",
    "plan",
    "config",
]


@st.composite
def comparisons(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["number", "text", "bool", "time", "null"]))
    if kind == "number":
        field = draw(st.sampled_from(sorted(NUMBER_FIELDS)))
        values = NUMBER_FIELDS[field]
        op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "in", "not in"]))
        if op.endswith("in"):
            chosen = draw(st.lists(st.sampled_from(values), min_size=1, max_size=3))
            return f"{field} {op} ({', '.join(repr(v) for v in chosen)})"
        return f"{field} {op} {draw(st.sampled_from(values))!r}"
    if kind == "text":
        field = draw(st.sampled_from(sorted(TEXT_FIELDS)))
        values = TEXT_FIELDS[field]
        if field == "status":
            op = draw(st.sampled_from(["=", "!=", "in", "not in"]))
        else:
            op = draw(st.sampled_from(["=", "!=", "<", ">=", "in", "not in", "like", "not like"]))
        if op.endswith("in"):
            chosen = draw(st.lists(st.sampled_from(values), min_size=1, max_size=3))
            return f"{field} {op} ({', '.join(_text(v) for v in chosen)})"
        return f"{field} {op} {_text(draw(st.sampled_from(values)))}"
    if kind == "bool":
        field = draw(st.sampled_from(BOOL_FIELDS))
        return f"{field} {draw(st.sampled_from(['=', '!=']))} {draw(st.booleans())}".lower()
    if kind == "time":
        field = draw(st.sampled_from(TIME_FIELDS))
        at = BASE + timedelta(seconds=draw(st.integers(0, 80)) * 5 + 1)
        op = draw(st.sampled_from(["<", "<=", ">", ">="]))
        stamp = at.isoformat() if draw(st.booleans()) else _text(at.isoformat() + "Z")
        return f"{field} {op} {stamp}"
    field = draw(
        st.sampled_from([*NUMBER_FIELDS, *TEXT_FIELDS, "tag.stage", "group", "plan_label"])
    )
    return f"{field} is {draw(st.sampled_from(['null', 'not null']))}"


conditions = st.recursive(
    comparisons(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        inner.map(lambda c: f"not {c}"),
    ),
    max_leaves=4,
)
orders = st.lists(
    st.tuples(st.sampled_from(ORDER_FIELDS), st.sampled_from(["asc", "desc", ""])),
    max_size=2,
    unique_by=lambda t: t[0],
).map(lambda keys: [f"{f} {d}".strip() for f, d in keys])


def _all_pages(yard: runyard.Yard, where: str | None, order: list[str], limit: int) -> list[str]:
    seen: list[str] = []
    after = None
    for _ in range(200):
        page = yard.list_runs(where=where, order_by=order, limit=limit, after=after)
        seen.extend(r.run_id for r in page.items)
        if page.next_cursor is None:
            return seen
        after = page.next_cursor
    raise AssertionError("the pages never ended")


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(where=st.one_of(st.none(), conditions), order=orders, limit=st.integers(1, 9))
def test_every_page_of_every_query_is_what_python_says(world, where, order, limit):
    yard, facts = world
    query = parse_query(where, order)
    expected = answer(facts, query.where, query.order_by)
    got = _all_pages(yard, where, order, limit)
    assert got == expected, f"where={where!r} order={order!r} limit={limit}"


@pytest.mark.parametrize(
    "order",
    [[], ["kpi.fill_rate desc"], ["kpi.count", "tag.owner desc"], ["param.horizon desc"]],
)
def test_each_run_appears_exactly_once_across_pages(world, order):
    yard, facts = world
    ids = _all_pages(yard, None, order, 4)
    assert sorted(ids) == sorted(f.run_id for f in facts)


def test_the_world_is_varied_enough_to_mean_something(world):
    _, facts = world
    assert sum("fill_rate" in f.kpis for f in facts) not in (0, len(facts))
    assert len({f.kpis.get("count") for f in facts}) >= 3
    assert len({f.started_at for f in facts}) < len(facts)  # ties of started_at
