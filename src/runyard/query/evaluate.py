"""A query answered in Python over runs held in memory: the reference the SQL is tested
against (the property tests compare both over random runs and random queries), written
for clarity, not speed. It reads values through the same flattening functions as the
index (``runyard.registry.search_index``)."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runyard.query.ast import And, Compare, Condition, Field, Not, Or, OrderKey
from runyard.registry import scenarios
from runyard.registry.search_index import kpi_values, leaf_values

SCENARIO_ID_PREFIX = f"{scenarios.SCENARIO_ID_PREFIX}-"  # a value naming a scenario by id


@dataclass(frozen=True)
class RunFacts:
    """What a query can ask of one run."""

    run_id: str
    status: str
    group: str | None
    location: str
    legacy: bool
    pinned: bool
    plan: str | None
    plan_label: str | None
    scenario_id: str | None
    scenario_name: str | None
    config: str | None
    started_at: datetime  # naive UTC
    finished_at: datetime | None
    summary: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    config_content: Mapping[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def kpis(self) -> dict[str, float]:
        return kpi_values(self.summary)

    @functools.cached_property
    def param_leaves(self) -> dict[str, tuple[float | None, str | None]]:
        return leaf_values(self.params)

    @functools.cached_property
    def config_leaves(self) -> dict[str, tuple[float | None, str | None]]:
        return leaf_values(self.config_content)


def like_regex(pattern: str) -> re.Pattern[str]:
    """SQL ``LIKE`` with ``\\`` as the escape character, case-sensitive."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def value_of(facts: RunFacts, f: Field, literal: Any = None) -> Any:
    """The run's value of ``f`` (None when it has none). For params and config the value
    is picked to match ``literal``: the number for a number, else the text."""
    if f.kind == "kpi":
        return facts.kpis.get(f.name)
    if f.kind == "tag":
        return facts.tags.get(f.name)
    if f.kind in ("param", "config"):
        leaves = facts.param_leaves if f.kind == "param" else facts.config_leaves
        num, text = leaves.get(f.name, (None, None))
        return num if isinstance(literal, float) else text
    if f.name == "scenario":
        if isinstance(literal, str) and literal.startswith(SCENARIO_ID_PREFIX):
            return facts.scenario_id
        return facts.scenario_name
    if f.name == "duration":
        if facts.finished_at is None:
            return None
        return round((facts.finished_at - facts.started_at).total_seconds(), 3)
    return getattr(facts, f.name)


def _is_missing(facts: RunFacts, f: Field) -> bool:
    if f.kind in ("param", "config"):
        leaves = facts.param_leaves if f.kind == "param" else facts.config_leaves
        return f.name not in leaves
    if f.name == "scenario":
        return facts.scenario_id is None
    return value_of(facts, f) is None


_OPS = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _compare(facts: RunFacts, c: Compare) -> bool:
    if c.op == "is null":
        return _is_missing(facts, c.field)
    if c.op == "is not null":
        return not _is_missing(facts, c.field)
    if c.op in ("in", "not in"):
        found = any(value_of(facts, c.field, v) == v for v in c.values)
        if c.op == "in":
            return found
        return not _is_missing(facts, c.field) and not found
    literal = c.values[0]
    actual = value_of(facts, c.field, literal)
    if actual is None:
        return False
    if c.op in ("like", "not like"):
        found = like_regex(str(literal)).fullmatch(actual) is not None
        return found if c.op == "like" else not found
    return bool(_OPS[c.op](actual, literal))


def matches(condition: Condition | None, facts: RunFacts) -> bool:
    if condition is None:
        return True
    if isinstance(condition, Compare):
        return _compare(facts, condition)
    if isinstance(condition, And):
        return all(matches(item, facts) for item in condition.items)
    if isinstance(condition, Or):
        return any(matches(item, facts) for item in condition.items)
    if isinstance(condition, Not):
        return not matches(condition.item, facts)
    raise TypeError(condition)


def _sort_values(facts: RunFacts, key: OrderKey) -> list[Any]:
    f = key.field
    if f.kind in ("param", "config"):
        return [value_of(facts, f, 0.0), value_of(facts, f, "")]
    if f.name == "scenario" and f.kind == "attr":
        return [facts.scenario_name]
    return [value_of(facts, f)]


def _cmp(a: Any, b: Any, descending: bool) -> int:
    if a is None or b is None:  # runs without the value come last, in either direction
        return (a is None) - (b is None)
    if a == b:
        return 0
    result = -1 if a < b else 1
    return -result if descending else result


def order(runs: Sequence[RunFacts], keys: Sequence[OrderKey]) -> list[RunFacts]:
    """``runs`` in the order of ``keys``, ties newest first (started_at, then run_id)."""

    def compare(x: RunFacts, y: RunFacts) -> int:
        for key in keys:
            for a, b in zip(_sort_values(x, key), _sort_values(y, key), strict=True):
                found = _cmp(a, b, key.descending)
                if found:
                    return found
        return _cmp(x.started_at, y.started_at, True) or _cmp(x.run_id, y.run_id, True)

    return sorted(runs, key=functools.cmp_to_key(compare))


def answer(
    runs: Sequence[RunFacts], condition: Condition | None, keys: Sequence[OrderKey]
) -> list[str]:
    """The run ids a query returns, in order."""
    return [r.run_id for r in order([r for r in runs if matches(condition, r)], keys)]
