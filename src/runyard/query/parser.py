"""Text → query tree: a tokenizer and a recursive-descent parser with errors that say
where (``at column 14: expected a value after '>'``) and what was expected.

Grammar (keywords in any case)::

    condition  := term ("or" term)*
    term       := factor ("and" factor)*
    factor     := "not" factor | "(" condition ")" | comparison
    comparison := FIELD op value
                | FIELD ["not"] "in" "(" value ("," value)* ")"
                | FIELD ["not"] "like" STRING
                | FIELD "is" ["not"] "null"
    op         := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    value      := 'text' | "text" | NUMBER | ISO-DATE[THH:MM[:SS][Z|±HH:MM]] | true | false
    order      := FIELD ["asc" | "desc"] ("," FIELD ["asc" | "desc"])*

Fields are ``kpi.NAME``, ``param.NAME``, ``tag.NAME``, ``config.PATH`` or a run attribute
(``ATTRIBUTES``); MLflow's ``metrics.``, ``params.``, ``tags.`` and ``attributes.`` are
accepted as aliases. A name with other characters is quoted: ``kpi.`fill rate```.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from runyard.errors import Invalid
from runyard.models import RunLocation, RunStatus
from runyard.query.ast import (
    And,
    Compare,
    Condition,
    Field,
    FieldKind,
    Literal_,
    Not,
    Or,
    OrderKey,
    Query,
    ValueType,
)

MAX_QUERY_CHARS = 10_000
MAX_DEPTH = 64  # nesting of parentheses and not: the JSON depth limit, for the same reason
MAX_IN_VALUES = 1000

ATTRIBUTES: dict[str, ValueType] = {
    "status": "text",
    "group": "text",
    "location": "text",
    "legacy": "bool",
    "pinned": "bool",
    "plan": "text",
    "plan_label": "text",
    "scenario": "text",
    "config": "text",
    "run_id": "text",
    "started_at": "time",
    "finished_at": "time",
    "duration": "number",
}
"""The run's own fields and the type of their values (duration in seconds)."""

ATTRIBUTE_ALIASES = {
    "plan_version_id": "plan",
    "config_version_id": "config",
    "scenario_id": "scenario",
    "group_name": "group",
    "start_time": "started_at",
    "end_time": "finished_at",
}
PREFIXES: dict[str, FieldKind] = {
    "kpi": "kpi",
    "kpis": "kpi",
    "metric": "kpi",
    "metrics": "kpi",
    "param": "param",
    "params": "param",
    "tag": "tag",
    "tags": "tag",
    "config": "config",
    "attribute": "attr",
    "attributes": "attr",
}
KIND_TYPES: dict[FieldKind, ValueType] = {
    "kpi": "number",
    "tag": "text",
    "param": "any",
    "config": "any",
    "attr": "any",
}
ENUMS: dict[str, tuple[str, ...]] = {
    "status": tuple(s.value for s in RunStatus),
    "location": tuple(loc.value for loc in RunLocation),
}
COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")
_OP_SPELLINGS = {"==": "=", "<>": "!="}
KEYWORDS = frozenset({"and", "or", "not", "in", "like", "is", "null", "true", "false"})
OPERATOR_HELP = "=, !=, <, <=, >, >=, in (…), not in (…), like, is null, is not null"


class QueryError(Invalid):
    """A query that cannot be parsed or does not make sense (exit 5, HTTP 422)."""

    code = "invalid_query"


@dataclass(frozen=True)
class Token:
    kind: str  # name string number time op ( ) , keyword end
    value: str
    column: int  # 1-based
    parts: tuple[str, ...] = ()  # a name's dot-separated segments, unquoted


_SPACE = re.compile(r"\s+")
_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?)?"
    r"(?![\w.:-])"
)
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])")
_FIRST_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_OPERATOR = re.compile(r"==|!=|<>|<=|>=|=|<|>")


def _fail(column: int, message: str, hint: str | None = None) -> QueryError:
    return QueryError(f"at column {column}: {message}", hint=hint)


def _quoted(text: str, start: int, quote: str, what: str) -> tuple[str, int]:
    """The text of a quoted string at ``start`` (a doubled quote stands for itself) and
    the position after it."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == quote:
            if i + 1 < len(text) and text[i + 1] == quote:
                out.append(quote)
                i += 2
                continue
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise _fail(start + 1, f"{what} starting here is never closed (add a closing {quote})")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        space = _SPACE.match(text, i)
        if space:
            i = space.end()
            continue
        ch, col = text[i], i + 1
        if ch in "(),":
            tokens.append(Token(ch, ch, col))
            i += 1
        elif ch in "'\"":
            value, i = _quoted(text, i, ch, "the string")
            tokens.append(Token("string", value, col))
        elif op := _OPERATOR.match(text, i):
            tokens.append(Token("op", _OP_SPELLINGS.get(op.group(), op.group()), col))
            i = op.end()
        elif (when := _TIME.match(text, i)) and "-" in when.group():
            tokens.append(Token("time", when.group(), col))
            i = when.end()
        elif number := _NUMBER.match(text, i):
            tokens.append(Token("number", number.group(), col))
            i = number.end()
        elif first := _FIRST_SEGMENT.match(text, i):
            i = first.end()
            parts = [first.group()]
            while i < len(text) and text[i] == "." and i + 1 < len(text):
                nxt = text[i + 1]
                if nxt in '`"':
                    segment, i = _quoted(text, i + 1, nxt, "the quoted name")
                elif seg := _SEGMENT.match(text, i + 1):
                    segment, i = seg.group(), seg.end()
                else:
                    raise _fail(i + 2, f"expected a name after '{''.join(text[col - 1 : i + 1])}'")
                parts.append(segment)
            raw = text[col - 1 : i]
            if len(parts) == 1 and raw.lower() in KEYWORDS:
                tokens.append(Token("keyword", raw.lower(), col))
            else:
                tokens.append(Token("name", raw, col, tuple(parts)))
        elif ch == "`":
            raise _fail(col, "a quoted name needs its prefix, like kpi.`fill rate`")
        else:
            raise _fail(col, f"unexpected character {ch!r}")
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


def _describe(token: Token) -> str:
    if token.kind == "end":
        return "the end of the query"
    if token.kind == "string":
        return f"the string '{token.value[:40]}'"
    return f"'{token.value[:40]}'"


def resolve_field(token: Token) -> Field:
    """The field a name token names; an unknown one is an error naming the closest."""
    parts = token.parts
    first = parts[0].lower()
    if len(parts) == 1:
        name = ATTRIBUTE_ALIASES.get(first, first)
        if name in ATTRIBUTES:
            return Field("attr", name)
        return _unknown(token, token.value)
    kind = PREFIXES.get(first)
    if kind is None:
        return _unknown(token, token.value)
    rest = ".".join(parts[1:])
    if kind == "attr":
        name = ATTRIBUTE_ALIASES.get(rest.lower(), rest.lower())
        if name in ATTRIBUTES:
            return Field("attr", name)
        return _unknown(token, rest)
    return Field(kind, rest)


def _unknown(token: Token, name: str) -> Field:
    known = [*ATTRIBUTES, *ATTRIBUTE_ALIASES, "kpi.", "param.", "tag.", "config."]
    close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6)
    fields = ", ".join(ATTRIBUTES)
    raise _fail(
        token.column,
        f"unknown field {name!r}"
        + (f" (did you mean {close[0]!r}?)" if close else "")
        + f"; use kpi.NAME, param.NAME, tag.NAME, config.PATH or one of: {fields}",
    )


def field_type(field: Field) -> ValueType:
    return ATTRIBUTES[field.name] if field.kind == "attr" else KIND_TYPES[field.kind]


def parse_time(text: str, column: int) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _fail(
            column, f"'{text[:40]}' is not a date and time (write 2026-12-01 or 2026-12-01T10:30)"
        ) from None
    if value.tzinfo is not None:
        try:
            value = value.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise _fail(column, f"'{text[:40]}' falls outside the years 1 to 9999 in UTC") from None
    return value


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.depth = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def at_keyword(self, *words: str) -> bool:
        return self.token.kind == "keyword" and self.token.value in words

    def expect(self, kind: str, what: str, after: Token | None = None) -> Token:
        if self.token.kind != kind:
            where = f" after {_describe(after)}" if after is not None else ""
            raise _fail(self.token.column, f"expected {what}{where}, found {_describe(self.token)}")
        return self.take()

    def condition(self) -> Condition:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _fail(self.token.column, f"nested deeper than {MAX_DEPTH} levels")
        items = [self.term()]
        while self.at_keyword("or"):
            self.take()
            items.append(self.term())
        self.depth -= 1
        return items[0] if len(items) == 1 else Or(tuple(items))

    def term(self) -> Condition:
        items = [self.factor()]
        while self.at_keyword("and"):
            self.take()
            items.append(self.factor())
        return items[0] if len(items) == 1 else And(tuple(items))

    def factor(self) -> Condition:
        if self.at_keyword("not"):
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise _fail(self.token.column, f"nested deeper than {MAX_DEPTH} levels")
            inner = self.factor()
            self.depth -= 1
            return Not(inner)
        if self.token.kind == "(":
            opening = self.take()
            inner = self.condition()
            if self.token.kind != ")":
                raise _fail(
                    self.token.column,
                    f"expected ')' to close the '(' at column {opening.column}, "
                    f"found {_describe(self.token)}",
                )
            self.take()
            return inner
        return self.comparison()

    def comparison(self) -> Compare:
        if self.token.kind != "name":
            raise _fail(
                self.token.column,
                "expected a field such as kpi.fill_rate, tag.owner or status, "
                f"found {_describe(self.token)}",
            )
        name_token = self.take()
        field = resolve_field(name_token)
        kind = field_type(field)
        token = self.token
        if token.kind == "op":
            self.take()
            value = self.value(field, kind, token)
            return Compare(field, token.value, (value,))
        negated = False
        if self.at_keyword("not"):
            negated = True
            self.take()
            if not self.at_keyword("in", "like"):
                raise _fail(
                    self.token.column,
                    f"expected 'in' or 'like' after 'not', found {_describe(self.token)}",
                )
        if self.at_keyword("in"):
            in_token = self.take()
            self.expect("(", "'(' and a list of values", in_token)
            values = [self.value(field, kind, in_token)]
            while self.token.kind == ",":
                comma = self.take()
                values.append(self.value(field, kind, comma))
                if len(values) > MAX_IN_VALUES:
                    raise _fail(comma.column, f"more than {MAX_IN_VALUES} values in one in (…)")
            if self.token.kind != ")":
                raise _fail(
                    self.token.column,
                    f"expected ',' or ')' in the list of values, found {_describe(self.token)}",
                )
            self.take()
            return Compare(field, "not in" if negated else "in", tuple(values))
        if self.at_keyword("like"):
            like = self.take()
            if kind not in ("text", "any"):
                raise _fail(like.column, f"{field.text} holds {_plural(kind)}; like is for text")
            pattern = self.expect("string", "a quoted pattern such as 'base%'", like)
            return Compare(field, "not like" if negated else "like", (pattern.value,))
        if self.at_keyword("is"):
            self.take()
            op = "is null"
            if self.at_keyword("not"):
                self.take()
                op = "is not null"
            if not self.at_keyword("null"):
                raise _fail(self.token.column, f"expected 'null', found {_describe(self.token)}")
            self.take()
            return Compare(field, op, ())
        raise _fail(
            token.column,
            f"expected an operator after '{name_token.value[:40]}' ({OPERATOR_HELP}), "
            f"found {_describe(token)}",
        )

    def value(self, field: Field, kind: ValueType, after: Token) -> Literal_:
        token = self.token
        shown = f"'{after.value}'" if after.kind in ("op", ",") else _describe(after)
        if token.kind in ("end", ")", ",", "op") or (
            token.kind == "keyword" and token.value not in ("true", "false")
        ):
            raise _fail(token.column, f"expected a value after {shown}, found {_describe(token)}")
        if token.kind == "name":
            raise _fail(
                token.column,
                f"expected a value after {shown}, found the name '{token.value[:40]}'",
                hint=f"quote text values: '{token.value[:40]}'",
            )
        self.take()
        if after.kind == "op" and after.value not in ("=", "!=") and kind == "bool":
            raise _fail(after.column, f"{field.text} is true or false: compare it with = or !=")
        if kind == "number":
            if token.kind != "number":
                raise _fail(token.column, f"{field.text} holds numbers; compare it with a number")
            return _number(token)
        if kind == "bool":
            if token.kind != "keyword":
                raise _fail(token.column, f"{field.text} is true or false")
            return token.value == "true"
        if kind == "time":
            if token.kind not in ("time", "string"):
                raise _fail(
                    token.column,
                    f"{field.text} is a time; compare it with a date such as 2026-12-01",
                )
            return parse_time(token.value, token.column)
        if kind == "text":
            if token.kind != "string":
                raise _fail(
                    token.column,
                    f"{field.text} holds text; quote the value ('{token.value[:40]}')",
                )
            allowed = ENUMS.get(field.name) if field.kind == "attr" else None
            if allowed is not None and token.value not in allowed:
                close = difflib.get_close_matches(token.value, allowed, n=1)
                guess = f" (did you mean '{close[0]}'?)" if close else ""
                raise _fail(
                    token.column,
                    f"{field.text} is never '{token.value[:40]}'{guess}; "
                    f"it is one of: {', '.join(allowed)}",
                )
            return token.value
        # param. and config.: numbers, text, and true/false (stored as 1 and 0)
        if token.kind == "number":
            return _number(token)
        if token.kind == "keyword":
            return 1.0 if token.value == "true" else 0.0
        if token.kind == "time":
            return token.value  # a date in a config is text
        return token.value


def _plural(kind: ValueType) -> str:
    return {"number": "numbers", "bool": "true or false", "time": "times"}.get(kind, "values")


def _number(token: Token) -> float:
    value = float(token.value)
    if value != value or value in (float("inf"), float("-inf")):
        raise _fail(token.column, f"{token.value[:40]} is beyond what a number can hold")
    return value


def parse_where(text: str | None) -> Condition | None:
    """The condition of ``text`` (None for an empty query)."""
    if text is None or not text.strip():
        return None
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"the query is longer than {MAX_QUERY_CHARS} characters")
    if "\x00" in text:
        raise QueryError("the query holds a NUL character")
    parser = _Parser(text)
    condition = parser.condition()
    if parser.token.kind != "end":
        extra = parser.token
        raise _fail(
            extra.column,
            f"unexpected {_describe(extra)} after a complete condition; "
            "join conditions with 'and' or 'or'",
        )
    return condition


def parse_order_by(items: Sequence[str] | str | None) -> tuple[OrderKey, ...]:
    """Order keys from ``--order-by`` values (each ``field [asc|desc]``, or several joined
    with commas)."""
    if items is None:
        return ()
    if isinstance(items, str):
        items = [items]
    keys: list[OrderKey] = []
    for item in items:
        if len(item) > MAX_QUERY_CHARS or "\x00" in item:
            raise QueryError("an order-by value is too long or holds a NUL character")
        tokens = tokenize(item)
        pos = 0
        while tokens[pos].kind != "end":
            token = tokens[pos]
            if token.kind != "name":
                raise QueryError(
                    f"order by, at column {token.column}: expected a field such as "
                    f"kpi.fill_rate or started_at, found {_describe(token)}"
                )
            field = resolve_field(token)
            pos += 1
            descending = False
            nxt = tokens[pos]
            if nxt.kind == "name" and nxt.value.lower() in ("asc", "desc"):
                descending = nxt.value.lower() == "desc"
                pos += 1
            if any(k.field == field for k in keys):
                raise QueryError(f"order by names {field.text} twice")
            keys.append(OrderKey(field, descending))
            if tokens[pos].kind == ",":
                pos += 1
                if tokens[pos].kind == "end":
                    raise QueryError(f"order by, at column {tokens[pos].column}: expected a field")
            elif tokens[pos].kind != "end":
                bad = tokens[pos]
                raise QueryError(
                    f"order by, at column {bad.column}: expected asc, desc or ',' after "
                    f"{field.text}, found {_describe(bad)}"
                )
    if len(keys) > 8:
        raise QueryError("order by takes at most 8 fields")
    return tuple(keys)


def parse_query(where: str | None, order_by: Sequence[str] | str | None = None) -> Query:
    return Query(
        where=parse_where(where), order_by=parse_order_by(order_by), where_text=where or ""
    )
