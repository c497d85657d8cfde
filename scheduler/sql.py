"""Conditions whose SQL is the same at every execution, so a statement built once with them
runs without SQLAlchemy rendering anything again.

`column.in_(bindparam(..., expanding=True))` and `column.in_(("a", "b"))` are "expanding": the
compiled SQL holds a placeholder that SQLAlchemy rewrites on every execution into one
parameter per value (`_process_parameters_for_postcompile`: a regular expression over the
whole statement, new parameter names, and on PostgreSQL a statement text asyncpg has not
prepared before whenever the list length changes). On the booking path that was about a
twentieth of a confirmation's CPU. Here a list of values is one array parameter on
PostgreSQL (`= ANY($1::UUID[])`, one prepared statement whatever the length) and stays an
expanding IN on SQLite, which has no arrays; a fixed set of our own constants (statuses) is
written into the SQL itself, which also lets PostgreSQL match partial indexes' predicates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Boolean, ColumnElement, Uuid, any_, bindparam, literal_column
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.type_api import TypeEngine
from sqlalchemy.sql.visitors import InternalTraversal

__all__ = ["among", "any_of"]

_WORD = re.compile(r"[A-Za-z0-9_]+")
_Column = ColumnElement[Any] | QueryableAttribute[Any]


class _AnyOf(ColumnElement[bool]):
    """`column = ANY(:name)` on PostgreSQL, `column IN (:name…)` elsewhere."""

    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True  # a condition: SQLite must not compare it with 1
    _traverse_internals = [  # noqa: RUF012 (SQLAlchemy's own declaration style)
        ("_array", InternalTraversal.dp_clauseelement),
        ("_expanding", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: _Column, name: str, item_type: TypeEngine[Any]):
        self._array = column == any_(bindparam(name, type_=ARRAY(item_type)))
        self._expanding = column.in_(bindparam(name, expanding=True))


@compiles(_AnyOf)
def _compile_expanding(element: _AnyOf, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element._expanding, **kw)


@compiles(_AnyOf, "postgresql")
def _compile_array(element: _AnyOf, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element._array, **kw)


def any_of(
    column: _Column, name: str, item_type: TypeEngine[Any] | None = None
) -> ColumnElement[bool]:
    """`column` is one of the list passed as parameter `name` (ids: `item_type` Uuid)."""
    return _AnyOf(column, name, item_type if item_type is not None else Uuid())


def among(column: _Column, values: Iterable[str]) -> ColumnElement[bool]:
    """`column IN ('a', 'b')` with the values written into the SQL: only for our own
    constants (plain words, checked), never for anything a request brings."""
    words = list(values)
    for word in words:
        if not _WORD.fullmatch(word):
            raise ValueError(f"not a plain constant: {word!r}")
    return column.in_([literal_column(f"'{word}'") for word in words])
