"""Named queries on the event queues: enqueue, read one with its history, search."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any, cast

import orjson
import psycopg
from sqlalchemy import (
    Connection,
    Integer,
    RowMapping,
    String,
    and_,
    insert,
    select,
    text,
)

from msgcenter.deliveries import DeliveryLogEntry, DeliveryStatus
from msgcenter.events.model import (
    Channel,
    Enqueued,
    EnqueueRequest,
    EventFilter,
    EventStatus,
    NewEvent,
    Queue,
    StatusChange,
    StoredEvent,
)
from msgcenter.store.bulk import array_param, sequence_ids, unnested_arrays
from msgcenter.store.tables import delivery_log, event, event_status_change

#: the PostgreSQL NOTIFY channel that wakes the processing workflows
NOTIFY_CHANNEL = "msgcenter_events"


def enqueue(conn: Connection, requests: Sequence[EnqueueRequest], now: datetime) -> list[Enqueued]:
    """Insert the events of ``requests`` in one statement and return their ids, request by request.

    An event whose idempotency key its operator already used gets the first id
    and is not stored again, whether the first push was earlier or in the same
    group.
    """
    known = _known_idempotency_keys(conn, requests)
    rows: list[tuple[Any, ...]] = []
    # per event: (existing id or None, index of the row inserted for it or None, fresh)
    slots: list[list[tuple[int | None, int | None, bool]]] = []
    reused: list[str | None] = []
    # key -> (index of the row inserted for it, fingerprint of its event)
    placed: dict[tuple[int | None, str], tuple[int, str | None]] = {}
    for request in requests:
        reused_key = _reused_key(request, known, placed)
        reused.append(reused_key)
        request_slots: list[tuple[int | None, int | None, bool]] = []
        for new in [] if reused_key else request.events:
            key = (request.operator_id, new.idempotency_key) if new.idempotency_key else None
            if key is not None and key in known:
                request_slots.append((known[key][0], None, False))
            elif key is not None and key in placed:
                request_slots.append((None, placed[key][0], False))
            else:
                if key is not None:
                    placed[key] = (len(rows), new.fingerprint)
                request_slots.append((None, len(rows), True))
                rows.append(_values(request, new, now))
        slots.append(request_slots)
    inserted: list[int] = []
    if rows and conn.dialect.name == "postgresql":
        inserted = _copy_rows(conn, rows)
    elif rows:
        result = conn.execute(
            insert(event).returning(event.c.id, sort_by_parameter_order=True),
            [dict(zip(ROW_COLUMNS, values, strict=True)) for values in rows],
        )
        inserted = [r[0] for r in result]
    return [
        Enqueued(
            ids=[
                existing if existing is not None else inserted[cast(int, row)]
                for existing, row, _ in request_slots
            ],
            fresh=[fresh for _, _, fresh in request_slots],
            key_reused=reused_key,
        )
        for request_slots, reused_key in zip(slots, reused, strict=True)
    ]


def _reused_key(
    request: EnqueueRequest,
    known: dict[tuple[int | None, str], tuple[int, str | None]],
    placed: dict[tuple[int | None, str], tuple[int, str | None]],
) -> str | None:
    """The first idempotency key of ``request`` that another request used (stored before, or
    placed earlier in this group) with another fingerprint; None when it may be stored."""
    for new in request.events:
        if new.idempotency_key is None or new.fingerprint is None:
            continue
        key = (request.operator_id, new.idempotency_key)
        first = known.get(key) or placed.get(key)
        if first is not None and first[1] != new.fingerprint:
            return new.idempotency_key
    return None


#: the columns intake writes (every one but the id), in the order of :func:`_values`
ROW_COLUMNS = (
    "queue",
    "type",
    "status",
    "email",
    "mobile_phone",
    "registration_token",
    "mobile_app_uuid",
    "wished_channel",
    "email_format",
    "external_id",
    "origin",
    "language",
    "country",
    "correlation_id",
    "scheduled",
    "ctx",
    "ctx_format",
    "extra",
    "idempotency_key",
    "idempotency_fingerprint",
    "operator_id",
    "folder",
    "error_count",
    "process_requested_on",
    "created",
    "last_modified",
    "publication_id",
    "delivery_id",
    "delivery_log_id",
    "fallback_of",
)
#: the id comes first, from the sequence
COPY_STATEMENT = f"COPY event (id, {', '.join(ROW_COLUMNS)}) FROM STDIN"


def _copy_rows(conn: Connection, rows: list[tuple[Any, ...]]) -> list[int]:
    """PostgreSQL: ids from the sequence in one query, then the rows by COPY.

    A multi-row INSERT of a whole commit group is a different, very long SQL text
    each time, which the driver must re-parse on every commit; COPY streams the rows
    through one fixed statement and is the fastest way in.
    """
    ids = sequence_ids(conn, "event", len(rows))
    driver = cast(psycopg.Connection[Any], conn.connection.driver_connection)
    with driver.cursor() as cursor, cursor.copy(COPY_STATEMENT) as copy:
        for event_id, values in zip(ids, rows, strict=True):
            copy.write_row((event_id, *values))
    return ids


def notify_enqueued(conn: Connection, queues: set[Queue]) -> None:
    """On PostgreSQL, tell listening workers (in any process) that ``queues`` have new events.

    The notification is sent when the transaction commits, never before.
    """
    if conn.dialect.name == "postgresql":
        for queue in sorted(queues):
            conn.execute(
                text("SELECT pg_notify(:channel, :queue)"),
                {"channel": NOTIFY_CHANNEL, "queue": queue.value},
            )


#: the stored events of the wanted (operator, idempotency key) pairs, given as two arrays
#: (PostgreSQL): one index lookup per pair, whatever the table's size
_WANTED_KEYS = unnested_arrays("wanted", {"operator_id": Integer(), "key": String()})
_KNOWN_KEYS = select(
    event.c.operator_id, event.c.idempotency_key, event.c.id, event.c.idempotency_fingerprint
).join_from(
    event,
    _WANTED_KEYS,
    and_(
        event.c.operator_id == _WANTED_KEYS.c.operator_id,
        event.c.idempotency_key == _WANTED_KEYS.c.key,
    ),
)


def _known_idempotency_keys(
    conn: Connection, requests: Sequence[EnqueueRequest]
) -> dict[tuple[int | None, str], tuple[int, str | None]]:
    """The id and event fingerprint of each idempotency key of ``requests`` already used.

    Looked up key by key in the unique index: a list of ``(operator, key)`` pairs matched
    with ``IN`` had PostgreSQL read every key of the operator (2.9 s for 400 keys among
    160,000, at a soak's 700 events/s), which slowed the commit, which grew the next group.
    A key without an operator matches nothing, as before.
    """
    wanted = {
        (r.operator_id, e.idempotency_key)
        for r in requests
        for e in r.events
        if e.idempotency_key and r.operator_id is not None
    }
    if not wanted:
        return {}
    if conn.dialect.name == "postgresql":
        operators, keys = zip(*wanted, strict=True)
        found = conn.execute(
            _KNOWN_KEYS,
            {
                array_param("wanted", "operator_id"): list(operators),
                array_param("wanted", "key"): list(keys),
            },
        ).all()
    else:
        found = []
        for operator_id in {op for op, _ in wanted}:
            found += conn.execute(
                select(*_KNOWN_KEYS.selected_columns).where(
                    event.c.operator_id == operator_id,
                    event.c.idempotency_key.in_([k for op, k in wanted if op == operator_id]),
                )
            ).all()
    return {(op, key): (event_id, digest) for op, key, event_id, digest in found}


def _values(request: EnqueueRequest, new: NewEvent, now: datetime) -> tuple[Any, ...]:
    """One new event's row, in :data:`ROW_COLUMNS` order (a tuple: no dict per event on the
    batch path)."""
    return (
        request.queue.value,
        new.type,
        EventStatus.PENDING.value,
        new.email,
        new.mobile_phone,
        new.registration_token,
        new.mobile_app_uuid,
        int(new.wished_channel),
        int(new.email_format),
        new.external_id,
        new.origin,
        new.language,
        new.country,
        new.correlation_id,
        new.scheduled,
        new.ctx,
        new.ctx_format.value,
        orjson.dumps(new.extra).decode() if new.extra else None,
        new.idempotency_key,
        new.fingerprint,
        request.operator_id,
        request.folder,
        0,
        new.scheduled if new.scheduled and new.scheduled > now else now,
        now,
        now,
        None,
        None,
        None,
        None,
    )


def _stored_event(row: RowMapping) -> StoredEvent:
    values = {f.name: row[f.name] for f in fields(StoredEvent) if f.name in row}
    values["queue"] = Queue(row["queue"])
    values["status"] = EventStatus(row["status"])
    values["extra"] = orjson.loads(row["extra"]) if row["extra"] else {}
    return StoredEvent(**values)


def get(conn: Connection, event_id: int, *, folder: str | None = None) -> StoredEvent | None:
    """One event with its timeline, or None (also when it lies outside ``folder``)."""
    query = select(event).where(event.c.id == event_id)
    if folder is not None:
        query = query.where(event.c.folder == folder)
    row = conn.execute(query).mappings().first()
    if row is None:
        return None
    stored = _stored_event(row)
    stored.history = [StatusChange(EventStatus.PENDING, stored.created)]
    changes = conn.execute(
        select(event_status_change.c.status, event_status_change.c.at, event_status_change.c.reason)
        .where(event_status_change.c.event_id == event_id)
        .order_by(event_status_change.c.at, event_status_change.c.id)
    )
    stored.history += [StatusChange(EventStatus(s), at, reason) for s, at, reason in changes]
    stored.fallback_event = conn.execute(
        select(event.c.id).where(event.c.fallback_of == event_id)
    ).scalar()
    return stored


def search(
    conn: Connection, criteria: EventFilter, *, before_id: int | None, limit: int
) -> list[StoredEvent]:
    """Events matching ``criteria``, newest first, with ids below ``before_id`` (keyset paging)."""
    conditions = []
    for name in ("type", "email", "external_id", "folder"):
        value = getattr(criteria, name)
        if value is not None:
            conditions.append(event.c[name] == value)
    if criteria.queue is not None:
        conditions.append(event.c.queue == criteria.queue.value)
    if criteria.status is not None:
        conditions.append(event.c.status == int(criteria.status))
    if criteria.created_from is not None:
        conditions.append(event.c.created >= criteria.created_from)
    if criteria.created_to is not None:
        conditions.append(event.c.created < criteria.created_to)
    if before_id is not None:
        conditions.append(event.c.id < before_id)
    query = select(event).where(and_(True, *conditions)).order_by(event.c.id.desc()).limit(limit)
    return [_stored_event(row) for row in conn.execute(query).mappings()]


def delivery_logs(conn: Connection, event_id: int) -> list[DeliveryLogEntry]:
    """The messages of one event, oldest first."""
    rows = conn.execute(
        select(delivery_log).where(delivery_log.c.event_id == event_id).order_by(delivery_log.c.id)
    ).mappings()
    return [
        DeliveryLogEntry(
            id=row["id"],
            publication_id=row["publication_id"],
            channel=Channel(row["channel"]),
            address=row["address"],
            status=DeliveryStatus(row["status"]),
            failure_type=row["failure_type"],
            failure_reason=row["failure_reason"],
            attempts=row["attempts"],
            message_id=row["message_id"],
            created=row["created"],
            last_modified=row["last_modified"],
            sent_at=row["sent_at"],
        )
        for row in rows
    ]
