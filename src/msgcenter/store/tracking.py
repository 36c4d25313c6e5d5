"""Named queries of tracking logs on the execution instance: record an open or a click, purge;
and what a sent message was made of, for its mirror page."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, literal, select

from msgcenter.deliveries import DeliveryStatus
from msgcenter.events.model import TEMPLATE_EVENT_FIELDS
from msgcenter.store.database import delete_some
from msgcenter.store.processing import EVENT_COLUMNS
from msgcenter.store.tables import delivery_log, event, tracking_log
from msgcenter.tracking import SentMessage, TrackingKind

#: delivery-log statuses of a message that left (a bounced one did leave)
SENT_STATUSES = frozenset(
    {int(DeliveryStatus.SENT), int(DeliveryStatus.DELIVERED), int(DeliveryStatus.FAILED)}
)

#: longest user agent kept (longer ones are cut)
USER_AGENT_CHARS = 512


def record(
    conn: Connection,
    kind: TrackingKind,
    delivery_log_id: int,
    url: str | None,
    user_agent: str | None,
    now: datetime,
) -> bool:
    """Add one tracking log for ``delivery_log_id``, in one statement; False when that delivery
    log is not (or no longer) here."""
    source = select(
        delivery_log.c.id,
        delivery_log.c.event_id,
        delivery_log.c.folder,
        literal(str(kind)),
        literal(url),
        literal(user_agent[:USER_AGENT_CHARS] if user_agent else None),
        literal(now, tracking_log.c.created.type),
    ).where(delivery_log.c.id == delivery_log_id)
    # RETURNING, not the row count: psycopg reports none (-1) for an INSERT
    inserted = conn.execute(
        tracking_log.insert()
        .from_select(
            ["delivery_log_id", "event_id", "folder", "kind", "url", "user_agent", "created"],
            source,
        )
        .returning(tracking_log.c.id)
    )
    return inserted.first() is not None


def purge(conn: Connection, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` tracking logs recorded before ``before``."""
    return delete_some(conn, tracking_log, tracking_log.c.created < before, limit=limit)


def sent_message(conn: Connection, delivery_log_id: int) -> SentMessage | None:
    """What a delivery log's message was made of — its publication, its event's fields and
    ctx — for its mirror page; None once its delivery log or event is purged, or for a
    message that was never sent."""
    row = (
        conn.execute(
            select(delivery_log.c.publication_id, delivery_log.c.status, *EVENT_COLUMNS)
            .join(event, event.c.id == delivery_log.c.event_id)
            .where(delivery_log.c.id == delivery_log_id)
        )
        .mappings()
        .first()
    )
    if row is None or row["status"] not in SENT_STATUSES:
        return None
    return SentMessage(
        publication_id=row["publication_id"],
        event={name: row[name] for name in TEMPLATE_EVENT_FIELDS},
        ctx=row["ctx"],
        ctx_format=row["ctx_format"],
    )
