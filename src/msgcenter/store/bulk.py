"""Statements run once for many rows: one fixed SQL text whatever the number of rows.

On PostgreSQL the rows travel as one array per column and come back as a table with
``unnest``, so that a claim of 200 messages is one statement that the driver parses and
the server plans once (after which both keep it prepared). The alternatives cost more
per row: a multi-row ``VALUES`` list is a new, long SQL text for every row count, which
psycopg parses again on every call (it caches statements of at most 50 parameters), and
an ``executemany`` is one statement per row. On SQLite, in-process, ``executemany`` is
what costs least, and the same statements take it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import psycopg
from sqlalchemy import Connection, Executable, Table, bindparam, column, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import TableValuedAlias
from sqlalchemy.types import TypeEngine


class RowColumns:
    """The columns of the rows given to a bulk statement, as it reads them: ``rows.c.<name>``
    (a parameter bound per row on SQLite, a column of the unnested arrays on PostgreSQL)."""

    def __init__(self, columns: dict[str, ColumnElement[Any]]) -> None:
        self.c = _Columns(columns)


class _Columns:
    def __init__(self, columns: dict[str, ColumnElement[Any]]) -> None:
        self._columns = columns

    def __getattr__(self, name: str) -> ColumnElement[Any]:
        try:
            return self._columns[name]
        except KeyError:
            raise AttributeError(name) from None

    def __iter__(self) -> Iterator[ColumnElement[Any]]:
        return iter(self._columns.values())


class BulkStatement:
    """A statement over rows of ``columns`` (name -> type), built by ``build`` from their
    :class:`RowColumns` once per store; :meth:`execute` runs it for tuples in ``columns``'
    order."""

    def __init__(
        self,
        name: str,
        columns: dict[str, TypeEngine[Any]],
        build: Callable[[RowColumns], Executable],
    ) -> None:
        self._params = [array_param(name, c) for c in columns]
        unnested = unnested_arrays(name, columns)
        self._postgresql = build(RowColumns({c: unnested.c[c] for c in columns}))
        self._per_row = build(
            RowColumns(
                {
                    c: bindparam(param, type_=kind)
                    for (c, kind), param in zip(columns.items(), self._params, strict=True)
                }
            )
        )

    def execute(self, conn: Connection, rows: Sequence[tuple[Any, ...]], **shared: Any) -> None:
        """Run the statement for ``rows`` (nothing when there are none); ``shared`` binds
        the parameters that are the same for every row."""
        if not rows:
            return
        if conn.dialect.name == "postgresql":
            arrays = [list(values) for values in zip(*rows, strict=True)]
            conn.execute(self._postgresql, dict(zip(self._params, arrays, strict=True), **shared))
        else:
            conn.execute(
                self._per_row,
                [dict(zip(self._params, row, strict=True), **shared) for row in rows],
            )


class BulkInsert:
    """An INSERT of rows of ``table``'s ``columns`` (``INSERT … SELECT`` on both stores), with
    the ``shared`` columns given once for all rows."""

    def __init__(self, table: Table, columns: Sequence[str], shared: Sequence[str] = ()) -> None:
        self.table = table
        self.names = list(columns)
        self._rows = _insert(table, self.names, list(shared))
        self._rows_with_ids = _insert(table, ["id", *self.names], list(shared))

    def execute(self, conn: Connection, rows: Sequence[tuple[Any, ...]], **shared: Any) -> None:
        """Insert ``rows`` (nothing when there are none), with the ``shared`` values."""
        self._rows.execute(conn, rows, **shared)

    def execute_returning_ids(
        self, conn: Connection, rows: Sequence[tuple[Any, ...]], **shared: Any
    ) -> list[int]:
        """Insert ``rows`` and return their new ids (the table's ``id``), in the rows' order.

        PostgreSQL: the ids come from the table's sequence in one query and are inserted
        with the rows; SQLite: ``INSERT … RETURNING``, sorted in the rows' order.
        """
        if not rows:
            return []
        if conn.dialect.name != "postgresql":
            result = conn.execute(
                insert(self.table).returning(self.table.c.id, sort_by_parameter_order=True),
                [dict(zip(self.names, row, strict=True), **shared) for row in rows],
            )
            return [found[0] for found in result]
        ids = sequence_ids(conn, self.table.name, len(rows))
        self._rows_with_ids.execute(
            conn, [(i, *row) for i, row in zip(ids, rows, strict=True)], **shared
        )
        return ids


def array_param(name: str, column_name: str) -> str:
    """The parameter that holds ``column_name``'s values in :func:`unnested_arrays` ``name``
    (and one row's value in a :class:`BulkStatement` run per row)."""
    return f"{name}_{column_name}"


def unnested_arrays(name: str, columns: dict[str, TypeEngine[Any]]) -> TableValuedAlias:
    """PostgreSQL: the table ``name`` whose columns (name -> type) are read from one array
    parameter each (:func:`array_param`) with ``unnest``: rows of any number in one fixed
    SQL text."""
    return (
        func.unnest(
            *(bindparam(array_param(name, c), type_=ARRAY(kind)) for c, kind in columns.items())
        )
        .table_valued(*(column(c, kind) for c, kind in columns.items()))
        .render_derived(name=name)
    )


def sequence_ids(conn: Connection, table: str, count: int) -> list[int]:
    """PostgreSQL: ``count`` new ids from the sequence of ``table``'s ``id``, in one query, for
    rows inserted with their ids (by COPY or a bulk statement)."""
    driver = cast(psycopg.Connection[Any], conn.connection.driver_connection)
    with driver.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            (table, count),
        )
        return [found[0] for found in cursor.fetchall()]


def _insert(table: Table, columns: list[str], shared: list[str]) -> BulkStatement:
    once = [bindparam(name, type_=table.c[name].type) for name in shared]
    return BulkStatement(
        table.name,
        {c: table.c[c].type for c in columns},
        lambda rows: insert(table).from_select([*columns, *shared], select(*rows.c, *once)),
    )
