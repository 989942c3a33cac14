"""The query parser: every operator, alias, literal and error message (no database)."""

from __future__ import annotations

import contextlib
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runyard.query import QueryError, parse_order_by, parse_where
from runyard.query.ast import And, Compare, Field, Not, Or, OrderKey
from runyard.query.evaluate import like_regex


def kpi(name: str) -> Field:
    return Field("kpi", name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kpi.fill_rate >= 0.95", Compare(kpi("fill_rate"), ">=", (0.95,))),
        ("kpi.cost.holding < 10", Compare(kpi("cost.holding"), "<", (10.0,))),
        ("kpi.x = -1.5e3", Compare(kpi("x"), "=", (-1500.0,))),
        ("kpi.x == 1", Compare(kpi("x"), "=", (1.0,))),
        ("kpi.x != 1", Compare(kpi("x"), "!=", (1.0,))),
        ("kpi.x <> 1", Compare(kpi("x"), "!=", (1.0,))),
        ("kpi.x <= 1", Compare(kpi("x"), "<=", (1.0,))),
        ("kpi.x > .5", Compare(kpi("x"), ">", (0.5,))),
        ("kpi.x in (1, 2,3)", Compare(kpi("x"), "in", (1.0, 2.0, 3.0))),
        ("kpi.x not in (1)", Compare(kpi("x"), "not in", (1.0,))),
        ("kpi.x is null", Compare(kpi("x"), "is null")),
        ("kpi.x IS NOT NULL", Compare(kpi("x"), "is not null")),
        ("tag.owner = 'ann'", Compare(Field("tag", "owner"), "=", ("ann",))),
        ('tag.owner = "ann"', Compare(Field("tag", "owner"), "=", ("ann",))),
        ("tag.owner = 'it''s'", Compare(Field("tag", "owner"), "=", ("it's",))),
        ("tag.owner like 'a%'", Compare(Field("tag", "owner"), "like", ("a%",))),
        ("tag.owner not like '_b'", Compare(Field("tag", "owner"), "not like", ("_b",))),
        ("param.method = 'ss'", Compare(Field("param", "method"), "=", ("ss",))),
        ("param.horizon = 8", Compare(Field("param", "horizon"), "=", (8.0,))),
        ("param.on = true", Compare(Field("param", "on"), "=", (1.0,))),
        ("config.policy.lot > 5", Compare(Field("config", "policy.lot"), ">", (5.0,))),
        ("status = 'failed'", Compare(Field("attr", "status"), "=", ("failed",))),
        ("pinned = true", Compare(Field("attr", "pinned"), "=", (True,))),
        ("legacy != FALSE", Compare(Field("attr", "legacy"), "!=", (False,))),
        ("duration > 60", Compare(Field("attr", "duration"), ">", (60.0,))),
        (
            "started_at >= 2026-12-01",
            Compare(Field("attr", "started_at"), ">=", (datetime(2026, 12, 1),)),
        ),
        (
            "finished_at < '2026-12-01T10:30:00+01:00'",
            Compare(Field("attr", "finished_at"), "<", (datetime(2026, 12, 1, 9, 30),)),
        ),
        (
            "started_at < 2026-12-01T10:30Z",
            Compare(Field("attr", "started_at"), "<", (datetime(2026, 12, 1, 10, 30),)),
        ),
        ("kpi.`fill rate` > 1", Compare(kpi("fill rate"), ">", (1.0,))),
        ('kpi."a.b" > 1', Compare(kpi("a.b"), ">", (1.0,))),
        ("kpi.p-95 > 1", Compare(kpi("p-95"), ">", (1.0,))),
    ],
)
def test_each_comparison_parses(text, expected):
    assert parse_where(text) == expected


@pytest.mark.parametrize(
    ("alias", "field"),
    [
        ("metrics.fill_rate", kpi("fill_rate")),
        ("metric.fill_rate", kpi("fill_rate")),
        ("params.method", Field("param", "method")),
        ("tags.owner", Field("tag", "owner")),
        ("attributes.status", Field("attr", "status")),
        ("attribute.start_time", Field("attr", "started_at")),
        ("end_time", Field("attr", "finished_at")),
        ("plan_version_id", Field("attr", "plan")),
        ("scenario_id", Field("attr", "scenario")),
        ("config_version_id", Field("attr", "config")),
    ],
)
def test_mlflow_and_long_names_are_aliases(alias, field):
    found = parse_where(f"{alias} is null")
    assert isinstance(found, Compare) and found.field == field


def test_precedence_not_binds_tightest_then_and_then_or():
    a = Compare(kpi("a"), ">", (1.0,))
    b = Compare(kpi("b"), ">", (1.0,))
    c = Compare(kpi("c"), ">", (1.0,))
    assert parse_where("kpi.a > 1 or kpi.b > 1 and kpi.c > 1") == Or((a, And((b, c))))
    assert parse_where("(kpi.a > 1 or kpi.b > 1) and kpi.c > 1") == And((Or((a, b)), c))
    assert parse_where("not kpi.a > 1 and kpi.b > 1") == And((Not(a), b))
    assert parse_where("NOT (kpi.a > 1 OR kpi.b > 1)") == Not(Or((a, b)))


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_an_empty_query_is_every_run(blank):
    assert parse_where(blank) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kpi.fill_rate >", "at column 16: expected a value after '>', found the end of the query"),
        ("kpi.fill_rate > )", "at column 17: expected a value after '>', found ')'"),
        ("kpi.x >= and", "at column 10: expected a value after '>=', found 'and'"),
        ("kpi.x", "at column 6: expected an operator after 'kpi.x'"),
        ("kpi.x ~ 1", "at column 7: unexpected character '~'"),
        ("stauts = 'failed'", "at column 1: unknown field 'stauts' (did you mean 'status'?)"),
        ("foo.bar = 1", "at column 1: unknown field 'foo.bar'"),
        ("status = 'faild'", "at column 10: status is never 'faild' (did you mean 'failed'?)"),
        ("tag.owner = ann", "at column 13: expected a value after '=', found the name 'ann'"),
        ("tag.owner = 5", "tag.owner holds text; quote the value"),
        ("kpi.x = 'high'", "kpi.x holds numbers; compare it with a number"),
        ("kpi.x like 'a%'", "kpi.x holds numbers; like is for text"),
        ("pinned > true", "pinned is true or false: compare it with = or !="),
        ("pinned = 1", "pinned is true or false"),
        ("started_at > 5", "started_at is a time; compare it with a date such as 2026-12-01"),
        ("started_at > '2026-13-01'", "is not a date and time"),
        ("kpi.x = 1e400", "1e400 is beyond what a number can hold"),
        ("tag.x = 'open", "at column 9: the string starting here is never closed"),
        ("(kpi.x > 1", "at column 11: expected ')' to close the '(' at column 1"),
        ("kpi.x > 1 kpi.y > 2", "at column 11: unexpected 'kpi.y' after a complete condition"),
        ("kpi.x in 1", "at column 10: expected '(' and a list of values after 'in'"),
        ("kpi.x in (1 2)", "at column 13: expected ',' or ')' in the list of values"),
        ("kpi.x is nul", "expected 'null'"),
        ("kpi.x not = 1", "expected 'in' or 'like' after 'not'"),
        ("and kpi.x > 1", "at column 1: expected a field such as kpi.fill_rate"),
        ("`x` > 1", "a quoted name needs its prefix"),
        ("kpi.x = 1\x00", "NUL"),
    ],
)
def test_bad_queries_say_where_and_what_was_expected(text, message):
    with pytest.raises(QueryError) as caught:
        parse_where(text)
    assert message in caught.value.message
    assert caught.value.exit_code == 5


def test_limits_on_size_depth_and_lists():
    with pytest.raises(QueryError, match="longer than"):
        parse_where("kpi.x > 1 and " * 1000 + "kpi.x > 1")
    with pytest.raises(QueryError, match="nested deeper"):
        parse_where("(" * 70 + "kpi.x > 1" + ")" * 70)
    with pytest.raises(QueryError, match="nested deeper"):
        parse_where("not " * 70 + "kpi.x > 1")
    with pytest.raises(QueryError, match="more than 1000 values"):
        parse_where("kpi.x in (" + ", ".join(["1"] * 1002) + ")")


def test_order_by_takes_fields_directions_aliases_and_lists():
    assert parse_order_by(["kpi.fill_rate desc", "started_at"]) == (
        OrderKey(kpi("fill_rate"), True),
        OrderKey(Field("attr", "started_at"), False),
    )
    assert parse_order_by("metrics.x ASC, tags.owner DESC") == (
        OrderKey(kpi("x"), False),
        OrderKey(Field("tag", "owner"), True),
    )
    assert parse_order_by(None) == ()


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["kpi.x sideways"], "expected asc, desc or ',' after kpi.x"),
        (["kpi.x, kpi.x desc"], "names kpi.x twice"),
        (["'kpi.x'"], "expected a field"),
        (["kpi.x,"], "expected a field"),
        (["stauts"], "unknown field 'stauts'"),
        ([f"kpi.k{i}" for i in range(9)], "at most 8 fields"),
    ],
)
def test_bad_orders_are_refused(items, message):
    with pytest.raises(QueryError, match=message):
        parse_order_by(items)


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("a%", "abc", True),
        ("a%", "Abc", False),  # case-sensitive, as on PostgreSQL
        ("a_c", "abc", True),
        ("a_c", "abbc", False),
        ("a\\%", "a%", True),
        ("a\\%", "ab", False),
        ("%", "", True),
        ("x%", "x\nline", True),
    ],
)
def test_like_is_sql_like_with_a_backslash_escape(pattern, text, matches):
    assert (like_regex(pattern).fullmatch(text) is not None) is matches


QUERY_ALPHABET = st.sampled_from(
    [
        *"abkpitgscofn._`'\"()=!<>,%- 0123456789eE\\\x00é\ud800",
        *["kpi.", "tag.", "param.", "config.", " and ", " or ", " not ", " in ", " like "],
        *[" is ", " null", "status", "started_at", "2026-12-01", "'x'", "1e400", "true"],
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(QUERY_ALPHABET, max_size=30).map("".join))
def test_any_text_parses_or_is_a_query_error(text):
    try:
        parse_where(text)
    except QueryError as exc:
        assert exc.message.startswith(("at column", "the query")) or "NUL" in exc.message
    with contextlib.suppress(QueryError):
        parse_order_by([text])
