"""Named queries of the reports (SPEC §4): the hourly aggregates, kept by the archiving run, and
the sums the reports read from them.

``report_hour`` holds, per execution instance, hour of the events' creation,
event type, channel and folder, what every archived event of that key adds:
one event, one count for its final status, and, when it has a delivery log,
its queuing time (log created − event created), and for a sent event its
sending time (sent − log created) and total time (sent − event created), as
sums of milliseconds and as a histogram over ``msgcenter.reports.BUCKET_BOUNDS``.

Each page import adds the page's difference in its own transaction: for every
event of the page that the import inserts or replaces (a newer version: a late
status change), its new contribution minus the one of the row it replaces;
rows not newer than the archive change nothing, so re-runs and overlaps add
nothing. An archived event carries its delivery log's times (``queued_at``,
``sent_at``), so its contribution is a function of its own row, computed by
the database (:func:`add_contributions`, expressed once for both stores): on
PostgreSQL inside the statement that merges the page's events
(:func:`merged_deltas`), on SQLite from the staged page before the merge
(:func:`event_deltas`). ``report_queue_hour`` does the same for the queue-size
samples, which are only ever added (the archived samples table tells a new one
from a re-read one).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Integer,
    Select,
    Table,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal,
    literal_column,
    select,
    true,
    tuple_,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.selectable import CompoundSelect, FromClause

from msgcenter.events.model import EventStatus
from msgcenter.reports import BUCKET_BOUNDS, BUCKETS, MEASURES, bucket_column
from msgcenter.store.database import dialect_insert
from msgcenter.store.tables import (
    archive_state,
    archived_event,
    archived_stats_sample,
    report_hour,
    report_queue_hour,
)
from msgcenter.store.types import UtcDateTime

#: the key of ``report_hour``
KEY = ("hour", "instance_id", "event_type", "channel", "folder")
#: event status → the ``report_hour`` column counting it
STATUS_COLUMNS = {
    EventStatus.SENT: "sent",
    EventStatus.DELIVERY_FAILED: "delivery_failed",
    EventStatus.IGNORED: "ignored",
    EventStatus.NOT_TAKEN_INTO_ACCOUNT: "not_taken_into_account",
    EventStatus.EXPIRED: "expired",
}
#: the columns of a contribution row, in order (see :func:`contributions`): the delivery
#: log's times are those ``archived_event`` keeps
CONTRIBUTION = (
    "sign",
    "instance_id",
    "created",
    "event_type",
    "channel",
    "folder",
    "status",
    "log_created",
    "sent_at",
)
COUNTERS = tuple(c.name for c in report_hour.columns if c.name not in KEY)

# -- SQL of both stores ------------------------------------------------------------------------


def _postgres(dialect: str) -> bool:
    return dialect == "postgresql"


def hour_of(dialect: str, moment: ColumnElement[Any]) -> ColumnElement[datetime]:
    """``moment`` truncated to its hour (UTC), in SQL of ``dialect``."""
    return _truncated(dialect, moment, "hour")


def day_of(dialect: str, moment: ColumnElement[Any]) -> ColumnElement[datetime]:
    """``moment`` truncated to its day (UTC)."""
    return _truncated(dialect, moment, "day")


def _truncated(dialect: str, moment: ColumnElement[Any], unit: str) -> ColumnElement[datetime]:
    if _postgres(dialect):
        # date_bin (PostgreSQL 14) cuts absolute time from a UTC origin: no time zone involved,
        # and as cheap as reading the column, where date_trunc would cut in the session's zone
        return type_coerce(
            func.date_bin(
                literal_column(f"INTERVAL '1 {unit}'"),
                moment,
                literal_column("TIMESTAMPTZ '2000-01-01 00:00:00+00'"),
            ),
            UtcDateTime(),
        )
    # SQLite keeps UTC timestamps as text, "YYYY-MM-DD HH:MM:SS.ffffff"
    if unit == "hour":
        return type_coerce(func.substr(moment, 1, 13).concat(":00:00.000000"), UtcDateTime())
    return type_coerce(func.substr(moment, 1, 10).concat(" 00:00:00.000000"), UtcDateTime())


def seconds_between(
    dialect: str, start: ColumnElement[Any], end: ColumnElement[Any]
) -> ColumnElement[Any]:
    """Seconds from ``start`` to ``end`` (NULL when either is), exact to the microsecond."""
    if _postgres(dialect):
        # double precision from the interval's whole microseconds: exact for whole seconds
        # and far cheaper than extract()'s numeric
        return func.date_part("epoch", end - start)

    # From the text SQLite keeps, "YYYY-MM-DD HH:MM:SS.ffffff": whole seconds since the epoch
    # and microseconds apart, in integers (julianday's floating days are 20 µs off, which
    # moves a time of exactly one second into the bucket below).
    def micros(moment: ColumnElement[Any]) -> ColumnElement[Any]:
        whole = cast(func.strftime("%s", moment), BigInteger) * 1_000_000
        return whole + cast(func.substr(moment, 21, 6), BigInteger)

    return (micros(end) - micros(start)) / 1_000_000.0


def bucket(dialect: str, seconds: ColumnElement[Any]) -> ColumnElement[Any]:
    """The histogram bucket of ``seconds`` (``msgcenter.reports.bucket_of``)."""
    if _postgres(dialect):
        bounds = ",".join(repr(b) for b in BUCKET_BOUNDS)
        return func.width_bucket(
            cast(seconds, postgresql.DOUBLE_PRECISION),
            literal_column(f"ARRAY[{bounds}]::float8[]"),
        )
    return case(
        (seconds.is_(None), None),
        *((seconds < bound, index) for index, bound in enumerate(BUCKET_BOUNDS)),
        else_=len(BUCKET_BOUNDS),
    )


# -- maintaining report_hour ------------------------------------------------------------------

#: the first key of the PostgreSQL advisory locks taken per instance (the second: its id's hash)
LOCK_CLASS = 0x6D63_7270  # "mcrp"


def lock_instance(conn: Connection, instance_id: str) -> None:
    """Hold the aggregates of one instance until the transaction ends: its page imports then
    follow one another, each seeing what the previous one committed (SQLite has one writer
    at a time already)."""
    if _postgres(conn.dialect.name):
        conn.execute(
            select(func.pg_advisory_xact_lock(LOCK_CLASS, func.hashtext(literal(instance_id))))
        )


def contributions(sign: int, rows: FromClause, events: Any, *, where: Any = None) -> Select[Any]:
    """Contribution rows (:data:`CONTRIBUTION`) of the events of ``rows``, whose columns
    ``events`` names (``archived_event``'s: an event carries its delivery log's times)."""
    query = select(
        _sign(sign).label("sign"),
        events.instance_id,
        events.created.label("created"),
        events.type.label("event_type"),
        events.wished_channel.label("channel"),
        func.coalesce(events.folder, "").label("folder"),
        events.status.label("status"),
        events.queued_at.label("log_created"),
        events.sent_at.label("sent_at"),
    ).select_from(rows)
    return query if where is None else query.where(where)


def add_contributions(dialect: str, rows: Select[Any] | CompoundSelect[Any]) -> Insert:
    """The statement adding up contribution rows into ``report_hour``, key by key.

    Steps kept apart by OFFSET 0 so that the database does not merge them (merged, each
    time would be computed again wherever it is used, each bucket once per bucket column):
    the times of each row; in milliseconds and as buckets; sums per key, status and buckets
    (the rows of a page share few); then those sums pivoted into the histogram columns.
    """
    c = rows.subquery("contribution")
    sent = c.c.status == literal_column(str(int(EventStatus.SENT)))
    # each time once, NULL where it does not apply
    timed = (
        select(
            c.c.sign,
            hour_of(dialect, c.c.created).label("hour"),
            *(c.c[k] for k in KEY[1:]),
            c.c.status,
            seconds_between(dialect, c.c.created, c.c.log_created).label("queue"),
            case((sent, seconds_between(dialect, c.c.log_created, c.c.sent_at))).label("sending"),
            case(
                (
                    and_(sent, c.c.log_created.isnot(None)),
                    seconds_between(dialect, c.c.created, c.c.sent_at),
                )
            ).label("total"),
        )
        .offset(0)
        .subquery("timed")
    )
    t = timed.c
    # a negative time (clock skew) counts as 0 in the sums (see _millis) and falls in bucket
    # 0 like a time under a millisecond
    measured = (
        select(
            *(t[k] for k in ("sign", *KEY, "status")),
            *(_millis(dialect, t[m]).label(f"{m}_ms") for m in MEASURES),
            *(bucket(dialect, t[m]).label(f"{m}_bucket") for m in MEASURES),
        )
        .offset(0)
        .subquery("measured")
    )
    m = measured.c
    shape = [m[k] for k in (*KEY, "status", *(f"{x}_bucket" for x in MEASURES))]
    grouped = (
        select(
            *shape,
            cast(func.sum(m.sign), Integer).label("n"),
            *(func.sum(m.sign * m[f"{x}_ms"]).label(f"{x}_ms") for x in MEASURES),
        )
        .group_by(*shape)
        .offset(0)
        .subquery("grouped")
    )
    g = grouped.c

    def counted(condition: Any) -> ColumnElement[Any]:
        return func.coalesce(func.sum(g.n).filter(condition), 0)

    counters: dict[str, ColumnElement[Any]] = {"events": func.sum(g.n)}
    for status, column in STATUS_COLUMNS.items():
        counters[column] = counted(g.status == literal_column(str(int(status))))
    counters.update(
        queue_count=counted(g.queue_bucket.isnot(None)),
        queue_ms=func.coalesce(func.sum(g.queue_ms), 0),
        sending_count=counted(g.sending_bucket.isnot(None)),
        sending_ms=func.coalesce(func.sum(g.sending_ms), 0),
        total_ms=func.coalesce(func.sum(g.total_ms), 0),
    )
    for measure in MEASURES:
        buckets = g[f"{measure}_bucket"]
        for b in range(BUCKETS):
            counters[bucket_column(measure, b)] = counted(buckets == literal_column(str(b)))
    summed = (
        select(*(g[k] for k in KEY), *(counters[name].label(name) for name in COUNTERS))
        # SQLite reads "ON CONFLICT" after a bare FROM as a join's ON: a WHERE avoids it
        .where(true())
        .group_by(*(g[k] for k in KEY))
    )
    statement = _insert(dialect, report_hour).from_select([*KEY, *COUNTERS], summed)
    return statement.on_conflict_do_update(
        index_elements=list(KEY),
        set_={name: report_hour.c[name] + statement.excluded[name] for name in COUNTERS},
    )


def _millis(dialect: str, seconds: ColumnElement[Any]) -> ColumnElement[Any]:
    """``seconds`` as whole milliseconds, rounded, 0 if negative (NULL, or 0, when NULL: either
    adds nothing to a sum)."""
    if _postgres(dialect):
        # a cast from double precision rounds to the nearest integer
        return cast(func.greatest(seconds, 0.0) * 1000, BigInteger)
    # SQLite's max() of several arguments is NULL when one is
    return cast(func.round(func.max(seconds, 0.0) * 1000), BigInteger)


def _insert(dialect: str, table: Any) -> postgresql.Insert | sqlite.Insert:
    return postgresql.insert(table) if _postgres(dialect) else sqlite.insert(table)


def _sign(value: int) -> ColumnElement[int]:
    # a 4-byte integer constant: its sums add up in 8 bytes, where a bigint's need numeric
    return literal_column(str(value), Integer)


@functools.cache
def event_deltas(dialect: str, staged: Table) -> Insert:
    """The statement adding to ``report_hour`` the difference a page makes, run before the page
    is merged: ``staged`` holds the page's events (as ``archived_event`` rows); an event
    changes the aggregates when it is not archived yet or is newer than its archived row, by
    its new contribution minus the archived one."""
    s, o = staged.c, archived_event.c
    same_event = and_(o.instance_id == s.instance_id, o.event_id == s.event_id)
    new = contributions(
        1,
        staged.outerjoin(archived_event, same_event),
        s,
        where=(o.event_id.is_(None)) | (o.last_modified < s.last_modified),
    )
    old = contributions(
        -1, staged.join(archived_event, same_event), o, where=o.last_modified < s.last_modified
    )
    return add_contributions(dialect, union_all(new, old))


def merged_deltas(merged: Any) -> Insert:
    """The statement adding to ``report_hour`` the difference of the rows an ``INSERT … ON
    CONFLICT DO UPDATE … RETURNING`` of ``archived_event`` inserted or replaced (PostgreSQL).

    ``merged`` is that statement as a CTE returning the new rows and ``inserted``; in the
    same statement, ``archived_event`` still shows the rows it replaced (every part of a
    statement sees one snapshot): so the old contributions are read only for the replaced
    rows, and a page of new events reads nothing.
    """
    o = archived_event.c
    new = contributions(1, merged, merged.c)
    old = contributions(
        -1,
        merged.join(
            archived_event,
            and_(o.instance_id == merged.c.instance_id, o.event_id == merged.c.event_id),
        ),
        o,
        where=~merged.c.inserted,
    )
    return add_contributions("postgresql", union_all(new, old))


@functools.cache
def _rebuild_statement(dialect: str) -> Insert:
    e = archived_event.c
    rows = contributions(1, archived_event, e, where=e.instance_id == bindparam("instance_id"))
    return add_contributions(dialect, rows)


def rebuild(conn: Connection, exec_instance_id: int, instance_id: str) -> None:
    """Compute the aggregates of one instance again from its archived rows, and record them
    built (the archiving run does it before a page when they are not)."""
    lock_instance(conn, instance_id)
    conn.execute(delete(report_hour).where(report_hour.c.instance_id == instance_id))
    conn.execute(_rebuild_statement(conn.dialect.name), {"instance_id": instance_id})
    conn.execute(
        update(archive_state)
        .where(archive_state.c.exec_instance_id == exec_instance_id)
        .values(reports_built=True)
    )


# -- maintaining report_queue_hour ------------------------------------------------------------

SAMPLE_COLUMNS = (
    "instance_id",
    "sample_id",
    "at",
    "queue",
    "pending_events",
    "pending_messages",
    "events_received",
    "messages_sent",
    "messages_failed",
)


def add_samples(conn: Connection, instance_id: str, rows: Sequence[tuple[Any, ...]]) -> int:
    """Archive queue-size samples (values in :data:`SAMPLE_COLUMNS` order after the instance id)
    not archived yet, and add them to ``report_queue_hour``; returns how many were new."""
    if not rows:
        return 0
    statement = (
        dialect_insert(conn, archived_stats_sample)
        .on_conflict_do_nothing(index_elements=["instance_id", "sample_id"])
        .returning(
            archived_stats_sample.c.at,
            archived_stats_sample.c.queue,
            archived_stats_sample.c.pending_events,
            archived_stats_sample.c.pending_messages,
        )
    )
    added = conn.execute(
        statement,
        [dict(zip(SAMPLE_COLUMNS, (instance_id, *values), strict=True)) for values in rows],
    ).all()
    hours: dict[tuple[datetime, str], list[int]] = {}
    for at, queue, events, messages in added:
        key = (at.replace(minute=0, second=0, microsecond=0), queue)
        held = hours.get(key)
        if held is None:
            hours[key] = [1, events, events, events, messages, messages, messages]
            continue
        held[0] += 1
        held[1] += events
        held[2] = min(held[2], events)
        held[3] = max(held[3], events)
        held[4] += messages
        held[5] = min(held[5], messages)
        held[6] = max(held[6], messages)
    if hours:
        upsert = dialect_insert(conn, report_queue_hour)
        t, new = report_queue_hour.c, upsert.excluded
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=["hour", "instance_id", "queue"],
                set_={
                    "samples": t.samples + new.samples,
                    "pending_events_sum": t.pending_events_sum + new.pending_events_sum,
                    "pending_events_min": _least(t.pending_events_min, new.pending_events_min),
                    "pending_events_max": _greatest(t.pending_events_max, new.pending_events_max),
                    "pending_messages_sum": t.pending_messages_sum + new.pending_messages_sum,
                    "pending_messages_min": _least(
                        t.pending_messages_min, new.pending_messages_min
                    ),
                    "pending_messages_max": _greatest(
                        t.pending_messages_max, new.pending_messages_max
                    ),
                },
            ),
            [
                {
                    "hour": hour,
                    "instance_id": instance_id,
                    "queue": queue,
                    "samples": v[0],
                    "pending_events_sum": v[1],
                    "pending_events_min": v[2],
                    "pending_events_max": v[3],
                    "pending_messages_sum": v[4],
                    "pending_messages_min": v[5],
                    "pending_messages_max": v[6],
                }
                for (hour, queue), v in sorted(hours.items())
            ],
        )
    return len(added)


def _least(a: Any, b: Any) -> ColumnElement[Any]:
    return case((b < a, b), else_=a)


def _greatest(a: Any, b: Any) -> ColumnElement[Any]:
    return case((b > a, b), else_=a)


# -- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportFilter:
    """Which aggregate rows a report sums: hours in [``start``, ``end``), and optionally one
    instance (its instance id), channel, event type and folder ("" for no folder)."""

    start: datetime
    end: datetime
    instance_id: str | None = None
    channel: int | None = None
    event_type: str | None = None
    folder: str | None = None


#: what a report groups aggregate rows by
GROUPS = ("hour", "day", "event_type", "instance_id", "queue")


def event_sums(
    conn: Connection, where: ReportFilter, by: Sequence[str], columns: Iterable[str]
) -> list[dict[str, Any]]:
    """Sums of ``columns`` of ``report_hour`` over ``where``, one row per group of ``by``
    ("hour", "day", "event_type", "instance_id")."""
    t = report_hour.c
    groups = [_group(conn.dialect.name, t, g) for g in by]
    query = select(*groups, *(func.sum(t[c]).label(c) for c in columns)).where(
        t.hour >= where.start, t.hour < where.end
    )
    for column, value in (
        (t.instance_id, where.instance_id),
        (t.channel, where.channel),
        (t.event_type, where.event_type),
        (t.folder, where.folder),
    ):
        if value is not None:
            query = query.where(column == value)
    if groups:
        query = query.group_by(*groups).order_by(*groups)
    return [dict(row) for row in conn.execute(query).mappings()]


def queue_sums(
    conn: Connection, start: datetime, end: datetime, instance_id: str | None, by: Sequence[str]
) -> list[dict[str, Any]]:
    """Queue-size sums, minimums and maximums over hours in [``start``, ``end``), one row per
    group of ``by`` ("queue", "hour", "day")."""
    t = report_queue_hour.c
    groups = [_group(conn.dialect.name, t, g) for g in by]
    query = select(
        *groups,
        func.sum(t.samples).label("samples"),
        *(
            aggregate(t[f"{name}_{part}"]).label(f"{name}_{part}")
            for name in ("pending_events", "pending_messages")
            for part, aggregate in (("sum", func.sum), ("min", func.min), ("max", func.max))
        ),
    ).where(t.hour >= start, t.hour < end)
    if instance_id is not None:
        query = query.where(t.instance_id == instance_id)
    if groups:
        query = query.group_by(*groups).order_by(*groups)
    return [dict(row) for row in conn.execute(query).mappings()]


def _group(dialect: str, columns: Any, name: str) -> ColumnElement[Any]:
    if name == "day":
        return day_of(dialect, columns.hour).label("day")
    return columns[name].label(name)  # type: ignore[no-any-return]


# -- retention ----------------------------------------------------------------------------------


def purge(conn: Connection, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` archived samples taken before ``before``, and the aggregates of
    hours that ended before it; returns how many samples went."""
    key = (archived_stats_sample.c.instance_id, archived_stats_sample.c.sample_id)
    samples = conn.execute(
        delete(archived_stats_sample).where(
            tuple_(*key).in_(select(*key).where(archived_stats_sample.c.at < before).limit(limit))
        )
    ).rowcount
    hour = before.replace(minute=0, second=0, microsecond=0)
    conn.execute(delete(report_hour).where(report_hour.c.hour < hour))
    conn.execute(delete(report_queue_hour).where(report_queue_hour.c.hour < hour))
    return samples
