"""Named queries of bounce reports: keep one, count an address's soft bounces, find the
delivery log a bounce address names, purge (SPEC §3.7); and list, read and count the kept
reports for operators, of one folder (through their delivery logs) or of all."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, func, insert, or_, select

from msgcenter.bounces import KeptReport, ReportFilter, ReportKind, ShownReport
from msgcenter.events.model import Channel
from msgcenter.store.database import delete_some
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
    return delete_some(conn, bounce_report, bounce_report.c.received < before, limit=limit)


def search(
    conn: Connection,
    criteria: ReportFilter,
    *,
    folder: str | None,
    before_id: int | None,
    limit: int,
) -> list[ShownReport]:
    """Up to ``limit`` reports matching ``criteria``, newest (highest id) first, with ids below
    ``before_id``; with ``folder``, only those whose delivery log lies in that folder."""
    query = _shown(folder)
    if criteria.kind is not None:
        query = query.where(bounce_report.c.kind == criteria.kind.value)
    address = (criteria.recipient or "").strip()
    if address:
        # a delivery log's address is kept lower-cased, one a report names as it came
        query = query.where(
            or_(bounce_report.c.recipient == address.lower(), bounce_report.c.recipient == address)
        )
    if criteria.delivery_log_id is not None:
        query = query.where(bounce_report.c.delivery_log_id == criteria.delivery_log_id)
    if criteria.since is not None:
        query = query.where(bounce_report.c.received >= criteria.since)
    if criteria.until is not None:
        query = query.where(bounce_report.c.received < criteria.until)
    if before_id is not None:
        query = query.where(bounce_report.c.id < before_id)
    rows = conn.execute(query.order_by(bounce_report.c.id.desc()).limit(limit)).mappings()
    return [_report(row) for row in rows]


def get(conn: Connection, report_id: int, *, folder: str | None) -> ShownReport | None:
    """One report, or None (also when ``folder`` is given and its delivery log is not in it)."""
    row = conn.execute(_shown(folder).where(bounce_report.c.id == report_id)).mappings().first()
    return None if row is None else _report(row)


def count_by_kind(
    conn: Connection, since: datetime, *, folder: str | None
) -> dict[ReportKind, int]:
    """How many reports of each kind were received since ``since`` (every kind, zeros too)."""
    query = select(bounce_report.c.kind, func.count()).where(bounce_report.c.received >= since)
    if folder is not None:
        query = query.join(
            delivery_log, delivery_log.c.id == bounce_report.c.delivery_log_id
        ).where(delivery_log.c.folder == folder)
    counts = dict.fromkeys(ReportKind, 0)
    for kind, count in conn.execute(query.group_by(bounce_report.c.kind)):
        counts[ReportKind(kind)] = int(count)
    return counts


def _shown(folder: str | None) -> Select[Any]:
    # A report names its message only through its delivery log: one restricted to a folder
    # sees the reports whose log is in it (an inner join drops those naming no log here);
    # an operator of every folder sees all of them, with the log's event when it is here.
    columns = select(bounce_report, delivery_log.c.event_id, delivery_log.c.folder)
    joined = delivery_log.c.id == bounce_report.c.delivery_log_id
    if folder is None:
        return columns.select_from(bounce_report.outerjoin(delivery_log, joined))
    return columns.select_from(bounce_report.join(delivery_log, joined)).where(
        delivery_log.c.folder == folder
    )


def _report(row: Any) -> ShownReport:
    return ShownReport(
        id=row["id"],
        received=row["received"],
        kind=ReportKind(row["kind"]),
        delivery_log_id=row["delivery_log_id"],
        event_id=row["event_id"],
        folder=row["folder"],
        recipient=row["recipient"],
        reason=row["reason"],
        size=row["size"],
    )
