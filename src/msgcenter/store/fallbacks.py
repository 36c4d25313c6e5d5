"""Channel fallback (SPEC §3.7): an event whose message failed for good is queued again, once,
as a new event on the channel its publication names.

Called inside the transaction that records the failure — at once (the outcome writer) or
late (a bounce, an SMS receipt) — so that the failure and its fallback are stored together
or not at all. The new event is a copy of the failed one with another wished channel and
``fallback_of`` pointing back; a unique index on ``fallback_of`` makes a second fallback of
the same event (a retried transaction, another worker) insert nothing. A fallback event does
not fall back again, so two templates falling back to each other cannot loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from msgcenter.events.model import Channel, EventStatus, Queue
from msgcenter.routing import address_for
from msgcenter.store.database import dialect_insert
from msgcenter.store.events import notify_enqueued
from msgcenter.store.tables import event, event_status_change, publication

#: the columns copied from the failed event onto its fallback
COPIED = [
    c.name
    for c in event.columns
    if c.name
    not in {
        "id",
        "status",
        "wished_channel",
        "idempotency_key",
        "idempotency_fingerprint",
        "error_count",
        "process_requested_on",
        "created",
        "last_modified",
        "publication_id",
        "delivery_id",
        "delivery_log_id",
        "fallback_of",
    }
]


def fall_back(conn: Connection, failed: Sequence[tuple[int, int]], now: datetime) -> None:
    """Queue the fallback of each ``(event id, delivery log id)`` whose event is still on that
    delivery log, whose publication names a fallback channel, that is no fallback itself and
    has an address on that channel; the failed event's timeline says what became of it (its
    final status, already recorded, is repeated in that step)."""
    logs = dict(failed)
    rows = conn.execute(
        select(event, publication.c.fallback_channel.label("fallback_to"))
        .join(publication, publication.c.id == event.c.publication_id)
        .where(
            event.c.id.in_(sorted(logs)),
            event.c.fallback_of.is_(None),
            publication.c.fallback_channel.isnot(None),
        )
        .order_by(event.c.id)
    ).mappings()
    queues: set[Queue] = set()
    for row in list(rows):
        if row["delivery_log_id"] != logs[row["id"]]:
            continue  # the event moved on to another message since
        channel = Channel(row["fallback_to"])
        if not address_for(row, channel):
            _step(conn, row, now, f"no fallback: no address for {channel.label}")
            continue
        new_id = _insert(conn, row, channel, now)
        if new_id is None:
            continue  # it fell back already
        queues.add(Queue(row["queue"]))
        _step(conn, row, now, f"fallback: queued again on {channel.label} as event {new_id}")
    notify_enqueued(conn, queues)


def _insert(conn: Connection, failed: Any, channel: Channel, now: datetime) -> int | None:
    """Insert the fallback event of ``failed``; its id, or None if it exists already."""
    values = {name: failed[name] for name in COPIED}
    values.update(
        status=int(EventStatus.PENDING),
        wished_channel=int(channel),
        error_count=0,
        process_requested_on=now,
        created=now,
        last_modified=now,
        fallback_of=failed["id"],
    )
    found = conn.execute(
        dialect_insert(conn, event)
        .values(values)
        .on_conflict_do_nothing(
            index_elements=["fallback_of"], index_where=event.c.fallback_of.isnot(None)
        )
        .returning(event.c.id)
    ).first()
    return None if found is None else int(found[0])


def _step(conn: Connection, failed: Any, at: datetime, reason: str) -> None:
    """A step of the failed event's timeline, at its (final) status."""
    conn.execute(
        insert(event_status_change).values(
            event_id=failed["id"], status=failed["status"], at=at, reason=reason
        )
    )
