"""Named queries of delivery-status webhooks: subscriptions, the outbox, and the reading of
outcomes from their source tables into the outbox (SPEC §3.7).

Outcomes are not written on the intake and sending paths: :func:`collect` reads
them afterwards from the tables those paths write anyway, each past a cursor of
its own (``webhook_cursor``), and in the same transaction inserts one outbox
message per subscription that wants each outcome and advances the cursors. A
crash before the commit leaves both as they were, after it both are done: every
outcome reaches the outbox once.

Sources read by id (status changes, bounce reports, tracking logs) are tailed in
id order. On PostgreSQL an id is drawn when a row is inserted, not when its
transaction commits, so a missing id may belong to a transaction still under
way: the cursor stops before it until it shows up or has been missing for
``gap_wait`` (a rolled-back transaction, or a row purged, leaves a hole for good).
On SQLite, writers are serial and a rollback gives its ids back, so only purged
rows leave holes. Delivery receipts update delivery logs in place: they are read
by (``last_modified``, id) once ``settle`` has passed, as statsSampler counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    RowMapping,
    and_,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)

from msgcenter.deliveries import DeliveryStatus
from msgcenter.errors import NotFoundError
from msgcenter.events.model import Channel, EventStatus
from msgcenter.store.database import insert_or_ignore
from msgcenter.store.tables import (
    bounce_report,
    delivery_log,
    event,
    event_status_change,
    tracking_log,
    webhook_cursor,
    webhook_message,
    webhook_subscription,
)
from msgcenter.webhooks import (
    Attempt,
    AttemptResult,
    OutboxMessage,
    OutboxStatus,
    Outcome,
    Subscription,
    WebhookType,
    new_message_id,
    payload,
    retry_delay,
)

#: event statuses that are outcomes, and the webhook type of each (SPEC §3.3)
STATUS_TYPES = {
    EventStatus.SENT: WebhookType.SENT,
    EventStatus.IGNORED: WebhookType.IGNORED,
    EventStatus.DELIVERY_FAILED: WebhookType.DELIVERY_FAILED,
    EventStatus.NOT_TAKEN_INTO_ACCOUNT: WebhookType.NOT_TAKEN_INTO_ACCOUNT,
    EventStatus.EXPIRED: WebhookType.EXPIRED,
}
BOUNCE_TYPES = {
    "hard": WebhookType.BOUNCED,
    "soft": WebhookType.BOUNCED,
    "complaint": WebhookType.COMPLAINED,
}
TRACKING_TYPES = {"open": WebhookType.OPENED, "click": WebhookType.CLICKED}
DELIVERED: Any = literal_column(str(int(DeliveryStatus.DELIVERED)))
NOT_DELIVERED: Any = webhook_message.c.status != literal_column(f"'{OutboxStatus.DELIVERED}'")

#: what every outcome's data says of its event and message
COMMON_COLUMNS = (
    event.c.id.label("event_id"),
    event.c.type.label("event_type"),
    event.c.queue,
    event.c.external_id,
    event.c.folder,
    event.c.wished_channel,
    delivery_log.c.id.label("log_id"),
    delivery_log.c.channel,
    delivery_log.c.address,
)


@dataclass
class Cursor:
    """How far one source has been read."""

    source: str
    position: int
    position_at: datetime | None
    gap_since: datetime | None


# -- subscriptions -----------------------------------------------------------------------


def add_subscription(
    conn: Connection,
    folder: str | None,
    url: str,
    types: frozenset[WebhookType],
    secret: str,
    now: datetime,
) -> Subscription:
    """Store a new, active subscription."""
    new_id = conn.execute(
        insert(webhook_subscription)
        .values(
            folder=folder,
            url=url,
            event_types=_types_text(types),
            secret=secret,
            active=True,
            created=now,
            updated=now,
        )
        .returning(webhook_subscription.c.id)
    ).scalar_one()
    return get_subscription(conn, new_id, now)


def get_subscription(conn: Connection, subscription_id: int, now: datetime) -> Subscription:
    """One subscription (:class:`NotFoundError` when there is none with this id)."""
    row = (
        conn.execute(
            select(webhook_subscription).where(webhook_subscription.c.id == subscription_id)
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFoundError(f"no webhook subscription {subscription_id}")
    return _subscription(row, now)


def list_subscriptions(
    conn: Connection, now: datetime, folder: str | None = None
) -> list[Subscription]:
    """Every subscription by id, or those of ``folder`` when it is given."""
    query = select(webhook_subscription).order_by(webhook_subscription.c.id)
    if folder is not None:
        query = query.where(webhook_subscription.c.folder == folder)
    return [_subscription(row, now) for row in conn.execute(query).mappings()]


def update_subscription(
    conn: Connection,
    subscription_id: int,
    now: datetime,
    *,
    url: str | None = None,
    types: frozenset[WebhookType] | None = None,
    active: bool | None = None,
) -> Subscription:
    """Change a subscription's URL, types, or state; enabling it clears its failures and the
    reason it was disabled."""
    values: dict[str, Any] = {"updated": now}
    if url is not None:
        values["url"] = url
    if types is not None:
        values["event_types"] = _types_text(types)
    if active is not None:
        values["active"] = active
        values["failing_since"] = None
        values["disabled_reason"] = None if active else "disabled by an operator"
    _update(conn, subscription_id, values)
    return get_subscription(conn, subscription_id, now)


def rotate_secret(
    conn: Connection, subscription_id: int, secret: str, previous_until: datetime, now: datetime
) -> Subscription:
    """Give a subscription a new secret; the current one still signs until ``previous_until``."""
    _update(
        conn,
        subscription_id,
        {
            "previous_secret": webhook_subscription.c.secret,
            "previous_secret_until": previous_until,
            "secret": secret,
            "updated": now,
        },
    )
    return get_subscription(conn, subscription_id, now)


def delete_subscription(conn: Connection, subscription_id: int) -> None:
    """Delete a subscription and its outbox messages."""
    conn.execute(
        delete(webhook_message).where(webhook_message.c.subscription_id == subscription_id)
    )
    deleted = conn.execute(
        delete(webhook_subscription).where(webhook_subscription.c.id == subscription_id)
    ).rowcount
    if not deleted:
        raise NotFoundError(f"no webhook subscription {subscription_id}")


def _update(conn: Connection, subscription_id: int, values: dict[str, Any]) -> None:
    changed = conn.execute(
        update(webhook_subscription)
        .where(webhook_subscription.c.id == subscription_id)
        .values(values)
        .returning(webhook_subscription.c.id)
    ).first()
    if changed is None:
        raise NotFoundError(f"no webhook subscription {subscription_id}")


def _types_text(types: frozenset[WebhookType]) -> str:
    return ",".join(sorted(t.value for t in types))


def _subscription(row: RowMapping, now: datetime) -> Subscription:
    until = row["previous_secret_until"]
    previous = row["previous_secret"] if until is not None and until > now else None
    return Subscription(
        id=row["id"],
        folder=row["folder"],
        url=row["url"],
        types=frozenset(WebhookType(t) for t in row["event_types"].split(",") if t),
        active=row["active"],
        disabled_reason=row["disabled_reason"],
        failing_since=row["failing_since"],
        created=row["created"],
        updated=row["updated"],
        secrets=(row["secret"], previous) if previous else (row["secret"],),
        previous_secret_until=until if previous else None,
    )


# -- outcomes into the outbox ------------------------------------------------------------


def collect(
    conn: Connection,
    now: datetime,
    *,
    batch: int,
    gap_wait: timedelta,
    settle: timedelta,
) -> tuple[int, bool]:
    """Read the outcomes past each source's cursor (up to ``batch`` rows per source), insert
    one outbox message per active subscription that wants each, and advance the cursors, all in
    the caller's transaction. Returns how many messages were inserted, and whether a source
    had more rows than ``batch`` (read again at once).

    With no active subscription the cursors jump to the sources' ends: nobody is owed those
    outcomes, and reading them would cost for nothing.
    """
    cursors = _lock_cursors(conn, now, settle)
    subscriptions = [
        s
        for s in list_subscriptions(conn, now)
        if s.active  # the folder and type filters apply per outcome
    ]
    if not subscriptions:
        _fast_forward(conn, cursors, now, settle)
        return 0, False
    outcomes: list[Outcome] = []
    full = False
    for name, read in SOURCES.items():
        found, more = read(conn, cursors[name], now, batch, gap_wait, settle)
        outcomes += found
        full = full or more
    rows = [
        {
            "subscription_id": s.id,
            "message_id": new_message_id(),
            "type": o.type.value,
            "payload": payload(o).decode(),
            "status": OutboxStatus.PENDING.value,
            "attempts": 0,
            "due": now,
            "created": now,
        }
        for o in outcomes
        for s in subscriptions
        if s.wants(o)
    ]
    if rows:
        conn.execute(insert(webhook_message), rows)
    for cursor in cursors.values():
        conn.execute(
            update(webhook_cursor)
            .where(webhook_cursor.c.source == cursor.source)
            .values(
                position=cursor.position,
                position_at=cursor.position_at,
                gap_since=cursor.gap_since,
                updated=now,
            )
        )
    return len(rows), full


def _lock_cursors(conn: Connection, now: datetime, settle: timedelta) -> dict[str, Cursor]:
    """The cursors, locked until the transaction ends (two collectors never read the same
    rows: the second waits, then reads the cursors the first advanced); created at each
    source's end the first time."""
    for name, end in ENDS.items():
        position, position_at = end(conn, now, settle)
        insert_or_ignore(
            conn,
            webhook_cursor,
            {"source": name, "position": position, "position_at": position_at, "updated": now},
            ["source"],
        )
    rows = conn.execute(
        select(webhook_cursor).where(webhook_cursor.c.source.in_(list(SOURCES))).with_for_update()
    ).mappings()
    return {
        r["source"]: Cursor(r["source"], r["position"], r["position_at"], r["gap_since"])
        for r in rows
    }


def _fast_forward(
    conn: Connection, cursors: dict[str, Cursor], now: datetime, settle: timedelta
) -> None:
    for name, cursor in cursors.items():
        position, position_at = ENDS[name](conn, now, settle)
        # keyset sources end at a time (past every id of it); id sources at an id
        if position_at is not None:
            ahead = cursor.position_at is None or position_at > cursor.position_at
        else:
            ahead = position >= cursor.position
        if ahead:
            cursor.position, cursor.position_at, cursor.gap_since = position, position_at, None
        conn.execute(
            update(webhook_cursor)
            .where(webhook_cursor.c.source == name)
            .values(
                position=cursor.position,
                position_at=cursor.position_at,
                gap_since=cursor.gap_since,
                updated=now,
            )
        )


def _last_id(column: Any) -> Callable[[Connection, datetime, timedelta], tuple[int, None]]:
    def end(conn: Connection, _now: datetime, _settle: timedelta) -> tuple[int, None]:
        return int(conn.execute(select(func.coalesce(func.max(column), 0))).scalar_one()), None

    return end


def _receipts_end(conn: Connection, now: datetime, settle: timedelta) -> tuple[int, datetime]:
    return 0, now - settle


def _take_contiguous(cursor: Cursor, ids: Sequence[int], now: datetime, gap_wait: timedelta) -> int:
    """How many of ``ids`` (in order, past the cursor) may be read now; moves the cursor's gap
    state. A missing id holds the reading until it has been missing for ``gap_wait``."""
    expected = cursor.position + 1
    taken = 0
    for found in ids:
        if found != expected:
            if cursor.gap_since is None:
                cursor.gap_since = now
            if now - cursor.gap_since < gap_wait:
                break
            cursor.gap_since = None  # waited long enough: that hole stays a hole
        taken += 1
        expected = found + 1
    else:
        cursor.gap_since = None
    if taken and taken < len(ids) and cursor.gap_since is None:
        cursor.gap_since = now  # a second hole further on starts its own wait
    return taken


def _common(row: RowMapping) -> dict[str, Any]:
    channel = row["channel"] if row["channel"] is not None else row["wished_channel"]
    return {
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "queue": row["queue"],
        "external_id": row["external_id"],
        "folder": row["folder"],
        "delivery_log_id": row["log_id"],
        "channel": Channel(channel).label if channel is not None else None,
        "address": row["address"],
    }


def _read_status_changes(
    conn: Connection,
    cursor: Cursor,
    now: datetime,
    batch: int,
    gap_wait: timedelta,
    _settle: timedelta,
) -> tuple[list[Outcome], bool]:
    change = event_status_change
    rows = (
        conn.execute(
            select(change.c.id, change.c.status, change.c.at, change.c.reason, *COMMON_COLUMNS)
            .select_from(
                change.outerjoin(event, event.c.id == change.c.event_id).outerjoin(
                    delivery_log, delivery_log.c.id == event.c.delivery_log_id
                )
            )
            .where(change.c.id > cursor.position)
            .order_by(change.c.id)
            .limit(batch)
        )
        .mappings()
        .all()
    )
    rows = rows[: _take_contiguous(cursor, [r["id"] for r in rows], now, gap_wait)]
    outcomes = []
    for row in rows:
        kind = STATUS_TYPES.get(EventStatus(row["status"]))
        if kind is None or row["event_id"] is None:
            continue
        data = _common(row) | {"status": EventStatus(row["status"]).label, "reason": row["reason"]}
        outcomes.append(Outcome(kind, row["folder"], row["at"], data))
    if rows:
        cursor.position = rows[-1]["id"]
    return outcomes, len(rows) >= batch


def _read_bounce_reports(
    conn: Connection,
    cursor: Cursor,
    now: datetime,
    batch: int,
    gap_wait: timedelta,
    _settle: timedelta,
) -> tuple[list[Outcome], bool]:
    report = bounce_report
    rows = (
        conn.execute(
            select(
                report.c.id,
                report.c.kind,
                report.c.received,
                report.c.reason,
                report.c.recipient,
                *COMMON_COLUMNS,
            )
            .select_from(
                report.outerjoin(
                    delivery_log, delivery_log.c.id == report.c.delivery_log_id
                ).outerjoin(event, event.c.id == delivery_log.c.event_id)
            )
            .where(report.c.id > cursor.position)
            .order_by(report.c.id)
            .limit(batch)
        )
        .mappings()
        .all()
    )
    rows = rows[: _take_contiguous(cursor, [r["id"] for r in rows], now, gap_wait)]
    outcomes = []
    for row in rows:
        kind = BOUNCE_TYPES.get(row["kind"])
        # a report that names no message of this instance concerns no folder's events
        if kind is None or row["event_id"] is None:
            continue
        data = _common(row) | {"bounce_kind": row["kind"], "reason": row["reason"]}
        outcomes.append(Outcome(kind, row["folder"], row["received"], data))
    if rows:
        cursor.position = rows[-1]["id"]
    return outcomes, len(rows) >= batch


def _read_tracking_logs(
    conn: Connection,
    cursor: Cursor,
    now: datetime,
    batch: int,
    gap_wait: timedelta,
    _settle: timedelta,
) -> tuple[list[Outcome], bool]:
    track = tracking_log
    rows = (
        conn.execute(
            select(
                track.c.id,
                track.c.kind,
                track.c.url,
                track.c.user_agent,
                track.c.created,
                *COMMON_COLUMNS,
            )
            .select_from(
                track.outerjoin(
                    delivery_log, delivery_log.c.id == track.c.delivery_log_id
                ).outerjoin(event, event.c.id == track.c.event_id)
            )
            .where(track.c.id > cursor.position)
            .order_by(track.c.id)
            .limit(batch)
        )
        .mappings()
        .all()
    )
    rows = rows[: _take_contiguous(cursor, [r["id"] for r in rows], now, gap_wait)]
    outcomes = []
    for row in rows:
        kind = TRACKING_TYPES.get(row["kind"])
        if kind is None or row["event_id"] is None:
            continue
        data = _common(row) | {"url": row["url"], "user_agent": row["user_agent"]}
        outcomes.append(Outcome(kind, row["folder"], row["created"], data))
    if rows:
        cursor.position = rows[-1]["id"]
    return outcomes, len(rows) >= batch


def _read_receipts(
    conn: Connection,
    cursor: Cursor,
    now: datetime,
    batch: int,
    _gap_wait: timedelta,
    settle: timedelta,
) -> tuple[list[Outcome], bool]:
    """Delivery logs that became delivered, by (``last_modified``, id), up to ``settle`` ago."""
    since = cursor.position_at or now - settle
    rows = (
        conn.execute(
            select(
                delivery_log.c.last_modified,
                delivery_log.c.failure_reason,
                *COMMON_COLUMNS,
            )
            .select_from(delivery_log.join(event, event.c.id == delivery_log.c.event_id))
            .where(
                delivery_log.c.status == DELIVERED,
                or_(
                    delivery_log.c.last_modified > since,
                    and_(
                        delivery_log.c.last_modified == since,
                        delivery_log.c.id > cursor.position,
                    ),
                ),
                delivery_log.c.last_modified <= now - settle,
            )
            .order_by(delivery_log.c.last_modified, delivery_log.c.id)
            .limit(batch)
        )
        .mappings()
        .all()
    )
    outcomes = [
        Outcome(
            WebhookType.DELIVERED,
            row["folder"],
            row["last_modified"],
            _common(row) | {"status": "delivered", "reason": row["failure_reason"]},
        )
        for row in rows
    ]
    if rows:
        cursor.position_at, cursor.position = rows[-1]["last_modified"], rows[-1]["log_id"]
    return outcomes, len(rows) >= batch


Reader = Callable[
    [Connection, Cursor, datetime, int, timedelta, timedelta], tuple[list[Outcome], bool]
]
#: each source of outcomes, by the name of its cursor
SOURCES: dict[str, Reader] = {
    "status_change": _read_status_changes,
    "bounce_report": _read_bounce_reports,
    "tracking_log": _read_tracking_logs,
    "delivery_receipt": _read_receipts,
}
#: where each source ends now: its cursor's starting point
ENDS: dict[str, Callable[[Connection, datetime, timedelta], tuple[int, datetime | None]]] = {
    "status_change": _last_id(event_status_change.c.id),
    "bounce_report": _last_id(bounce_report.c.id),
    "tracking_log": _last_id(tracking_log.c.id),
    "delivery_receipt": _receipts_end,
}


# -- the outbox --------------------------------------------------------------------------


def claim_due(conn: Connection, now: datetime, limit: int, lease: timedelta) -> list[Attempt]:
    """Take up to ``limit`` messages of active subscriptions that are due (or whose sender's
    claim lapsed), oldest due first, skipping those another sender holds: they are
    ``sending`` until ``now + lease``, and their attempt is counted."""
    rows = (
        conn.execute(
            select(
                webhook_message,
                webhook_subscription.c.url,
                webhook_subscription.c.secret,
                webhook_subscription.c.previous_secret,
                webhook_subscription.c.previous_secret_until,
            )
            .join(
                webhook_subscription,
                webhook_subscription.c.id == webhook_message.c.subscription_id,
            )
            .where(
                NOT_DELIVERED,
                webhook_message.c.due <= now,
                webhook_subscription.c.active.is_(True),
            )
            .order_by(webhook_message.c.due)
            .limit(limit)
            .with_for_update(of=webhook_message, skip_locked=True)
        )
        .mappings()
        .all()
    )
    if not rows:
        return []
    conn.execute(
        update(webhook_message)
        .where(webhook_message.c.id.in_([r["id"] for r in rows]))
        .values(
            status=OutboxStatus.SENDING.value,
            due=now + lease,
            attempts=webhook_message.c.attempts + 1,
        )
    )
    attempts = []
    for row in rows:
        until = row["previous_secret_until"]
        signing: tuple[str, ...] = (row["secret"],)
        if row["previous_secret"] and until is not None and until > now:
            signing += (row["previous_secret"],)
        attempts.append(Attempt(_with_attempt(_message(row)), row["url"], signing))
    return attempts


def _with_attempt(message: OutboxMessage) -> OutboxMessage:
    return OutboxMessage(
        id=message.id,
        subscription_id=message.subscription_id,
        message_id=message.message_id,
        type=message.type,
        payload=message.payload,
        status=OutboxStatus.SENDING,
        attempts=message.attempts + 1,
        due=message.due,
        created=message.created,
    )


def record_results(
    conn: Connection,
    results: Sequence[AttemptResult],
    now: datetime,
    *,
    retry_base: float,
    retry_max: float,
    disable_after: timedelta,
) -> list[int]:
    """Write how attempts ended: delivered, or pending again after the backoff. A subscription
    with a success is not failing; one whose posts all failed is failing since its first
    failure, and disabled once that has lasted ``disable_after``. Returns the subscriptions
    disabled now."""
    delivered = [r for r in results if r.error is None]
    failed = [r for r in results if r.error is not None]
    if delivered:
        conn.execute(
            update(webhook_message)
            .where(webhook_message.c.id.in_([r.outbox_id for r in delivered]))
            .values(status=OutboxStatus.DELIVERED.value, delivered_at=now, last_error=None)
        )
    for result in failed:
        conn.execute(
            update(webhook_message)
            .where(webhook_message.c.id == result.outbox_id)
            .values(
                status=OutboxStatus.PENDING.value,
                due=now + retry_delay(result.attempts, retry_base, retry_max),
                last_error=(result.error or "")[:2000],
            )
        )
    alive = {r.subscription_id for r in delivered}
    failing = {r.subscription_id for r in failed} - alive
    if alive:
        conn.execute(
            update(webhook_subscription)
            .where(
                webhook_subscription.c.id.in_(sorted(alive)),
                webhook_subscription.c.failing_since.isnot(None),
            )
            .values(failing_since=None)
        )
    if not failing:
        return []
    conn.execute(
        update(webhook_subscription)
        .where(
            webhook_subscription.c.id.in_(sorted(failing)),
            webhook_subscription.c.failing_since.is_(None),
        )
        .values(failing_since=now)
    )
    since = now - disable_after
    disabled = conn.execute(
        update(webhook_subscription)
        .where(
            webhook_subscription.c.id.in_(sorted(failing)),
            webhook_subscription.c.active.is_(True),
            webhook_subscription.c.failing_since <= since,
        )
        .values(
            active=False,
            disabled_reason=f"every post failed since {since.isoformat(timespec='seconds')}",
            updated=now,
        )
        .returning(webhook_subscription.c.id)
    )
    return sorted(row[0] for row in disabled)


def replay(
    conn: Connection,
    subscription_id: int,
    now: datetime,
    *,
    message_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """Queue again, due now, one message of a subscription (``message_id``) or those created in
    [``since``, ``until``); they keep their webhook-id. Returns how many."""
    conditions = [webhook_message.c.subscription_id == subscription_id]
    if message_id is not None:
        conditions.append(webhook_message.c.message_id == message_id)
    if since is not None:
        conditions.append(webhook_message.c.created >= since)
    if until is not None:
        conditions.append(webhook_message.c.created < until)
    count = conn.execute(
        update(webhook_message)
        .where(*conditions)
        .values(status=OutboxStatus.PENDING.value, due=now, attempts=0, last_error=None)
    ).rowcount
    if message_id is not None and not count:
        raise NotFoundError(
            f"no message {message_id!r}",
            detail=f"subscription {subscription_id} has no message {message_id!r}",
        )
    return int(count)


def messages(
    conn: Connection, subscription_id: int, limit: int, status: OutboxStatus | None = None
) -> list[OutboxMessage]:
    """A subscription's newest messages first (only those in ``status`` when given)."""
    query = (
        select(webhook_message)
        .where(webhook_message.c.subscription_id == subscription_id)
        .order_by(webhook_message.c.id.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(webhook_message.c.status == status.value)
    return [_message(row) for row in conn.execute(query).mappings()]


def purge(conn: Connection, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` messages delivered before ``before``."""
    ids = (
        select(webhook_message.c.id)
        .where(
            webhook_message.c.status == OutboxStatus.DELIVERED.value,
            webhook_message.c.delivered_at < before,
        )
        .limit(limit)
    )
    return int(
        conn.execute(
            delete(webhook_message).where(webhook_message.c.id.in_(ids.scalar_subquery()))
        ).rowcount
    )


def _message(row: RowMapping) -> OutboxMessage:
    return OutboxMessage(
        id=row["id"],
        subscription_id=row["subscription_id"],
        message_id=row["message_id"],
        type=WebhookType(row["type"]),
        payload=row["payload"].encode(),
        status=OutboxStatus(row["status"]),
        attempts=row["attempts"],
        due=row["due"],
        created=row["created"],
        delivered_at=row["delivered_at"],
        last_error=row["last_error"],
    )
