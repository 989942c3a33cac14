"""runyard.ids: which run ids and labels are accepted, and how generated ids sort."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from runyard.errors import Invalid
from runyard.ids import (
    RUN_ID_MAX_LENGTH,
    new_id,
    new_run_id,
    run_id_problem,
    validate_label,
    validate_run_id,
)

ALLOWED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"
FIRST = ALLOWED.replace(".", "").replace("-", "")
# The rule, written independently of the implementation.
ORACLE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", re.ASCII)


def _no_double_dots(text: str) -> str:
    while ".." in text:
        text = text.replace("..", "._")
    return text


valid_run_ids = st.builds(
    lambda first, rest: _no_double_dots(first + rest),
    st.sampled_from(FIRST),
    st.text(alphabet=ALLOWED, max_size=RUN_ID_MAX_LENGTH - 1),
)

CONTROL = [chr(i) for i in range(32)] + ["\x7f"]
WHITESPACE = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\xa0", "\u2003", "\u3000", "\u2028"]
NON_ASCII = ["é", "ß", "Ж", "中", "ｒ", "١", "Ⅻ", "\u0301", "\ufeff", "\udcff", "😀"]
bad_fragments = st.one_of(
    st.sampled_from(["/", "\\", "..", "\x00", *CONTROL, *WHITESPACE, *NON_ASCII]),
    st.characters(min_codepoint=0x80),  # anything outside ASCII
    st.sampled_from("!\"#$%&'()*+,:;<=>?@[]^`{|}~"),
)


def assert_refused(run_id: str) -> None:
    problem = run_id_problem(run_id)
    assert isinstance(problem, str) and problem
    with pytest.raises(Invalid) as caught:
        validate_run_id(run_id)
    assert problem in caught.value.message


# --- run ids -------------------------------------------------------------------------------


@given(valid_run_ids)
@example("a")
@example("_")
@example("0")
@example("a" * RUN_ID_MAX_LENGTH)
@example("a.b.c")
@example("x-")
@example("x.")
@example("20261121T185601.123456Z-3f9a1c")
def test_valid_run_ids_are_accepted(run_id):
    assert ORACLE.fullmatch(run_id) and ".." not in run_id
    assert run_id_problem(run_id) is None
    assert validate_run_id(run_id) == run_id


@given(valid_run_ids, bad_fragments, st.integers(min_value=0))
@example("ab", "/", 1)
@example("ab", "\\", 1)
@example("ab", "..", 1)
@example("ab", "\x00", 1)
@example("ab", "\n", 2)
@example("ab", " ", 0)
@example("ab", "é", 1)
def test_a_bad_character_anywhere_is_refused(run_id, bad, position):
    position %= len(run_id) + 1
    assert_refused(run_id[:position] + bad + run_id[position:])


@given(st.sampled_from([".", "-"]), valid_run_ids)
@example(".", "hidden")
@example("-", "rf")
@example(".", "")
@example("-", "")
def test_leading_dot_or_dash_is_refused(lead, rest):
    assert_refused((lead + rest)[:RUN_ID_MAX_LENGTH])


@given(valid_run_ids, st.integers(min_value=1, max_value=300))
def test_longer_than_the_limit_is_refused(run_id, extra):
    long_id = (run_id * (RUN_ID_MAX_LENGTH // len(run_id) + 2))[: RUN_ID_MAX_LENGTH + extra]
    long_id = _no_double_dots(long_id)
    assert len(long_id) > RUN_ID_MAX_LENGTH
    assert_refused(long_id)
    assert "128" in run_id_problem(long_id)


@given(st.one_of(st.text(), st.text(alphabet=ALLOWED + "/\\ \x00é")))
@example("")
@example(".")
@example("..")
@example("a..b")
@example("../etc")
@example("a/../b")
def test_acceptance_matches_the_rule_for_any_text(text):
    expected = bool(ORACLE.fullmatch(text)) and ".." not in text
    assert (run_id_problem(text) is None) == expected
    if not expected:
        assert_refused(text)


def test_messages_say_what_is_wrong():
    assert "empty" in run_id_problem("")
    assert "'.'" in run_id_problem(".x")
    assert "'-'" in run_id_problem("-x")
    assert "'..'" in run_id_problem("a..b")
    assert "'/'" in run_id_problem("a/b")
    with pytest.raises(Invalid, match="invalid run id 'a b'"):
        validate_run_id("a b")


# --- generated ids -------------------------------------------------------------------------

RUN_ID_SHAPE = re.compile(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{6}")


def test_new_run_ids_are_valid_unique_and_sort_by_creation():
    before = datetime.now(UTC)
    ids = [new_run_id() for _ in range(3000)]
    after = datetime.now(UTC)
    assert sorted(ids) == ids
    assert len(set(ids)) == len(ids)
    for run_id in ids:
        assert validate_run_id(run_id) == run_id
        assert RUN_ID_SHAPE.fullmatch(run_id)
    first = datetime.strptime(ids[0].split("Z")[0], "%Y%m%dT%H%M%S.%f").replace(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= first <= after + timedelta(seconds=1)


ULID_SHAPE = re.compile(r"pv-[0-9abcdefghjkmnpqrstvwxyz]{26}")


def test_new_ids_are_unique_and_sort_by_creation():
    """Thousands per millisecond: they must still come out in order (monotonic ULID)."""
    ids = [new_id("pv") for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids
    assert all(ULID_SHAPE.fullmatch(i) for i in ids)


def test_new_ids_of_different_kinds_share_one_order():
    ids = [new_id(prefix) for _ in range(500) for prefix in ("sc", "pv", "yd")]
    suffixes = [i.split("-", 1)[1] for i in ids]
    assert sorted(suffixes) == suffixes
    assert len(set(suffixes)) == len(suffixes)


def test_new_ids_from_many_threads_are_unique():
    out: list[list[str]] = [[] for _ in range(8)]

    def work(slot: list[str]) -> None:
        slot.extend(new_id("pv") for _ in range(500))

    threads = [threading.Thread(target=work, args=(slot,)) for slot in out]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for slot in out for i in slot]
    assert len(set(every)) == len(every) == 4000
    for slot in out:
        assert sorted(slot) == slot


# --- labels --------------------------------------------------------------------------------

printable = st.characters(exclude_categories=("Cc", "Cs"))
good_labels = st.text(printable, min_size=1, max_size=200).filter(
    lambda s: s == s.strip() and s != ""
)


@given(good_labels)
@example("base")
@example("シナリオ 1")
@example("a  b")
@example("x" * 200)
def test_trimmed_printable_labels_are_accepted(label):
    assert validate_label(label, "scenario name") == label


@given(good_labels, st.sampled_from([" ", "\t", "\n", "\u3000", "\xa0"]), st.booleans())
def test_labels_with_outer_spaces_are_refused(label, space, leading):
    padded = space + label if leading else label + space
    with pytest.raises(Invalid, match=r"leading or trailing spaces|control characters"):
        validate_label(padded, "scenario name")


@pytest.mark.parametrize("value", ["", " ", "   ", "\t\n", "\u3000"])
def test_empty_labels_are_refused(value):
    with pytest.raises(Invalid, match="scenario name cannot be empty"):
        validate_label(value, "scenario name")


@given(
    good_labels,
    st.sampled_from([*CONTROL, *(chr(i) for i in range(0x80, 0xA0))]),
    st.integers(min_value=0),
)
@example("ab", "\x1b", 1)  # ESC: terminal escape sequences
@example("ab", "\x9b", 1)  # 8-bit CSI
@example("ab", "\x00", 1)
def test_labels_with_control_characters_are_refused(label, control, position):
    position = position % (len(label) - 1) + 1 if len(label) > 1 else 1
    value = label[:position] + control + label[position:]
    with pytest.raises(Invalid):
        validate_label(value, "tag key")


def test_labels_with_undecodable_bytes_are_refused():
    """Non-UTF-8 bytes in argv arrive as lone surrogates; no database can store them."""
    bad = b"bad\xff".decode("utf-8", "surrogateescape")
    with pytest.raises(Invalid, match="not valid text"):
        validate_label(bad, "scenario name")


def test_label_length_limit():
    assert validate_label("x" * 200, "group") == "x" * 200
    with pytest.raises(Invalid, match=r"at most 200 characters \(got 201\)"):
        validate_label("x" * 201, "group")
    assert validate_label("x" * 10, "tag key", max_length=10) == "x" * 10
    with pytest.raises(Invalid, match="tag key is at most 10"):
        validate_label("x" * 11, "tag key", max_length=10)
