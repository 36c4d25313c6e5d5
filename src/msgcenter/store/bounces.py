"""Named queries of bounce reports: keep one, count an address's soft bounces, find the
delivery log a bounce address names, purge (SPEC §3.7)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, func, insert, select

from msgcenter.bounces import KeptReport, ReportKind
from msgcenter.events.model import Channel
from msgcenter.store.tables import bounce_report, delivery_log

#: longest recipient and reason kept (longer ones are cut)
RECIPIENT_CHARS = 255
REASON_CHARS = 1_000


def bounced_log(conn: Connection, delivery_log_id: int) -> tuple[str, Channel] | None:
    """The address and channel of a delivery log, or None when it is not (or no longer) here."""
    row = conn.execute(
        select(delivery_log.c.address, delivery_log.c.channel).where(
            delivery_log.c.id == delivery_log_id
        )
    ).first()
    return None if row is None else (row.address, Channel(row.channel))


def keep(
    conn: Connection,
    *,
    received: datetime,
    kind: ReportKind,
    delivery_log_id: int | None,
    recipient: str | None,
    reason: str,
    size: int,
) -> KeptReport:
    """Keep one report."""
    kept_recipient = recipient[:RECIPIENT_CHARS] if recipient else None
    kept_reason = reason[:REASON_CHARS]
    report_id = conn.execute(
        insert(bounce_report)
        .values(
            received=received,
            kind=kind.value,
            delivery_log_id=delivery_log_id,
            recipient=kept_recipient,
            reason=kept_reason,
            size=size,
        )
        .returning(bounce_report.c.id)
    ).scalar_one()
    return KeptReport(
        id=report_id,
        received=received,
        kind=kind,
        delivery_log_id=delivery_log_id,
        recipient=kept_recipient,
        reason=kept_reason,
        size=size,
    )


def soft_bounces(conn: Connection, recipient: str, since: datetime) -> int:
    """How many soft bounces of ``recipient`` were kept since ``since``."""
    return int(
        conn.execute(
            select(func.count()).where(
                bounce_report.c.recipient == recipient,
                bounce_report.c.kind == ReportKind.SOFT.value,
                bounce_report.c.received >= since,
            )
        ).scalar_one()
    )


def purge(conn: Connection, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` reports received before ``before``."""
    return conn.execute(
        delete(bounce_report).where(
            bounce_report.c.id.in_(
                select(bounce_report.c.id).where(bounce_report.c.received < before).limit(limit)
            )
        )
    ).rowcount
