"""Named queries of the processing workflows: claim and route events, claim due attempts,
record send outcomes, copy final statuses, purge old data.

Claims use ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so that any number of worker
processes share one database without waiting on each other; on SQLite the
write transaction (``BEGIN IMMEDIATE``) already makes a claim exclusive.
Status predicates are written as SQL literals so that PostgreSQL can use the
partial indexes whatever plan it caches.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnClause,
    Connection,
    RowMapping,
    SmallInteger,
    Text,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)

from msgcenter.deliveries import (
    FINAL_EVENT_STATUS,
    Claim,
    ClaimedMessage,
    DeliveryStatus,
    FailureType,
    Outcome,
)
from msgcenter.events.model import TEMPLATE_EVENT_FIELDS, Channel, EventStatus, Queue
from msgcenter.publications import Publication
from msgcenter.routing import Routed, Routing
from msgcenter.store import fallbacks
from msgcenter.store.bulk import BulkInsert, BulkStatement
from msgcenter.store.database import dialect_insert, insert_or_ignore
from msgcenter.store.tables import (
    delivery,
    delivery_log,
    event,
    event_status_change,
    quarantine,
    stats_sample,
)
from msgcenter.store.types import UtcDateTime

PENDING: ColumnClause[Any] = literal_column("0")
#: delivery-log statuses a sender may claim: pending (due) and sending (claim lapsed)
CLAIMABLE: list[ColumnClause[Any]] = [literal_column("0"), literal_column("4")]

#: the event columns a message is rendered from
EVENT_COLUMNS = [event.c[name] for name in TEMPLATE_EVENT_FIELDS] + [
    event.c.ctx,
    event.c.ctx_format,
]

#: the columns of a delivery log created by a claim, in :func:`_log_row`'s order
LOG_COLUMNS = (
    "delivery_id",
    "event_id",
    "publication_id",
    "channel",
    "address",
    "folder",
    "status",
    "failure_type",
    "failure_reason",
    "claimed_by",
)
#: the columns of a claim's delivery logs that are the same for all
LOG_SHARED_COLUMNS = ("queue", "attempts", "due", "valid_until", "created", "last_modified")
_LOGS = BulkInsert(delivery_log, LOG_COLUMNS, LOG_SHARED_COLUMNS)
#: timeline steps: (event id, status, reason), from :func:`_change`, at one time
_HISTORY = BulkInsert(event_status_change, ["event_id", "status", "reason"], ["at"])
_NOW = bindparam("now", type_=UtcDateTime())
#: routed events linked to their publication, delivery and delivery log
_LINK_EVENTS = BulkStatement(
    "link",
    {
        "id": event.c.id.type,
        "status": SmallInteger(),
        "publication": BigInteger(),
        "delivery": BigInteger(),
        "log": BigInteger(),
    },
    lambda rows: (
        update(event)
        .where(event.c.id == rows.c.id)
        .values(
            status=rows.c.status,
            publication_id=rows.c.publication,
            delivery_id=rows.c.delivery,
            delivery_log_id=rows.c.log,
            last_modified=_NOW,
        )
    ),
)
#: attempt outcomes written to their delivery logs
_OUTCOMES = BulkStatement(
    "outcome",
    {
        "id": delivery_log.c.id.type,
        "status": SmallInteger(),
        "failure_type": delivery_log.c.failure_type.type,
        "reason": Text(),
        "due": UtcDateTime(),
        "message_id": delivery_log.c.message_id.type,
    },
    lambda rows: (
        update(delivery_log)
        .where(delivery_log.c.id == rows.c.id)
        .values(
            status=rows.c.status,
            failure_type=rows.c.failure_type,
            failure_reason=rows.c.reason,
            attempts=delivery_log.c.attempts + 1,
            due=func.coalesce(rows.c.due, delivery_log.c.due),
            message_id=func.coalesce(rows.c.message_id, delivery_log.c.message_id),
            sent_at=case((rows.c.status == int(DeliveryStatus.SENT), _NOW), else_=None),
            last_modified=_NOW,
        )
    ),
)
#: final statuses copied onto events still linked to the delivery log that reached them
_FINAL_STATUSES = BulkStatement(
    "final",
    {"id": event.c.id.type, "log": BigInteger(), "status": SmallInteger()},
    lambda rows: (
        update(event)
        .where(event.c.id == rows.c.id, event.c.delivery_log_id == rows.c.log)
        .values(status=rows.c.status, last_modified=_NOW)
    ),
)


class DeliveryCache:
    """Delivery ids by (template, queue, channel, folder, month), created on first use.

    An id found inside a transaction is kept only once that transaction committed
    (:meth:`committed`): a delivery row created by a transaction that rolled back does not
    exist, and its id may later be given to another delivery.
    """

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str, int, str, str], int] = {}
        self._uncommitted: dict[tuple[str, str, int, str, str], int] = {}

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Wrap the transaction the ids are used in: on success they are kept, on error
        forgotten."""
        try:
            yield
        except BaseException:
            self._uncommitted.clear()
            raise
        self._ids.update(self._uncommitted)
        self._uncommitted.clear()

    def id_for(self, conn: Connection, publication: Publication, now: datetime) -> int:
        """The id of this month's delivery for ``publication`` (created if needed)."""
        key = (
            publication.template,
            publication.queue.value,
            int(publication.channel),
            publication.folder or "",
            now.strftime("%Y-%m"),
        )
        found = self._ids.get(key) or self._uncommitted.get(key)
        if found is None:
            values = dict(
                zip(("template", "queue", "channel", "folder", "month"), key, strict=True)
            )
            insert_or_ignore(conn, delivery, {**values, "created": now}, list(values))
            found = conn.execute(
                select(delivery.c.id).where(*(delivery.c[k] == v for k, v in values.items()))
            ).scalar_one()
            self._uncommitted[key] = found
        return found


def lock_due_events(
    conn: Connection, queue: Queue, limit: int, now: datetime
) -> Sequence[RowMapping]:
    """Lock up to ``limit`` due pending events of ``queue``, oldest first (skipping events
    another worker holds): the fields a template sees, ``ctx`` and ``ctx_format``."""
    return (
        conn.execute(
            select(*EVENT_COLUMNS)
            .where(
                event.c.queue == queue.value,
                event.c.status == PENDING,
                event.c.process_requested_on <= now,
            )
            .order_by(event.c.process_requested_on)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        .mappings()
        .all()
    )


def quarantined(
    conn: Connection, candidates: Sequence[tuple[str, Channel]]
) -> set[tuple[str, int]]:
    """The (lower-cased address, channel) pairs of ``candidates`` that are in quarantine."""
    if not candidates:
        return set()
    addresses = sorted({address.lower() for address, _ in candidates})
    rows = conn.execute(
        select(quarantine.c.address, quarantine.c.channel).where(
            quarantine.c.active.is_(True), quarantine.c.address.in_(addresses)
        )
    )
    return {(address, channel) for address, channel in rows}


def record_routing(
    conn: Connection,
    queue: Queue,
    routing: Routing,
    deliveries: DeliveryCache,
    now: datetime,
    *,
    lease: timedelta,
    validity: timedelta,
    owner: str | None = None,
) -> Claim:
    """Record what :func:`~msgcenter.routing.route_events` decided for locked events.

    Routed events become ``pending_delivery`` with a delivery log claimed by the caller
    (status sending until ``now + lease``, held by ``owner``), or ``ignored`` with an
    ignored delivery log when held; the others take their final status. Each change is a
    timeline step.
    """
    if not routing.routed and not routing.unrouted:
        return Claim()
    claim = Claim(
        not_routed=sum(u.status is EventStatus.NOT_TAKEN_INTO_ACCOUNT for u in routing.unrouted),
        ignored=sum(u.status is EventStatus.IGNORED for u in routing.unrouted),
    )
    history = [_change(u.event_id, u.status, u.reason) for u in routing.unrouted]
    if routing.routed:
        claim.messages, held = _insert_logs(
            conn, queue, routing.routed, deliveries, now, lease, validity, owner
        )
        claim.ignored += held
        for routed in routing.routed:
            history.append(_change(routed.event["id"], EventStatus.PENDING_DELIVERY, routed.reason))
            if routed.held:
                history.append(_change(routed.event["id"], EventStatus.IGNORED, routed.held_reason))
    finals: dict[EventStatus, list[int]] = {}
    for unrouted in routing.unrouted:
        finals.setdefault(unrouted.status, []).append(unrouted.event_id)
    for status, ids in finals.items():
        conn.execute(
            update(event).where(event.c.id.in_(ids)).values(status=int(status), last_modified=now)
        )
    _HISTORY.execute(conn, history, at=now)
    return claim


def _insert_logs(
    conn: Connection,
    queue: Queue,
    routed: Sequence[Routed],
    deliveries: DeliveryCache,
    now: datetime,
    lease: timedelta,
    validity: timedelta,
    owner: str | None,
) -> tuple[list[ClaimedMessage], int]:
    """Create the delivery logs of routed events and link the events to them; returns the
    messages to send and how many were held."""
    logs = [_log_row(r, deliveries.id_for(conn, r.publication, now), owner) for r in routed]
    log_ids = _LOGS.execute_returning_ids(
        conn,
        logs,
        queue=queue.value,
        attempts=0,
        due=now + lease,
        valid_until=now + validity,
        created=now,
        last_modified=now,
    )
    messages = []
    links = []
    for r, log, log_id in zip(routed, logs, log_ids, strict=True):
        status = EventStatus.IGNORED if r.held else EventStatus.PENDING_DELIVERY
        links.append((r.event["id"], int(status), r.publication.id, log[0], log_id))
        if not r.held:
            messages.append(
                ClaimedMessage(
                    delivery_log_id=log_id,
                    publication_id=r.publication.id,
                    queue=queue,
                    channel=r.publication.channel,
                    address=r.address,
                    attempts=0,
                    valid_until=now + validity,
                    event={name: r.event[name] for name in TEMPLATE_EVENT_FIELDS},
                    ctx=r.event["ctx"],
                    ctx_format=r.event["ctx_format"],
                )
            )
    _LINK_EVENTS.execute(conn, links, now=now)
    return messages, len(routed) - len(messages)


def _log_row(routed: Routed, delivery_id: int, owner: str | None) -> tuple[Any, ...]:
    """A claimed delivery log's own values, in :data:`LOG_COLUMNS` order."""
    held = routed.held
    return (
        delivery_id,
        routed.event["id"],
        routed.publication.id,
        int(routed.publication.channel),
        routed.address,
        routed.event["folder"],
        int(DeliveryStatus.IGNORED if held else DeliveryStatus.SENDING),
        FailureType.QUARANTINED.value if held else None,
        routed.held_reason if held else None,
        None if held else owner,
    )


def pending_error_count(conn: Connection, event_id: int) -> int | None:
    """How many tries at processing the event failed so far; None unless it is pending."""
    row = conn.execute(
        select(event.c.error_count, event.c.status).where(event.c.id == event_id)
    ).one_or_none()
    if row is None or row.status != EventStatus.PENDING:
        return None
    return int(row.error_count)


def record_event_failure(
    conn: Connection,
    event_id: int,
    *,
    errors: int,
    status: EventStatus,
    reason: str,
    retry_at: datetime,
    now: datetime,
) -> None:
    """Record a failed try at processing an event: its error count, its status (pending again
    at ``retry_at``, or expired), and the timeline step with ``reason``."""
    conn.execute(
        update(event)
        .where(event.c.id == event_id)
        .values(
            error_count=errors,
            status=int(status),
            process_requested_on=retry_at,
            last_modified=now,
        )
    )
    _HISTORY.execute(conn, [_change(event_id, status, reason)], at=now)


def _change(
    event_id: int, status: EventStatus, reason: str | None = None
) -> tuple[int, int, str | None]:
    """A timeline step of :data:`_HISTORY`, whose time the statement gives."""
    return (event_id, int(status), reason)


def claim_due_attempts(
    conn: Connection,
    queue: Queue,
    limit: int,
    now: datetime,
    *,
    lease: timedelta,
    owner: str | None = None,
) -> list[ClaimedMessage]:
    """Take delivery logs of ``queue`` whose next attempt is due, or whose sender's claim
    lapsed, for ``owner``."""
    rows = (
        conn.execute(
            select(
                delivery_log.c.id.label("log_id"),
                delivery_log.c.publication_id,
                delivery_log.c.channel,
                delivery_log.c.address,
                delivery_log.c.attempts,
                delivery_log.c.valid_until,
                *EVENT_COLUMNS,
            )
            .join(event, event.c.id == delivery_log.c.event_id)
            .where(
                delivery_log.c.queue == queue.value,
                delivery_log.c.status.in_(CLAIMABLE),
                delivery_log.c.due <= now,
            )
            .order_by(delivery_log.c.due)
            .limit(limit)
            .with_for_update(of=delivery_log, skip_locked=True)
        )
        .mappings()
        .all()
    )
    if not rows:
        return []
    conn.execute(
        update(delivery_log)
        .where(delivery_log.c.id.in_([r["log_id"] for r in rows]))
        .values(
            status=int(DeliveryStatus.SENDING),
            due=now + lease,
            claimed_by=owner,
            last_modified=now,
        )
    )
    return [
        ClaimedMessage(
            delivery_log_id=row["log_id"],
            publication_id=row["publication_id"],
            queue=queue,
            channel=Channel(row["channel"]),
            address=row["address"],
            attempts=row["attempts"],
            valid_until=row["valid_until"],
            event={name: row[name] for name in TEMPLATE_EVENT_FIELDS},
            ctx=row["ctx"],
            ctx_format=row["ctx_format"],
        )
        for row in rows
    ]


def extend_claims(
    conn: Connection, log_ids: Sequence[int], until: datetime, owner: str | None = None
) -> None:
    """Keep the claims of messages still in a sender's hands (status sending) until ``until``
    (with ``owner``: only those it still holds).

    A claim's lease only protects against a crashed worker: without renewal, messages
    queued behind a slow relay for longer than the lease would be claimed again and
    sent twice.
    """
    held = [] if owner is None else [delivery_log.c.claimed_by == owner]
    for start in range(0, len(log_ids), 1_000):
        # rows the outcome writer holds are skipped, not waited for (it is ending their
        # claim); the others are locked in id order, as the outcome writer locks them, so
        # the two never deadlock
        renewable = (
            select(delivery_log.c.id)
            .where(
                delivery_log.c.id.in_(log_ids[start : start + 1_000]),
                delivery_log.c.status == literal_column(str(int(DeliveryStatus.SENDING))),
                *held,
            )
            .order_by(delivery_log.c.id)
            .with_for_update(skip_locked=True)
        )
        conn.execute(
            update(delivery_log)
            .where(delivery_log.c.id.in_(renewable.scalar_subquery()))
            .values(due=until)
        )


def claim_owners(conn: Connection, prefix: str) -> list[str]:
    """The owners, starting with ``prefix``, of claims held now (status sending)."""
    rows = conn.execute(
        select(delivery_log.c.claimed_by)
        .where(
            delivery_log.c.status == literal_column(str(int(DeliveryStatus.SENDING))),
            delivery_log.c.claimed_by.startswith(prefix, autoescape=True),
        )
        .distinct()
    )
    return sorted(row[0] for row in rows)


def take_back(conn: Connection, owners: Sequence[str], now: datetime) -> list[int]:
    """End the claims of ``owners`` (dead processes) at once: their messages are due now, for
    the next sweep of due attempts; returns the delivery logs concerned."""
    if not owners:
        return []
    rows = conn.execute(
        update(delivery_log)
        .where(
            delivery_log.c.status == literal_column(str(int(DeliveryStatus.SENDING))),
            delivery_log.c.claimed_by.in_(list(owners)),
        )
        .values(due=now)
        .returning(delivery_log.c.id)
    )
    return sorted(row[0] for row in rows)


def hasten_retries(conn: Connection, channel: Channel, since: datetime, now: datetime) -> int:
    """Make due now the messages of ``channel`` waiting for a retry after a temporary failure
    recorded since ``since`` (a relay outage that has ended); returns how many."""
    return conn.execute(
        update(delivery_log)
        .where(
            delivery_log.c.channel == int(channel),
            delivery_log.c.status == PENDING,
            delivery_log.c.failure_type == FailureType.SOFT.value,
            delivery_log.c.last_modified >= since,
            delivery_log.c.due > now,
        )
        .values(due=now)
    ).rowcount


#: the final statuses of a message that make its event fall back to another channel
FALLBACK_STATUSES = frozenset({DeliveryStatus.FAILED, DeliveryStatus.EXPIRED})


def record_outcomes(conn: Connection, outcomes: Sequence[Outcome], now: datetime) -> None:
    """Write attempt outcomes; final ones are copied onto their events at once, with a timeline step."""
    if not outcomes:
        return
    # rows are locked in id order, as the claim renewal locks them: no deadlock between them
    outcomes = sorted(outcomes, key=lambda o: o.delivery_log_id)
    _OUTCOMES.execute(
        conn,
        [
            (
                o.delivery_log_id,
                int(o.status),
                o.failure_type.value if o.failure_type else None,
                o.reason,
                o.due,
                o.message_id,
            )
            for o in outcomes
        ],
        now=now,
    )
    finals = [o for o in outcomes if o.status.is_final]
    if finals:
        _copy_to_events(
            conn,
            [
                (o.event_id, o.delivery_log_id, FINAL_EVENT_STATUS[o.status], o.reason)
                for o in finals
            ],
            now,
        )
    failures = [(o.event_id, o.delivery_log_id) for o in finals if o.status in FALLBACK_STATUSES]
    if failures:
        fallbacks.fall_back(conn, failures, now)
    for o in outcomes:
        if o.quarantine is not None:
            address, channel = o.quarantine
            quarantine_address(
                conn,
                address,
                channel,
                reason=o.reason or "",
                failure_type=o.failure_type or FailureType.HARD,
                delivery_log_id=o.delivery_log_id,
                now=now,
            )


def record_late_failure(
    conn: Connection,
    delivery_log_id: int,
    failure_type: FailureType,
    reason: str,
    now: datetime,
    *,
    quarantine: bool,
) -> DeliveryStatus | None:
    """A message that was sent failed later (an asynchronous bounce, SPEC §3.4
    updateEventStatus): its delivery log becomes failed with ``reason``, and its event, when
    that log is the event's and the event is ``sent``, ``delivery_failed`` with a timeline
    step; with ``quarantine``, its address goes to quarantine (whatever the log's status).

    Returns the delivery log's status before (only a ``sent`` log changes), or None when
    there is no such delivery log. Call it inside the transaction that keeps the report, so
    that all of it is stored or none.
    """
    # locks the delivery log, then its event: the order the outcome writer locks them in
    found = conn.execute(
        select(
            delivery_log.c.status,
            delivery_log.c.event_id,
            delivery_log.c.address,
            delivery_log.c.channel,
        )
        .where(delivery_log.c.id == delivery_log_id)
        .with_for_update()
    ).first()
    if found is None:
        return None
    before = DeliveryStatus(found.status)
    if before is DeliveryStatus.SENT:
        conn.execute(
            update(delivery_log)
            .where(delivery_log.c.id == delivery_log_id)
            .values(
                status=int(DeliveryStatus.FAILED),
                failure_type=failure_type.value,
                failure_reason=reason,
                last_modified=now,
            )
        )
        # RETURNING, not the row count, says whether the event followed
        moved = conn.execute(
            update(event)
            .where(
                event.c.id == found.event_id,
                event.c.delivery_log_id == delivery_log_id,
                event.c.status == int(EventStatus.SENT),
            )
            .values(status=int(EventStatus.DELIVERY_FAILED), last_modified=now)
            .returning(event.c.id)
        ).first()
        if moved is not None:
            _HISTORY.execute(
                conn, [_change(found.event_id, EventStatus.DELIVERY_FAILED, reason)], at=now
            )
            fallbacks.fall_back(conn, [(found.event_id, delivery_log_id)], now)
    if quarantine:
        quarantine_address(
            conn,
            found.address,
            Channel(found.channel),
            reason=reason,
            failure_type=failure_type,
            delivery_log_id=delivery_log_id,
            now=now,
        )
    return before


#: ids named in one ``IN (…)`` list at most
IN_CHUNK = 1_000


def find_by_message_ids(
    conn: Connection, channel: Channel, message_ids: Collection[str]
) -> dict[str, int]:
    """The delivery logs of ``channel`` whose next hop gave them these ids (an SMSC's ids, for
    delivery receipts): message id -> delivery log id, for those found (the newest log of
    an id given twice)."""
    found: dict[str, int] = {}
    ids = sorted(set(message_ids))
    for start in range(0, len(ids), IN_CHUNK):
        rows = conn.execute(
            select(delivery_log.c.message_id, delivery_log.c.id)
            .where(
                delivery_log.c.channel == int(channel),
                delivery_log.c.message_id.in_(ids[start : start + IN_CHUNK]),
            )
            .order_by(delivery_log.c.id)
        )
        found.update({message_id: log_id for message_id, log_id in rows})
    return found


def record_late_deliveries(
    conn: Connection, delivery_log_ids: Collection[int], now: datetime
) -> int:
    """Sent messages are confirmed delivered (delivery receipts): their delivery logs become
    ``delivered``, a chunk of ids per statement; logs in another status are left as they are.
    Their events stay ``sent`` but are marked modified, so that the archive (which follows
    the events' ``last_modified``) takes the change. Returns how many changed."""
    changed = 0
    ids = sorted(delivery_log_ids)
    for start in range(0, len(ids), IN_CHUNK):
        events = [
            row.event_id
            for row in conn.execute(
                update(delivery_log)
                .where(
                    delivery_log.c.id.in_(ids[start : start + IN_CHUNK]),
                    delivery_log.c.status == int(DeliveryStatus.SENT),
                )
                .values(status=int(DeliveryStatus.DELIVERED), last_modified=now)
                .returning(delivery_log.c.event_id)
            )
        ]
        if events:
            # delivery logs, then events: the order the outcome writer locks them in
            conn.execute(
                update(event).where(event.c.id.in_(sorted(events))).values(last_modified=now)
            )
        changed += len(events)
    return changed


def _copy_to_events(
    conn: Connection, changes: Sequence[tuple[int, int, EventStatus, str | None]], now: datetime
) -> None:
    changes = sorted(changes, key=lambda change: change[0])  # events locked in id order
    _FINAL_STATUSES.execute(conn, [(e, log, int(status)) for e, log, status, _ in changes], now=now)
    _HISTORY.execute(conn, [_change(e, status, reason) for e, _, status, reason in changes], at=now)


def quarantine_address(
    conn: Connection,
    address: str,
    channel: Channel,
    *,
    reason: str,
    failure_type: FailureType,
    delivery_log_id: int | None,
    now: datetime,
) -> None:
    """Put ``address`` (lower-cased) in quarantine for ``channel``, or renew its entry with
    this reason (active again if it had been released)."""
    values = {
        "address": address.lower(),
        "channel": int(channel),
        "reason": reason,
        "failure_type": failure_type.value,
        "active": True,
        "delivery_log_id": delivery_log_id,
        "created": now,
        "last_modified": now,
    }
    statement = dialect_insert(conn, quarantine).values(values)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["address", "channel"],
            set_={
                k: statement.excluded[k]
                for k in ("reason", "failure_type", "active", "delivery_log_id", "last_modified")
            },
        )
    )


def copy_final_statuses(
    conn: Connection, after: tuple[datetime, int], now: datetime, limit: int
) -> tuple[int, int, tuple[datetime, int] | None]:
    """Copy final delivery-log statuses onto events whose status differs, for up to ``limit``
    delivery logs past ``after``, a (``last_modified``, id) position, in that order.

    Returns how many events changed, how many logs were scanned, and the position of the
    last one (where the next page starts), or None when nothing was scanned.
    """
    since, after_id = after
    final_codes: list[ColumnClause[Any]] = [literal_column(str(int(s))) for s in FINAL_EVENT_STATUS]
    rows = conn.execute(
        select(
            delivery_log.c.id,
            delivery_log.c.event_id,
            delivery_log.c.status,
            delivery_log.c.failure_reason,
            delivery_log.c.last_modified,
            event.c.status.label("event_status"),
        )
        .join(
            event,
            and_(
                event.c.id == delivery_log.c.event_id, event.c.delivery_log_id == delivery_log.c.id
            ),
        )
        .where(
            or_(
                delivery_log.c.last_modified > since,
                and_(delivery_log.c.last_modified == since, delivery_log.c.id > after_id),
            ),
            delivery_log.c.status.in_(final_codes),
        )
        .order_by(delivery_log.c.last_modified, delivery_log.c.id)
        .limit(limit)
    ).all()
    if not rows:
        return 0, 0, None
    changes = []
    for log_id, event_id, status, reason, _modified, event_status in rows:
        wanted = FINAL_EVENT_STATUS[DeliveryStatus(status)]
        if event_status != wanted:
            changes.append(
                (
                    event_id,
                    log_id,
                    wanted,
                    reason or f"delivery log now {DeliveryStatus(status).label}",
                )
            )
    if changes:
        _copy_to_events(conn, changes, now)
    return len(changes), len(rows), (rows[-1][4], rows[-1][0])


def purge(conn: Connection, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` events in a final status created before ``before``, with their logs and history."""
    finals: list[ColumnClause[Any]] = [
        literal_column(str(int(s)))
        for s in EventStatus
        if s not in (EventStatus.PENDING, EventStatus.PENDING_DELIVERY)
    ]
    ids = [
        r[0]
        for r in conn.execute(
            select(event.c.id)
            .where(event.c.created < before, event.c.status.in_(finals))
            .limit(limit)
        )
    ]
    if not ids:
        return 0
    conn.execute(delete(event_status_change).where(event_status_change.c.event_id.in_(ids)))
    conn.execute(delete(delivery_log).where(delivery_log.c.event_id.in_(ids)))
    conn.execute(delete(event).where(event.c.id.in_(ids)))
    return len(ids)


def purge_stats(conn: Connection, before: datetime) -> int:
    """Delete statistics samples older than ``before``."""
    return conn.execute(delete(stats_sample).where(stats_sample.c.at < before)).rowcount


def sample_stats(
    conn: Connection, since: datetime, until: datetime, now: datetime
) -> list[dict[str, Any]]:
    """Queue sizes now and throughput over [``since``, ``until``), per queue, stored as samples
    taken at ``now`` and returned."""
    samples = []
    for queue in Queue:
        pending_events = conn.execute(
            select(func.count()).where(event.c.queue == queue.value, event.c.status == PENDING)
        ).scalar_one()
        pending_messages = conn.execute(
            select(func.count()).where(
                delivery_log.c.queue == queue.value, delivery_log.c.status.in_(CLAIMABLE)
            )
        ).scalar_one()
        received = conn.execute(
            select(func.count()).where(
                event.c.queue == queue.value, event.c.created >= since, event.c.created < until
            )
        ).scalar_one()
        sent, failed = (
            conn.execute(
                select(func.count()).where(
                    delivery_log.c.queue == queue.value,
                    delivery_log.c.status == literal_column(str(int(s))),
                    delivery_log.c.last_modified >= since,
                    delivery_log.c.last_modified < until,
                )
            ).scalar_one()
            for s in (DeliveryStatus.SENT, DeliveryStatus.FAILED)
        )
        samples.append(
            {
                "at": now,
                "queue": queue.value,
                "pending_events": pending_events,
                "pending_messages": pending_messages,
                "events_received": received,
                "messages_sent": sent,
                "messages_failed": failed,
            }
        )
    conn.execute(insert(stats_sample), samples)
    return samples
