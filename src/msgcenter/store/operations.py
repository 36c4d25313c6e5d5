"""Named queries of an execution instance's operations: queue sizes, recent throughput (from
the statsSampler's samples), and the quarantine."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnClause, Connection, func, literal_column, select, update

from msgcenter.deliveries import QuarantineEntry
from msgcenter.errors import NotFoundError
from msgcenter.events.model import Channel, Queue
from msgcenter.queues import QueueSize, Throughput
from msgcenter.store.tables import delivery_log, event, quarantine, stats_sample

PENDING: ColumnClause[Any] = literal_column("0")
#: delivery-log statuses waiting for a sender: pending (due) and sending
WAITING: list[ColumnClause[Any]] = [literal_column("0"), literal_column("4")]


def queue_sizes(conn: Connection) -> list[QueueSize]:
    """Each queue now (pending events through the claim index, waiting messages)."""
    sizes = []
    for queue in Queue:
        pending, oldest = conn.execute(
            select(func.count(), func.min(event.c.process_requested_on)).where(
                event.c.queue == queue.value, event.c.status == PENDING
            )
        ).one()
        messages = conn.execute(
            select(func.count()).where(
                delivery_log.c.queue == queue.value, delivery_log.c.status.in_(WAITING)
            )
        ).scalar_one()
        sizes.append(QueueSize(queue.value, pending, messages, oldest))
    return sizes


def sampled_queue_sizes(conn: Connection) -> dict[str, tuple[int, int]]:
    """Pending events and waiting messages of each queue, as its newest sample says (one
    indexed read: no count over the event table)."""
    sizes = {}
    for queue in Queue:
        newest = conn.execute(
            select(stats_sample.c.pending_events, stats_sample.c.pending_messages)
            .where(stats_sample.c.queue == queue.value)
            .order_by(stats_sample.c.at.desc())
            .limit(1)
        ).first()
        if newest is not None:
            sizes[queue.value] = (newest[0], newest[1])
    return sizes


def throughput(conn: Connection, since: datetime, now: datetime) -> Throughput:
    """Events received and messages sent and failed since ``since``, from the samples."""
    received, sent, failed = conn.execute(
        select(
            func.coalesce(func.sum(stats_sample.c.events_received), 0),
            func.coalesce(func.sum(stats_sample.c.messages_sent), 0),
            func.coalesce(func.sum(stats_sample.c.messages_failed), 0),
        ).where(stats_sample.c.at > since)
    ).one()
    return Throughput((now - since).total_seconds(), int(received), int(sent), int(failed))


def quarantined(
    conn: Connection, *, address: str | None, active_only: bool, limit: int
) -> list[QuarantineEntry]:
    """Quarantine entries, newest change first (of one address when given)."""
    query = select(quarantine).order_by(quarantine.c.last_modified.desc(), quarantine.c.id.desc())
    if address:
        query = query.where(quarantine.c.address == address.strip().lower())
    if active_only:
        query = query.where(quarantine.c.active.is_(True))
    return [
        QuarantineEntry(
            id=row["id"],
            address=row["address"],
            channel=Channel(row["channel"]),
            reason=row["reason"],
            failure_type=row["failure_type"],
            active=row["active"],
            created=row["created"],
            last_modified=row["last_modified"],
        )
        for row in conn.execute(query.limit(limit)).mappings()
    ]


def release(conn: Connection, entry_id: int, now: datetime) -> str:
    """Take an address out of the quarantine (its row stays, inactive, for the archive);
    returns the address."""
    address = conn.execute(
        update(quarantine)
        .where(quarantine.c.id == entry_id)
        .values(active=False, last_modified=now)
        .returning(quarantine.c.address)
    ).scalar_one_or_none()
    if address is None:
        raise NotFoundError(f"no quarantine entry {entry_id}")
    return str(address)
