"""Named queries on one-click opt-outs: who left which template's stream (RFC 8058)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from msgcenter.events.model import Channel
from msgcenter.store.database import insert_or_ignore
from msgcenter.store.tables import delivery, delivery_log, unsubscription

#: (lower-cased address, channel, template, folder or "") of an opt-out
Stream = tuple[str, int, str, str]


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """An address that left a template's stream, and whether it is new."""

    address: str
    channel: Channel
    template: str
    folder: str | None
    new: bool


def record(conn: Connection, delivery_log_id: int, now: datetime) -> Unsubscribed | None:
    """Record that the recipient of ``delivery_log_id`` left its template's stream; None when
    the delivery log is unknown (never written, or purged)."""
    row = (
        conn.execute(
            select(
                delivery_log.c.address,
                delivery_log.c.channel,
                delivery.c.folder,
                delivery.c.template,
            )
            .join(delivery, delivery.c.id == delivery_log.c.delivery_id)
            .where(delivery_log.c.id == delivery_log_id)
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    address = row["address"].lower()
    new = insert_or_ignore(
        conn,
        unsubscription,
        {
            "address": address,
            "channel": row["channel"],
            "template": row["template"],
            "folder": row["folder"] or "",
            "delivery_log_id": delivery_log_id,
            "created": now,
        },
        ["address", "channel", "template", "folder"],
    )
    folder = row["folder"] or None
    return Unsubscribed(address, Channel(row["channel"]), row["template"], folder, new)


def unsubscribed(
    conn: Connection, candidates: Sequence[tuple[str, Channel, str, str | None]]
) -> set[Stream]:
    """The streams of ``candidates`` (address, channel, template, folder) their address left."""
    if not candidates:
        return set()
    addresses = sorted({address.lower() for address, *_ in candidates})
    rows = conn.execute(
        select(
            unsubscription.c.address,
            unsubscription.c.channel,
            unsubscription.c.template,
            unsubscription.c.folder,
        ).where(unsubscription.c.address.in_(addresses))
    )
    return {(address, channel, template, folder) for address, channel, template, folder in rows}
