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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    FromClause,
    RowMapping,
    Table,
    and_,
    bindparam,
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
from msgcenter.store.database import delete_some, insert_or_ignore
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
# a literal, not a bound parameter: a prepared statement's generic plan can match only a
# literal to the predicate of the partial index ix_webhook_message_due
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
    row = (
        conn.execute(
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
            .returning(webhook_subscription)
        )
        .mappings()
        .one()
    )
    return _subscription(row, now)


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
    return _update(conn, subscription_id, values, now)


def rotate_secret(
    conn: Connection, subscription_id: int, secret: str, previous_until: datetime, now: datetime
) -> Subscription:
    """Give a subscription a new secret; the current one still signs until ``previous_until``."""
    return _update(
        conn,
        subscription_id,
        {
            "previous_secret": webhook_subscription.c.secret,
            "previous_secret_until": previous_until,
            "secret": secret,
            "updated": now,
        },
        now,
    )


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


def _update(
    conn: Connection, subscription_id: int, values: dict[str, Any], now: datetime
) -> Subscription:
    changed = (
        conn.execute(
            update(webhook_subscription)
            .where(webhook_subscription.c.id == subscription_id)
            .values(values)
            .returning(webhook_subscription)
        )
        .mappings()
        .first()
    )
    if changed is None:
        raise NotFoundError(f"no webhook subscription {subscription_id}")
    return _subscription(changed, now)


def _types_text(types: frozenset[WebhookType]) -> str:
    return ",".join(sorted(t.value for t in types))


def _signing_secrets(row: RowMapping, now: datetime) -> tuple[str, ...]:
    """The current secret, and the previous one while its overlap lasts."""
    until = row["previous_secret_until"]
    if row["previous_secret"] and until is not None and until > now:
        return row["secret"], row["previous_secret"]
    return (row["secret"],)


def _subscription(row: RowMapping, now: datetime) -> Subscription:
    signing = _signing_secrets(row, now)
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
        secrets=signing,
        previous_secret_until=row["previous_secret_until"] if len(signing) > 1 else None,
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
    # the folder and type filters apply per outcome
    subscriptions = [s for s in list_subscriptions(conn, now) if s.active]
    if not subscriptions:
        _fast_forward(conn, cursors, now, settle)
        _save_cursors(conn, cursors, now)
        return 0, False
    outcomes: list[Outcome] = []
    full = False
    for name, source in TAILED.items():
        found, more = _read_tailed(conn, source, cursors[name], now, batch, gap_wait)
        outcomes += found
        full = full or more
    found, more = _read_receipts(conn, cursors[RECEIPTS], now, batch, settle)
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
    _save_cursors(conn, cursors, now)
    return len(rows), full


def _lock_cursors(conn: Connection, now: datetime, settle: timedelta) -> dict[str, Cursor]:
    """The cursors, locked until the transaction ends (two collectors never read the same
    rows: the second waits, then reads the cursors the first advanced); created at each
    source's end the first time."""
    query = select(webhook_cursor).where(webhook_cursor.c.source.in_(SOURCES)).with_for_update()
    rows = conn.execute(query).mappings().all()
    held = {r["source"] for r in rows}
    missing = [name for name in SOURCES if name not in held]
    if missing:
        for name in missing:
            position, position_at = _end(conn, name, now, settle)
            insert_or_ignore(
                conn,
                webhook_cursor,
                {"source": name, "position": position, "position_at": position_at, "updated": now},
                ["source"],
            )
        rows = conn.execute(query).mappings().all()
    return {
        r["source"]: Cursor(r["source"], r["position"], r["position_at"], r["gap_since"])
        for r in rows
    }


def _fast_forward(
    conn: Connection, cursors: dict[str, Cursor], now: datetime, settle: timedelta
) -> None:
    """Move each cursor to its source's end, unless it is past it already."""
    for name, cursor in cursors.items():
        position, position_at = _end(conn, name, now, settle)
        # keyset sources end at a time (past every id of it); id sources at an id
        if position_at is not None:
            ahead = cursor.position_at is None or position_at > cursor.position_at
        else:
            ahead = position >= cursor.position
        if ahead:
            cursor.position, cursor.position_at, cursor.gap_since = position, position_at, None


def _save_cursors(conn: Connection, cursors: dict[str, Cursor], now: datetime) -> None:
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


def _end(
    conn: Connection, source: str, now: datetime, settle: timedelta
) -> tuple[int, datetime | None]:
    """Where ``source`` ends now: a tailed source at its last id, the receipts ``settle`` ago."""
    if source == RECEIPTS:
        return 0, now - settle
    last = func.coalesce(func.max(TAILED[source].table.c.id), 0)
    return int(conn.execute(select(last)).scalar_one()), None


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


def _status_outcome(row: RowMapping) -> Outcome | None:
    status = EventStatus(row["status"])
    if status not in STATUS_TYPES:
        return None
    data = {"status": status.label, "reason": row["reason"]}
    return Outcome(STATUS_TYPES[status], row["folder"], row["at"], _common(row) | data)


def _bounce_outcome(row: RowMapping) -> Outcome | None:
    if row["kind"] not in BOUNCE_TYPES:
        return None
    data = {"bounce_kind": row["kind"], "reason": row["reason"]}
    return Outcome(BOUNCE_TYPES[row["kind"]], row["folder"], row["received"], _common(row) | data)


def _tracking_outcome(row: RowMapping) -> Outcome | None:
    if row["kind"] not in TRACKING_TYPES:
        return None
    data = {"url": row["url"], "user_agent": row["user_agent"]}
    return Outcome(TRACKING_TYPES[row["kind"]], row["folder"], row["created"], _common(row) | data)


@dataclass(frozen=True, slots=True)
class _Tailed:
    """A source written once per outcome, tailed in id order past a missing id's wait."""

    table: Table
    #: the table joined (outer) to the event and the delivery log its rows concern
    joined: FromClause
    #: the table's own columns that :attr:`outcome` reads
    columns: tuple[Any, ...]
    #: the outcome of a row that names an event (None: the row is no outcome)
    outcome: Callable[[RowMapping], Outcome | None]


def _read_tailed(
    conn: Connection,
    source: _Tailed,
    cursor: Cursor,
    now: datetime,
    batch: int,
    gap_wait: timedelta,
) -> tuple[list[Outcome], bool]:
    """The outcomes of ``source``'s rows past the cursor, up to a missing id still waited for."""
    table = source.table
    rows = (
        conn.execute(
            select(table.c.id, *source.columns, *COMMON_COLUMNS)
            .select_from(source.joined)
            .where(table.c.id > cursor.position)
            .order_by(table.c.id)
            .limit(batch)
        )
        .mappings()
        .all()
    )
    rows = rows[: _take_contiguous(cursor, [r["id"] for r in rows], now, gap_wait)]
    # a row that names no event of this instance (a stray report) concerns no folder's events
    found = (source.outcome(row) for row in rows if row["event_id"] is not None)
    outcomes = [outcome for outcome in found if outcome is not None]
    if rows:
        cursor.position = rows[-1]["id"]
    return outcomes, len(rows) >= batch


def _read_receipts(
    conn: Connection,
    cursor: Cursor,
    now: datetime,
    batch: int,
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


#: the sources tailed by id, by the name of their cursor
TAILED = {
    "status_change": _Tailed(
        event_status_change,
        event_status_change.outerjoin(
            event, event.c.id == event_status_change.c.event_id
        ).outerjoin(delivery_log, delivery_log.c.id == event.c.delivery_log_id),
        (event_status_change.c.status, event_status_change.c.at, event_status_change.c.reason),
        _status_outcome,
    ),
    "bounce_report": _Tailed(
        bounce_report,
        bounce_report.outerjoin(
            delivery_log, delivery_log.c.id == bounce_report.c.delivery_log_id
        ).outerjoin(event, event.c.id == delivery_log.c.event_id),
        (bounce_report.c.kind, bounce_report.c.received, bounce_report.c.reason),
        _bounce_outcome,
    ),
    "tracking_log": _Tailed(
        tracking_log,
        tracking_log.outerjoin(
            delivery_log, delivery_log.c.id == tracking_log.c.delivery_log_id
        ).outerjoin(event, event.c.id == tracking_log.c.event_id),
        (
            tracking_log.c.kind,
            tracking_log.c.url,
            tracking_log.c.user_agent,
            tracking_log.c.created,
        ),
        _tracking_outcome,
    ),
}
#: the cursor of delivery receipts, which update delivery logs in place: read by keyset
RECEIPTS = "delivery_receipt"
#: each source of outcomes, by the name of its cursor
SOURCES = (*TAILED, RECEIPTS)


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
    return [
        Attempt(
            replace(_message(row), status=OutboxStatus.SENDING, attempts=row["attempts"] + 1),
            row["url"],
            _signing_secrets(row, now),
        )
        for row in rows
    ]


def record_results(
    conn: Connection,
    results: Sequence[AttemptResult],
    now: datetime,
    *,
    backoff: Callable[[int], timedelta],
    disable_after: timedelta,
) -> list[int]:
    """Write how attempts ended: delivered, or pending again after ``backoff(attempts)`` (the
    wait after a message's n-th failed attempt). A subscription with a success is not failing;
    one whose posts all failed is failing since its first failure, and disabled once that has
    lasted ``disable_after``. Returns the subscriptions disabled now."""
    delivered = [r for r in results if r.error is None]
    failed = [r for r in results if r.error is not None]
    if delivered:
        conn.execute(
            update(webhook_message)
            .where(webhook_message.c.id.in_([r.outbox_id for r in delivered]))
            .values(status=OutboxStatus.DELIVERED.value, delivered_at=now, last_error=None)
        )
    if failed:
        conn.execute(
            update(webhook_message)
            .where(webhook_message.c.id == bindparam("b_id"))
            .values(
                status=OutboxStatus.PENDING.value,
                due=bindparam("b_due"),
                last_error=bindparam("b_error"),
            ),
            [
                {
                    "b_id": r.outbox_id,
                    "b_due": now + backoff(r.attempts),
                    "b_error": (r.error or "")[:2000],
                }
                for r in failed
            ],
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
    return delete_some(
        conn,
        webhook_message,
        webhook_message.c.status == OutboxStatus.DELIVERED.value,
        webhook_message.c.delivered_at < before,
        limit=limit,
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
