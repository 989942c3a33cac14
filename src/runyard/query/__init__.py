"""The run query language: one parser behind ``--where``/``--order-by``, ``where=`` of the
API and the UI, and ``Yard.list_runs(where=...)``.

``parse_where`` and ``parse_order_by`` turn text into the small tree of ``ast``; the
registry compiles that tree to SQL (``runyard.registry.run_query``) and ``evaluate``
answers the same question in Python, which the tests hold the SQL to. docs/query.md is
the user's guide.
"""

from __future__ import annotations

from runyard.query.ast import Compare, Condition, Field, OrderKey, Query
from runyard.query.parser import QueryError, parse_order_by, parse_query, parse_where

__all__ = [
    "Compare",
    "Condition",
    "Field",
    "OrderKey",
    "Query",
    "QueryError",
    "parse_order_by",
    "parse_query",
    "parse_where",
]
