"""Named queries of the archived-event search and of one archived event's history (control side).

The search walks ``archived_event`` newest first, by (created, instance id, event
id), from a keyset cursor: a page costs the same however deep it is. Each
filter has an index that leads it (``store/tables.py``): the type and the
creation time, an address, an external id, a status other than sent; sent
events, most of them, come fast from the creation-time index alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, RowMapping, and_, literal_column, or_, select

from msgcenter.archives import (
    ArchivedDeliveryLog,
    ArchivedEvent,
    ArchivedTracking,
    SearchCursor,
)
from msgcenter.deliveries import DeliveryStatus
from msgcenter.events.model import Channel, EventStatus
from msgcenter.store.tables import (
    archived_delivery,
    archived_delivery_log,
    archived_event,
    archived_tracking_log,
)


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """What the searched events must match (None: anything)."""

    event_type: str | None = None
    status: EventStatus | None = None
    #: an email address (with "@"), else a phone number
    address: str | None = None
    external_id: str | None = None
    #: created in [start, end)
    start: datetime | None = None
    end: datetime | None = None
    instance_id: str | None = None
    folder: str | None = None


def search(
    conn: Connection,
    where: SearchFilter,
    after: SearchCursor | None,
    limit: int,
    names: Mapping[str, str],
) -> list[ArchivedEvent]:
    """Up to ``limit`` archived events matching ``where`` after ``after``, newest first;
    ``names`` maps instance ids to the instances' names."""
    e = archived_event.c
    query = select(archived_event)
    if where.event_type is not None:
        query = query.where(e.type == where.event_type)
    if where.status is not None:
        # a constant, not a parameter, so that the planner sees that the partial index of
        # statuses other than sent serves it; SQLite needs its condition spelt out too
        query = query.where(e.status == literal_column(str(int(where.status))))
        if where.status is not EventStatus.SENT:
            query = query.where(e.status != literal_column(str(int(EventStatus.SENT))))
    if where.address is not None:
        column = e.email if "@" in where.address else e.mobile_phone
        query = query.where(column == where.address)
    if where.external_id is not None:
        query = query.where(e.external_id == where.external_id)
    if where.start is not None:
        query = query.where(e.created >= where.start)
    if where.end is not None:
        query = query.where(e.created < where.end)
    if where.instance_id is not None:
        query = query.where(e.instance_id == where.instance_id)
    if where.folder is not None:
        query = query.where(e.folder == where.folder)
    if after is not None:
        created, instance_id, event_id = after
        # spelt out rather than a row comparison so that the index range ends at the cursor
        query = query.where(
            e.created <= created,
            or_(
                e.created < created,
                e.instance_id < instance_id,
                and_(e.instance_id == instance_id, e.event_id < event_id),
            ),
        )
    rows = conn.execute(
        query.order_by(e.created.desc(), e.instance_id.desc(), e.event_id.desc()).limit(limit)
    ).mappings()
    return [_event(row, names) for row in rows]


def event(
    conn: Connection, instance_id: str, event_id: int, names: Mapping[str, str]
) -> ArchivedEvent | None:
    """One archived event, if archived."""
    row = (
        conn.execute(
            select(archived_event).where(
                archived_event.c.instance_id == instance_id, archived_event.c.event_id == event_id
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else _event(row, names)


def delivery_logs(
    conn: Connection, instance_id: str, log_ids: Sequence[int]
) -> list[ArchivedDeliveryLog]:
    """The archived delivery logs of ``log_ids``, oldest first, with their template and week."""
    if not log_ids:
        return []
    log, delivery = archived_delivery_log.c, archived_delivery.c
    rows = conn.execute(
        select(archived_delivery_log, delivery.template, delivery.iso_week)
        .outerjoin(archived_delivery, delivery.id == log.archived_delivery_id)
        .where(log.instance_id == instance_id, log.delivery_log_id.in_(list(log_ids)))
        .order_by(log.created, log.delivery_log_id)
    ).mappings()
    return [
        ArchivedDeliveryLog(
            delivery_log_id=r["delivery_log_id"],
            template=r["template"],
            iso_week=r["iso_week"],
            channel=_channel(r["channel"]),
            address=r["address"],
            status=DeliveryStatus(r["status"]).label,
            failure_type=r["failure_type"],
            failure_reason=r["failure_reason"],
            attempts=r["attempts"],
            created=r["created"],
            last_modified=r["last_modified"],
            sent_at=r["sent_at"],
        )
        for r in rows
    ]


def tracking(conn: Connection, instance_id: str, event_id: int) -> list[ArchivedTracking]:
    """The archived opens and clicks of one event, oldest first."""
    t = archived_tracking_log.c
    rows = conn.execute(
        select(archived_tracking_log)
        .where(t.instance_id == instance_id, t.event_id == event_id)
        .order_by(t.created, t.tracking_log_id)
    ).mappings()
    return [
        ArchivedTracking(
            tracking_log_id=r["tracking_log_id"],
            delivery_log_id=r["delivery_log_id"],
            kind=r["kind"],
            url=r["url"],
            user_agent=r["user_agent"],
            created=r["created"],
        )
        for r in rows
    ]


def _event(row: RowMapping, names: Mapping[str, str]) -> ArchivedEvent:
    return ArchivedEvent(
        instance=names.get(row["instance_id"]),
        instance_id=row["instance_id"],
        event_id=row["event_id"],
        queue=row["queue"],
        type=row["type"],
        status=EventStatus(row["status"]).label,
        channel=_channel(row["wished_channel"]),
        email=row["email"],
        mobile_phone=row["mobile_phone"],
        external_id=row["external_id"],
        folder=row["folder"],
        template=row["template"],
        delivery_log_id=row["delivery_log_id"],
        created=row["created"],
        last_modified=row["last_modified"],
        archived_at=row["archived_at"],
        queued_at=row["queued_at"],
        sent_at=row["sent_at"],
    )


def _channel(code: int) -> str:
    try:
        return Channel(code).label
    except ValueError:
        return str(code)
