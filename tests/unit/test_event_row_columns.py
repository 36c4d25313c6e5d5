"""Intake writes every column of a new event, in the order its row tuple gives them."""

from __future__ import annotations

from datetime import UTC, datetime

from msgcenter.events.model import CtxFormat, EnqueueRequest, NewEvent, Queue
from msgcenter.store.events import ROW_COLUMNS, _values
from msgcenter.store.tables import event


def test_a_new_events_row_names_every_column_but_the_id_once():
    assert sorted(ROW_COLUMNS) == sorted(c.name for c in event.columns if c.name != "id")


def test_each_value_lands_in_its_column():
    now = datetime(2026, 12, 7, tzinfo=UTC)
    new = NewEvent(type="order", ctx="{}", ctx_format=CtxFormat.JSON, email="a@example.com")
    new.external_id = "ext-1"
    row = dict(
        zip(ROW_COLUMNS, _values(EnqueueRequest(Queue.BATCH, [new], 7, "f"), new, now), strict=True)
    )
    assert row["queue"] == "batch" and row["type"] == "order" and row["email"] == "a@example.com"
    assert row["external_id"] == "ext-1" and row["ctx_format"] == "json"
    assert row["operator_id"] == 7 and row["folder"] == "f" and row["error_count"] == 0
    assert row["created"] == row["last_modified"] == row["process_requested_on"] == now
