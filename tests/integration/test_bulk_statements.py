"""Bulk statements write many rows with one fixed SQL text, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import SmallInteger, Text, bindparam, event, select, update

from msgcenter.store.bulk import BulkInsert, BulkStatement
from msgcenter.store.database import Database
from msgcenter.store.tables import event_status_change
from msgcenter.store.types import UtcDateTime

NOW = datetime(2026, 12, 7, 16, 0, tzinfo=UTC)

HISTORY = BulkInsert(event_status_change, ["event_id", "status", "at", "reason"])
#: a new status and reason per step, one time for all
RESTATE = BulkStatement(
    "restate",
    {"id": event_status_change.c.id.type, "status": SmallInteger(), "reason": Text()},
    lambda rows: (
        update(event_status_change)
        .where(event_status_change.c.id == rows.c.id)
        .values(status=rows.c.status, reason=rows.c.reason, at=bindparam("at", type_=UtcDateTime()))
    ),
)

Step = tuple[int, int, datetime, "str | None"]


def _steps(db: Database) -> dict[int, Step]:
    with db.read() as conn:
        rows = conn.execute(
            select(
                event_status_change.c.id,
                event_status_change.c.event_id,
                event_status_change.c.status,
                event_status_change.c.at,
                event_status_change.c.reason,
            )
        )
        return {r.id: (r.event_id, r.status, r.at, r.reason) for r in rows}


def _rows(count: int) -> list[Step]:
    return [
        (1000 + i, i % 7, NOW + timedelta(seconds=i), None if i % 3 else f"r{i}")
        for i in range(count)
    ]


@contextmanager
def _statements(db: Database) -> Iterator[list[tuple[str, Any]]]:
    """The SQL texts sent to the database, with their parameters, while inside."""
    sent: list[tuple[str, Any]] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def test_inserted_rows_get_their_ids_in_the_rows_order(db: Database) -> None:
    rows = _rows(250)
    with db.write() as conn:
        ids = HISTORY.execute_returning_ids(conn, rows)
        assert HISTORY.execute_returning_ids(conn, []) == []
    assert len(set(ids)) == 250
    stored = _steps(db)
    assert [stored[i] for i in ids] == rows


def test_shared_columns_are_given_once_for_all_rows(db: Database) -> None:
    steps = BulkInsert(event_status_change, ["event_id", "status"], ["at", "reason"])
    with db.write() as conn:
        ids = steps.execute_returning_ids(conn, [(1, 2), (3, 4)], at=NOW, reason="same")
        steps.execute(conn, [(5, 6)], at=NOW, reason=None)
    stored = _steps(db)
    assert [stored[i] for i in ids] == [(1, 2, NOW, "same"), (3, 4, NOW, "same")]
    assert sorted(stored.values())[-1] == (5, 6, NOW, None)


def test_a_column_of_nulls_only_is_written(db: Database) -> None:
    with db.write() as conn:
        HISTORY.execute(conn, [(5, 1, NOW, None), (6, 2, NOW, None)])
    assert sorted(_steps(db).values()) == [(5, 1, NOW, None), (6, 2, NOW, None)]


def test_an_update_changes_the_rows_named_with_each_ones_values(db: Database) -> None:
    with db.write() as conn:
        ids = HISTORY.execute_returning_ids(conn, _rows(10))
    later = NOW + timedelta(hours=1)
    with db.write() as conn:
        RESTATE.execute(conn, [(ids[2], 9, "two"), (ids[7], 8, None)], at=later)
        RESTATE.execute(conn, [], at=later)
    stored = _steps(db)
    assert stored[ids[2]] == (1002, 9, later, "two")
    assert stored[ids[7]] == (1007, 8, later, None)
    unchanged = [stored[i] for i in ids if i not in (ids[2], ids[7])]
    assert unchanged == [row for n, row in enumerate(_rows(10)) if n not in (2, 7)]


def test_the_sql_text_does_not_depend_on_the_number_of_rows(db: Database) -> None:
    texts = []
    for count in (1, 3, 120):
        with db.write() as conn, _statements(db) as sent:
            HISTORY.execute(conn, _rows(count))
        texts.append([statement for statement, _ in sent])
        if db.dialect == "postgresql":
            # one statement with an array per column
            assert len(sent) == 1 and len(sent[0][1]) == 4
            assert [len(values) for values in sent[0][1].values()] == [count] * 4
    assert texts[0] and texts[0] == texts[1] == texts[2]
