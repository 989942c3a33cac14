"""runyard.canonical: equal JSON content gets one text and one id; any change of value
gets another.

The property tests build a JSON value (numbers as exact Decimals), write it out in many
equivalent ways (key order, whitespace, string escapes, number spellings) and check
that every spelling gets the same config_version_id, and that a change of value does not.
"""

from __future__ import annotations

import copy
import json
import random
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from runyard.canonical import (
    canonical_text,
    canonicalize,
    config_version_id,
    content_digest,
    parse_exact,
)
from runyard.errors import Invalid

# --- building values -----------------------------------------------------------------------


def _decimal(sign: int, coefficient: int, exponent: int) -> Decimal:
    return Decimal((sign, tuple(int(d) for d in str(coefficient)), exponent))


finite_decimals = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40).map(Decimal),
    st.builds(_decimal, st.integers(0, 1), st.integers(0, 10**35), st.integers(-60, 60)),
    st.builds(
        _decimal,
        st.integers(0, 1),
        st.integers(1, 999),
        st.sampled_from([-300, -31, -30, 28, 29, 30, 31, 300]),
    ),
)
keys = st.text(max_size=8)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=12),
    finite_decimals,
)
json_values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=20,
)
json_objects = st.dictionaries(keys, json_values, max_size=6)
# Seeded generators drive the choices of spelling (fast, and reproducible from the seed).
rngs = st.integers(0, 2**32).map(random.Random)


def same(a: Any, b: Any) -> bool:
    """JSON equality, written independently: 1 == 1.0, but 1 != true and 1 != "1"."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, bool) or a is None or isinstance(a, str):
        return type(a) is type(b) and a == b
    assert isinstance(a, Decimal)
    return isinstance(b, Decimal) and a == b


# --- writing values in many equivalent ways -------------------------------------------------


def spell_number(value: Decimal, rng: random.Random) -> str:
    """One of the many JSON spellings of ``value``: 5, 5.0, 5e0, 50e-1, 0.5e1, 5.00E+00 …"""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    coefficient = "".join(map(str, digits)).lstrip("0")
    minus = "-" if sign or (not coefficient and rng.random() < 0.3) else ""
    if not coefficient:  # zero, including -0
        return minus + rng.choice(["0", "0.0", "0e0", "0E+5", "0.000e-3"])
    zeros = rng.randint(0, 3)  # extra trailing zeros: 25 -> 2500 with exponent - 2
    coefficient += "0" * zeros
    exponent -= zeros
    form = rng.randrange(3)
    if form == 0:  # integer coefficient with an exponent: 25E-2
        mantissa, exp = coefficient, exponent
    elif form == 1:  # a point inside the coefficient: 2.5e-1
        point = rng.randint(1, len(coefficient))
        mantissa = coefficient[:point] + (
            "." + coefficient[point:] if point < len(coefficient) else ""
        )
        exp = exponent + len(coefficient) - point
    else:  # 0.000ddd: 0.25, 0.025e1
        lead = rng.randint(0, 2)
        mantissa = "0." + "0" * lead + coefficient
        exp = exponent + len(coefficient) + lead
    if exp == 0 and rng.random() < 0.5:
        return minus + mantissa
    if -40 <= exp < 0 and rng.random() < 0.3 and form == 0:
        # plain decimal: 0.0025 written out
        text = coefficient.rjust(-exp + 1, "0")
        return minus + text[:exp] + "." + text[exp:]
    marker = rng.choice("eE")
    plus = "+" if exp >= 0 and rng.random() < 0.5 else ""
    pad = "0" * rng.randint(0, 1)
    exp_text = f"-{pad}{-exp}" if exp < 0 else f"{plus}{pad}{exp}"
    return f"{minus}{mantissa}{marker}{exp_text}"


def write_json(value: Any, rng: random.Random, depth: int = 0) -> str:
    """JSON text of ``value`` with shuffled keys, random whitespace and number spellings."""
    indent = rng.choice(["", "", " ", "  ", "\t", "\n"])
    ws = lambda: rng.choice(["", "", " ", "\n", "\r\n", "\t", "  \n  "])  # noqa: E731
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        parts = [
            f"{ws()}{json.dumps(k, ensure_ascii=rng.random() < 0.5)}{ws()}:{ws()}"
            f"{write_json(v, rng, depth + 1)}{ws()}"
            for k, v in items
        ]
        return "{" + indent + ",".join(parts) + ws() + "}"
    if isinstance(value, list):
        parts = [ws() + write_json(v, rng, depth + 1) + ws() for v in value]
        return "[" + ",".join(parts) + ws() + "]"
    if isinstance(value, Decimal):
        return spell_number(value, rng)
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=rng.random() < 0.5)
        return text.replace("/", "\\/") if rng.random() < 0.3 else text
    return json.dumps(value)


def to_python(value: Any) -> Any:
    """Decimals as int or float where that is exact, for json.dumps."""
    if isinstance(value, dict):
        return {k: to_python(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_python(v) for v in value]
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return int(value)
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else str(value)
    return value


def cid(text: str) -> str:
    return config_version_id(canonicalize(text))


# --- the same content gets the same id ------------------------------------------------------


@given(json_objects, rngs, rngs)
def test_every_spelling_of_a_value_gets_the_same_id(value, rng_a, rng_b):
    text_a, text_b = write_json(value, rng_a), write_json(value, rng_b)
    assert same(parse_exact(text_a), value)  # the spelling really is this value
    assert canonicalize(text_a) == canonicalize(text_b) == canonical_text(value)
    assert cid(text_a) == cid(text_b)
    canonical = canonicalize(text_a)
    assert canonicalize(canonical) == canonical  # a fixed point
    assert "\n" not in canonical and "\t" not in canonical  # one line, no indentation


@given(
    json_objects.map(to_python),
    st.sampled_from([None, 0, 1, 2, 4, "\t"]),
    st.sampled_from([None, (",", ":"), (", ", ": "), (",", ": "), (" , ", " : ")]),
    st.booleans(),
    st.booleans(),
)
def test_json_dumps_variants_get_the_same_id(value, indent, separators, sort_keys, ascii_):
    plain = json.dumps(value)
    varied = json.dumps(
        value, indent=indent, separators=separators, sort_keys=sort_keys, ensure_ascii=ascii_
    )
    reversed_keys = json.dumps(dict(reversed(list(value.items()))), indent=indent)
    assert cid(plain) == cid(varied) == cid(reversed_keys)


@pytest.mark.parametrize(
    ("spellings"),
    [
        ["5", "5.0", "5e0", "50e-1", "0.5e1", "5.000", "5E+0", "500e-2", "0.005e3", "5e00"],
        ["0.25", "0.250", "2.5e-1", "25E-2", "0.025e1", "250e-3", "2.50E-1"],
        ["-3", "-3.0", "-30e-1", "-0.3E1"],
        ["0", "-0", "0.0", "-0.0", "0e10", "-0E-10"],
        ["1e300", "10e299", "0.1e301", "1.000e+300"],
        ["1e-300", "0.1e-299", "10E-301"],
        ["123456789012345678901234567891", "1.23456789012345678901234567891e29"],
    ],
)
def test_equal_numbers_get_the_same_id(spellings):
    ids = {cid(f'{{"n": {s}}}') for s in spellings}
    assert len(ids) == 1, ids
    assert len({cid(f"[{s}]") for s in spellings}) == 1


def test_minus_zero_is_zero():
    assert canonicalize("-0") == canonicalize("0") == canonicalize("-0.0e5") == "0"
    assert canonical_text(-0.0) == canonical_text(0) == "0"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1e300", "1e+300"),
        ("-1.50e300", "-1.5e+300"),
        ("1e-300", "1e-300"),
        ("1.7976931348623157e308", "1.7976931348623157e+308"),
        ("-2.5e-320", "-2.5e-320"),
        ("1e30", "1" + "0" * 30),
        ("1e31", "1e+31"),
        ("1e-30", "0." + "0" * 29 + "1"),
        ("1e-31", "1e-31"),
        ("0.5", "0.5"),
        ("100", "100"),
        ("1.0", "1"),
        ("-12.3400", "-12.34"),
    ],
)
def test_numbers_have_one_compact_finite_text(text, expected):
    assert canonicalize(text) == expected


def test_big_exponents_do_not_expand():
    for exponent in (100, 200, 300, 308):
        for text in (f"1e{exponent}", f"1e-{exponent}", f"-1.5e{exponent}"):
            out = canonicalize(text)
            assert len(out) < 20, out
            assert canonicalize(out) == out


def test_numbers_beyond_float64_are_refused_not_changed():
    """1e400 would read back as inf (shown as null), 1e-400 as 0: refused, with where."""
    for exponent in (309, 400, 5000, 10**6, 10**9):
        for text in (f"1e{exponent}", f"-9.99e{exponent}"):
            with pytest.raises(Invalid, match=r"beyond the float64 range .* at \$\.n"):
                canonicalize(f'{{"n": {text}}}')
    for text in ("1e-400", "-2.5e-999999999", "1e-330"):
        with pytest.raises(Invalid, match=r"too small for a float64 .* at \$\[0\]"):
            canonicalize(f"[{text}]")
    with pytest.raises(Invalid, match="beyond the float64 range"):
        canonical_text({"n": 10**400})


def test_python_ints_and_floats_match_their_json_spelling():
    """canonical_text of Python values (plan params) agrees with the parsed-JSON path."""
    for value, text in [
        (10**31, "1e31"),
        (-(10**40), "-1E40"),
        (5, "5.0"),
        (0.25, "25e-2"),
        (2**70, str(2**70)),
        (1e300, "1e300"),
        (5e-324, "5e-324"),
    ]:
        assert canonical_text(value) == canonicalize(text)
        assert canonical_text({"x": [value]}) == canonicalize(f'{{"x": [{text}]}}')


def test_known_canonical_form():
    text = '{ "b" : [1.50, true, null, "x\\u00e9\\/"], "a": {"z": 0.0, "y": -1E2} }'
    assert canonicalize(text) == '{"a":{"y":-100,"z":0},"b":[1.5,true,null,"xé/"]}'
    canonical = canonicalize(text)
    assert config_version_id(canonical) == "cfg-" + content_digest(canonical)[:20]
    assert len(config_version_id(canonical)) == 24


# --- any change of value gets another id ----------------------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    out = copy.deepcopy(value)
    _get(out, path[:-1])[path[-1]] = new
    return out


def nudge(value: Decimal) -> Decimal:
    """``value`` changed by at most 1e-20 relative (exactly, no binary floats)."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    coefficient = int("".join(map(str, digits))) if digits else 0
    if coefficient == 0:
        return Decimal("1e-40")
    return _decimal(sign, coefficient * 10**20 + 1, exponent - 20)


def other_types(value: Any) -> list[Any]:
    """Values that are 'the same' to a sloppy comparison, but not to JSON."""
    if isinstance(value, bool):
        return [Decimal(int(value)), str(value).lower(), None]
    if value is None:
        return ["null", Decimal(0), False, [], {}]
    if isinstance(value, Decimal):
        out = [str(value), [value], None]
        if value in (0, 1):
            out.append(bool(value))
        return out
    if isinstance(value, str):
        return [[value], {value: None}, None]
    if isinstance(value, list):
        return [{str(i): v for i, v in enumerate(value)}, None]
    return [list(value.values()), None]


@st.composite
def changed(draw: st.DrawFn) -> tuple[Any, Any]:
    """A JSON object and a copy with one change of value somewhere in it."""
    value = draw(json_objects)
    path = draw(st.sampled_from(_paths(value)))
    target = _get(value, path)
    kind = draw(st.sampled_from(["leaf", "type", "add", "remove", "nudge", "swap"]))
    if kind == "leaf":
        new = draw(leaves)
        assume(not same(new, target))
        return value, _replace(value, path, new)
    if kind == "type":
        return value, _replace(value, path, draw(st.sampled_from(other_types(target))))
    if kind == "add":
        assume(isinstance(target, dict))
        key = draw(keys.filter(lambda k: k not in target))
        return value, _replace(value, path, {**target, key: draw(leaves)})
    if kind == "remove":
        assume(isinstance(target, dict) and target)
        key = draw(st.sampled_from(sorted(target)))
        return value, _replace(value, path, {k: v for k, v in target.items() if k != key})
    if kind == "nudge":
        assume(isinstance(target, Decimal))
        return value, _replace(value, path, nudge(target))
    assume(isinstance(target, list) and len(target) >= 2)
    i, j = draw(st.lists(st.integers(0, len(target) - 1), min_size=2, max_size=2, unique=True))
    assume(not same(target[i], target[j]))
    swapped = list(target)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    return value, _replace(value, path, swapped)


@given(changed(), rngs)
def test_any_change_of_value_changes_the_id(pair, rng):
    before, after = pair
    assert not same(before, after)
    assert cid(write_json(before, rng)) != cid(write_json(after, rng))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ('{"n": 1}', '{"n": "1"}'),
        ('{"n": 1}', '{"n": true}'),
        ('{"n": 0}', '{"n": false}'),
        ('{"n": 0}', '{"n": null}'),
        ('{"n": null}', '{"n": "null"}'),
        ('{"n": []}', '{"n": {}}'),
        ('{"n": [1, 2]}', '{"n": [2, 1]}'),
        ('{"n": 0.1}', '{"n": 0.10000000000000000001}'),
        ('{"n": 0.25}', '{"n": 0.2500000000000000000025}'),
        ('{"n": 123456789012345678901234567890}', '{"n": 123456789012345678901234567891}'),
        ('{"n": 1.00000000000000000000000000001}', '{"n": 1}'),
        ('{"n": 9007199254740993}', '{"n": 9007199254740992}'),  # equal as binary floats
        ('{"n": 1e300}', '{"n": 1e301}'),
        ('{"n": 1e-320}', '{"n": 0}'),
        ('{"a": 1}', '{"a": 1, "b": 1}'),
        ('{"a": 1}', '{"A": 1}'),
        ('{"a": "x"}', '{"a": "x "}'),
    ],
)
def test_known_different_values_get_different_ids(a, b):
    assert cid(a) != cid(b)


# --- refused input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 1}',
        '{"a": 1, "b": {"c": 1, "c": 2}}',
        '[{"x": 1, "x": 1}]',
    ],
)
def test_duplicate_keys_are_refused(text):
    with pytest.raises(Invalid, match="duplicate key"):
        canonicalize(text)


@pytest.mark.parametrize(
    "text",
    [
        "NaN",
        "Infinity",
        "-Infinity",
        '{"a": NaN}',
        "[1, Infinity]",
        '{"a": -Infinity}',
    ],
)
def test_nan_and_infinity_are_refused(text):
    with pytest.raises(Invalid, match=r"NaN|Infinity"):
        canonicalize(text)


def test_python_nan_and_infinity_are_refused():
    for bad in (float("nan"), float("inf"), -float("inf"), Decimal("NaN"), Decimal("-Inf")):
        with pytest.raises(Invalid, match="NaN and Infinity"):
            canonical_text({"x": bad})


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("{", 1, 2),
        ('{"a": 1,}', 1, 9),
        ('{\n  "a": 1,\n  "b": tru\n}', 3, 8),
        ("[1, 2", 1, 6),
        ('{"a": 01}', 1, 8),
        ("", 1, 1),
        ('{"a": 1} x', 1, 10),
        ("{'a': 1}", 1, 2),
    ],
)
def test_invalid_json_is_refused_with_line_and_column(text, line, column):
    with pytest.raises(Invalid) as caught:
        canonicalize(text, "config.json")
    message = caught.value.message
    assert message.startswith("config.json is not valid JSON")
    assert f"(line {line}, column {column})" in message


def test_lone_surrogates_are_refused_not_crashing():
    """ "\\ud800" is valid JSON syntax, but no UTF-8 text (or database) can hold it."""
    for text in ('{"a": "\\ud800"}', '{"\\udfff": 1}', '["x\\udc80y"]'):
        with pytest.raises(Invalid, match="surrogate"):
            cid(text)
    # A proper pair is one character, and fine.
    assert canonicalize('"\\ud83d\\ude00"') == '"😀"'


def test_unsupported_python_values_are_refused():
    with pytest.raises(Invalid, match="cannot store a value of type set"):
        canonical_text({"x": {1, 2}})
