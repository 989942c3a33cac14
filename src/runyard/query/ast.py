"""What a parsed query is: fields, conditions and order keys (plain frozen dataclasses).

Semantics, the same in SQL and in ``evaluate``: a comparison with a value the run does
not have (a missing KPI, tag, param or config path, a run without a group or not yet
finished) is false, never an error and never zero; ``not`` negates the whole condition
after it, so ``not kpi.x > 1`` holds for runs without ``x``; ``is null`` holds exactly
when the value is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

FieldKind = Literal["kpi", "param", "tag", "config", "attr"]
ValueType = Literal["number", "text", "bool", "time", "any"]
Literal_ = float | str | bool | datetime


@dataclass(frozen=True)
class Field:
    """A field of a run: ``kind`` with ``name`` (``kpi``/``fill_rate``, ``attr``/``status``)."""

    kind: FieldKind
    name: str

    @property
    def text(self) -> str:
        return self.name if self.kind == "attr" else f"{self.kind}.{self.name}"


@dataclass(frozen=True)
class Compare:
    """``field op value``; ``values`` for ``in``/``not in``; none for ``is [not] null``."""

    field: Field
    op: str  # = != < <= > >= in "not in" like "not like" "is null" "is not null"
    values: tuple[Literal_, ...] = ()


@dataclass(frozen=True)
class And:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


Condition = Compare | And | Or | Not


@dataclass(frozen=True)
class OrderKey:
    field: Field
    descending: bool = False

    @property
    def text(self) -> str:
        return f"{self.field.text} {'desc' if self.descending else 'asc'}"


@dataclass(frozen=True)
class Query:
    """A whole query: the condition (None: every run) and the order (empty: newest first)."""

    where: Condition | None = None
    order_by: tuple[OrderKey, ...] = ()
    where_text: str = ""


def fields_of(query: Query) -> list[Field]:
    """Every field ``query`` names, in the order written: the condition's, then the
    order's (each once)."""
    found: list[Field] = []
    stack: list[Condition] = [query.where] if query.where is not None else []
    while stack:
        cond = stack.pop()
        if isinstance(cond, Compare):
            found.append(cond.field)
        elif isinstance(cond, And | Or):
            stack.extend(reversed(cond.items))
        elif isinstance(cond, Not):
            stack.append(cond.item)
    found += [k.field for k in query.order_by]
    return list(dict.fromkeys(found))
