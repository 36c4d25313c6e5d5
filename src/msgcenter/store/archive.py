"""Named queries of archiving, on both sides (SPEC §4).

Execution side: the export of final events after a keyset cursor, with their
delivery logs, of quarantine rows changed and of tracking logs recorded after
a cursor — the same
queries serve the admin API (``web`` method) and a control instance reading
the execution database (``database`` method).

Control side: the import. Every row is an upsert keyed by the execution
instance's id and the row's own id, and never replaces a newer archived
version with an older one, so re-runs and overlapping runs cannot duplicate
or regress anything. Each page is imported in one transaction together with
the watermark that covers it: a run killed half-way loses nothing and the
next one resumes from the last committed page. On PostgreSQL a page is
COPied into a temporary table and merged with one statement per table. The
same transaction adds to the report aggregates what the page changes
(:mod:`msgcenter.store.reports`); the pages of one instance are imported one
at a time, so that each one's difference is taken against what the previous
one committed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import Any, cast

import psycopg
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Integer,
    MetaData,
    Select,
    SmallInteger,
    Table,
    and_,
    delete,
    func,
    literal_column,
    or_,
    select,
    true,
    tuple_,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql.selectable import FromClause

from msgcenter.archives import (
    DELIVERY_LOG_FIELDS,
    EVENT_FIELDS,
    FINAL_STATUSES,
    QUARANTINE_FIELDS,
    STATS_FIELDS,
    TRACKING_FIELDS,
    ArchiveState,
    Cursor,
    EventPage,
    Purged,
    QuarantinePage,
    RowPage,
    StatsPage,
    TrackingPage,
    transpose,
)
from msgcenter.store import reports as report_store
from msgcenter.store.database import dialect_insert, insert_or_ignore
from msgcenter.store.tables import (
    archive_state,
    archived_delivery,
    archived_delivery_log,
    archived_event,
    archived_quarantine,
    archived_tracking_log,
    delivery,
    delivery_log,
    event,
    quarantine,
    stats_sample,
    tracking_log,
)
from msgcenter.store.types import UtcDateTime

#: rows per statement when a list of keys is sent as bound parameters (SQLite's limit is 32,766)
KEY_CHUNK = 5_000

# -- execution side: export --------------------------------------------------------------


def export_events(
    conn: Connection, after: Cursor | None, limit: int, folder: str | None
) -> EventPage:
    """Up to ``limit`` events in a final status after ``after`` (of ``folder`` if given), with their logs.

    One statement: the page of events, left-joined to their delivery logs and the
    logs' deliveries (for the template).
    """
    postgres = conn.dialect.name == "postgresql"
    page = _final_events_page(after, limit, folder, postgres).subquery("page")
    logs = (
        select(
            delivery_log.c.id.label("log_id"),
            delivery_log.c.event_id,
            delivery.c.template,
            delivery.c.folder.label("log_folder"),
            *(
                _read(delivery_log.c[f.name], postgres, f"log_{f.name}")
                for f in DELIVERY_LOG_FIELDS[4:]
            ),
        )
        # an outer join, so that a log without its delivery is refused for want of a template
        .outerjoin(delivery, delivery.c.id == delivery_log.c.delivery_id)
        .where(delivery_log.c.event_id == page.c.id)
    )
    if postgres:
        # Plans from real cursor values, not generic ones (psycopg prepares a statement run
        # repeatedly): a generic plan guesses the range after the cursor and may sort every
        # final event after it, on each page. Timestamps in UTC: see ``_read``.
        conn.execute(
            select(
                func.set_config("plan_cache_mode", "force_custom_plan", True),
                func.set_config("TimeZone", "UTC", True),
            )
        )
        # A LATERAL subquery behind OFFSET 0 (which keeps the planner from flattening it)
        # probes the event_id index once per event of the page; a plain join may hash the
        # whole delivery_log table instead, on each page. SQLite always probes the index.
        joined: FromClause = logs.offset(0).lateral("logs")
        query = select(page, joined).select_from(page.outerjoin(joined, true()))
    else:
        joined = logs.subquery("logs")
        query = select(page, joined).select_from(
            page.outerjoin(joined, joined.c.event_id == page.c.id)
        )
    rows = conn.execute(query.order_by(page.c.last_modified, page.c.id, joined.c.log_id)).all()
    width = len(EVENT_FIELDS)
    events: list[Sequence[Any]] = []
    log_rows: list[Sequence[Any]] = []
    previous = None
    for row in rows:
        if row[0] != previous:
            events.append(row[:width])
            previous = row[0]
        if row[width] is not None:
            log_rows.append(row[width:])
    return EventPage(transpose(EVENT_FIELDS, events), transpose(DELIVERY_LOG_FIELDS, log_rows))


def _read(column: Column[Any], postgres: bool, name: str) -> Any:
    # psycopg already gives timestamptz values as aware datetimes, in UTC since the
    # export sets the session's TimeZone: skipping UtcDateTime's conversion of each value
    # takes a third off the export's CPU time.
    if postgres and isinstance(column.type, UtcDateTime):
        return type_coerce(column, DateTime(timezone=True)).label(name)
    return column.label(name)


def _final_events_page(
    after: Cursor | None, limit: int, folder: str | None, postgres: bool
) -> Select[Any]:
    # One ordered index range scan per final status on (status, last_modified), merged:
    # with ``status IN (…)`` the database would have to sort every event after the
    # cursor on each page, which makes a large backlog quadratic.
    columns = [_read(event.c[f.name], postgres, f.name) for f in EVENT_FIELDS]
    branches = []
    for status in sorted(FINAL_STATUSES):
        branch = select(*columns).where(event.c.status == literal_column(str(status)))
        if after is not None:
            branch = branch.where(_after(event.c.last_modified, event.c.id, after))
        if folder is not None:
            branch = branch.where(event.c.folder == folder)
        # SQLite takes ORDER BY / LIMIT in a compound's members only inside a subquery
        limited = branch.order_by(event.c.last_modified, event.c.id).limit(limit).subquery()
        branches.append(select(limited))
    merged = union_all(*branches).subquery("final_events")
    return select(merged).order_by(merged.c.last_modified, merged.c.id).limit(limit)


def export_quarantine(
    conn: Connection, after: Cursor | None, limit: int, folder: str | None
) -> QuarantinePage:
    """Up to ``limit`` quarantine rows changed after ``after``.

    With ``folder``, only the rows whose quarantining delivery log belongs to
    that folder: one brand does not see another brand's addresses.
    """
    query = select(*(quarantine.c[f.name] for f in QUARANTINE_FIELDS))
    if after is not None:
        query = query.where(_after(quarantine.c.last_modified, quarantine.c.id, after))
    if folder is not None:
        query = query.join(delivery_log, delivery_log.c.id == quarantine.c.delivery_log_id).where(
            delivery_log.c.folder == folder
        )
    rows = conn.execute(
        query.order_by(quarantine.c.last_modified, quarantine.c.id).limit(limit)
    ).all()
    return QuarantinePage(transpose(QUARANTINE_FIELDS, rows))


def export_tracking(
    conn: Connection, after: Cursor | None, limit: int, folder: str | None
) -> TrackingPage:
    """Up to ``limit`` tracking logs recorded after ``after``, of ``folder`` when given."""
    query = select(*(tracking_log.c[f.name] for f in TRACKING_FIELDS))
    if after is not None:
        query = query.where(_after(tracking_log.c.created, tracking_log.c.id, after))
    if folder is not None:
        query = query.where(tracking_log.c.folder == folder)
    rows = conn.execute(
        query.order_by(tracking_log.c.created, tracking_log.c.id).limit(limit)
    ).all()
    return TrackingPage(transpose(TRACKING_FIELDS, rows))


def export_stats(
    conn: Connection, after: Cursor | None, limit: int, folder: str | None
) -> StatsPage:
    """Up to ``limit`` queue-size samples taken after ``after``.

    Samples measure the whole instance, so ``folder`` does not narrow them: a brand
    sharing an execution instance sees the queues its events wait in.
    """
    del folder
    query = select(*(stats_sample.c[f.name] for f in STATS_FIELDS))
    if after is not None:
        query = query.where(_after(stats_sample.c.at, stats_sample.c.id, after))
    rows = conn.execute(query.order_by(stats_sample.c.at, stats_sample.c.id).limit(limit)).all()
    return StatsPage(transpose(STATS_FIELDS, rows))


def _after(modified: Column[Any], row_id: Column[Any], after: Cursor) -> Any:
    # Spelt out rather than a row comparison so that the index range starts at the cursor.
    at, last_id = after
    return and_(modified >= at, or_(modified > at, row_id > last_id))


# -- control side: state -------------------------------------------------------------------


def states(conn: Connection) -> dict[int, ArchiveState]:
    """Every archive's state, by execution instance (row) id."""
    rows = conn.execute(select(archive_state)).mappings()
    return {
        r["exec_instance_id"]: ArchiveState(**{f.name: r[f.name] for f in fields(ArchiveState)})
        for r in rows
    }


def take_lease(conn: Connection, exec_instance_id: int, now: datetime, until: datetime) -> bool:
    """Hold the archive of one instance until ``until`` unless another run holds it; records the run."""
    insert_or_ignore(
        conn, archive_state, {"exec_instance_id": exec_instance_id}, ["exec_instance_id"]
    )
    taken = conn.execute(
        update(archive_state)
        .where(
            archive_state.c.exec_instance_id == exec_instance_id,
            or_(archive_state.c.lease_until.is_(None), archive_state.c.lease_until < now),
        )
        .values(lease_until=until, last_run=now)
    ).rowcount
    return taken == 1


def finish_run(conn: Connection, exec_instance_id: int, now: datetime, error: str | None) -> None:
    """Release the lease and record the outcome: a success clears the last error."""
    values: dict[str, Any] = {"lease_until": None}
    if error is None:
        values.update(last_success=now, last_error=None, last_error_at=None)
    else:
        values.update(last_error=error[:4000], last_error_at=now)
    conn.execute(
        update(archive_state)
        .where(archive_state.c.exec_instance_id == exec_instance_id)
        .values(**values)
    )


# -- control side: import ------------------------------------------------------------------


def iso_week(moment: datetime) -> str:
    """The ISO 8601 week of a UTC moment, as ``2026-W49``."""
    year, week, _ = moment.astimezone(UTC).isocalendar()
    return f"{year}-W{week:02d}"


def iso_weeks(moments: Iterable[datetime]) -> list[str]:
    """:func:`iso_week` of each moment; pages come mostly in time order, so the week of the
    previous moment is tried first."""
    weeks = []
    start = end = datetime.max.replace(tzinfo=UTC)
    week = ""
    for moment in moments:
        if not start <= moment < end:
            week = iso_week(moment)
            day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            start = day - timedelta(days=day.weekday())
            end = start + timedelta(days=7)
        weeks.append(week)
    return weeks


class DeliveryIds:
    """Archived delivery ids by (template, channel, folder, ISO week) of one instance, created on first use.

    Use one per run and drop it when a page fails: an id created in a
    rolled-back transaction does not exist.
    """

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self._ids: dict[tuple[str, int, str, str], int] = {}

    def resolve(
        self, conn: Connection, keys: Iterable[tuple[str, int, str, str]], now: datetime
    ) -> dict[tuple[str, int, str, str], int]:
        """Ids of every key (created if needed)."""
        # in one order, so that overlapping runs creating the same deliveries cannot deadlock
        for key in sorted(set(keys) - self._ids.keys()):
            template, channel, folder, week = key
            values = {
                "instance_id": self.instance_id,
                "template": template,
                "channel": channel,
                "folder": folder,
                "iso_week": week,
            }
            insert_or_ignore(conn, archived_delivery, {**values, "created": now}, list(values))
            self._ids[key] = conn.execute(
                select(archived_delivery.c.id).where(
                    *(archived_delivery.c[k] == v for k, v in values.items())
                )
            ).scalar_one()
        return self._ids


def upsert_page(conn: Connection, page: EventPage, deliveries: DeliveryIds, now: datetime) -> int:
    """Upsert a checked page's events and delivery logs; returns how many events are new.

    Commit it together with :func:`record_page`, which moves the watermark over it.
    """
    instance_id = deliveries.instance_id
    events, logs = page.events, page.delivery_logs
    folders = ["" if f is None else f for f in logs["folder"]]
    weeks = iso_weeks(logs["last_modified"])
    keys = list(zip(logs["template"], logs["channel"], folders, weeks, strict=True))
    ids = deliveries.resolve(conn, keys, now)
    template_of = dict(zip(logs["id"], logs["template"], strict=True))
    times_of = dict(
        zip(logs["id"], zip(logs["created"], logs["sent_at"], strict=True), strict=True)
    )
    times = [times_of.get(log_id, NO_TIMES) for log_id in events["delivery_log_id"]]
    count = len(page)
    event_rows = list(
        zip(
            repeat(instance_id, count),
            events["id"],
            events["queue"],
            events["type"],
            events["status"],
            events["wished_channel"],
            events["email"],
            events["mobile_phone"],
            events["external_id"],
            events["folder"],
            [template_of.get(log_id) for log_id in events["delivery_log_id"]],
            events["delivery_log_id"],
            events["created"],
            events["last_modified"],
            repeat(now, count),
            [queued for queued, _ in times],
            [sent for _, sent in times],
            strict=False,  # ``repeat`` is endless
        )
    )
    log_rows = list(
        zip(
            repeat(instance_id, len(keys)),
            logs["id"],
            [ids[key] for key in keys],
            logs["event_id"],
            logs["channel"],
            logs["address"],
            logs["status"],
            logs["failure_type"],
            logs["failure_reason"],
            logs["attempts"],
            logs["created"],
            logs["last_modified"],
            logs["sent_at"],
            strict=False,
        )
    )
    if not event_rows:
        return 0
    report_store.lock_instance(conn, instance_id)
    event_key, log_key = ["instance_id", "event_id"], ["instance_id", "delivery_log_id"]
    if conn.dialect.name == "postgresql":
        _stage(conn, archived_event, EVENT_COLUMNS, event_rows)
        inserted: int = conn.execute(_merge_events_and_reports()).scalar_one()
        _upsert(conn, archived_delivery_log, LOG_COLUMNS, log_rows, log_key)
        return inserted
    staged = _stage(conn, archived_event, EVENT_COLUMNS, event_rows)
    conn.execute(report_store.event_deltas(conn.dialect.name, staged))
    new = _upsert(conn, archived_event, EVENT_COLUMNS, event_rows, event_key)
    _upsert(conn, archived_delivery_log, LOG_COLUMNS, log_rows, log_key)
    return new


def record_page(
    conn: Connection,
    exec_instance_id: int,
    cursor: Cursor | None,
    new_events: int,
    lease_until: datetime,
) -> None:
    """Advance the watermark to ``cursor`` (never back), count the new events, renew the lease."""
    if cursor is not None:
        _advance_watermark(conn, exec_instance_id, cursor)
    conn.execute(
        update(archive_state)
        .where(archive_state.c.exec_instance_id == exec_instance_id)
        .values(
            lease_until=lease_until, archived_events=archive_state.c.archived_events + new_events
        )
    )


def import_quarantine(
    conn: Connection,
    exec_instance_id: int,
    instance_id: str,
    page: QuarantinePage,
    lease_until: datetime,
) -> None:
    """Upsert a checked quarantine page and advance the quarantine watermark, in the caller's transaction."""
    rows = page.rows
    # The execution instance keeps one row per (address, channel): the newest change wins.
    newest: dict[tuple[str, int], tuple[Any, ...]] = {}
    for values in zip(
        rows["address"],
        rows["channel"],
        rows["reason"],
        rows["failure_type"],
        rows["active"],
        rows["last_modified"],
        strict=True,
    ):
        held = newest.get(values[:2])
        if held is None or held[5] < values[5]:
            newest[values[:2]] = values
    _upsert(
        conn,
        archived_quarantine,
        QUARANTINE_COLUMNS,
        [(instance_id, *values) for values in newest.values()],
        ["instance_id", "address", "channel"],
    )
    _advance_mark(conn, exec_instance_id, archive_state.c.quarantine_at, page, lease_until)


def import_tracking(
    conn: Connection,
    exec_instance_id: int,
    instance_id: str,
    page: TrackingPage,
    lease_until: datetime,
) -> int:
    """Insert the tracking logs of a checked page not archived yet and advance the tracking
    watermark, in the caller's transaction; returns how many were new."""
    rows = page.rows
    keys = [(instance_id, i) for i in rows["id"]]
    new = len(keys) - _existing(
        conn, archived_tracking_log, ["instance_id", "tracking_log_id"], keys
    )
    if keys:
        statement = dialect_insert(conn, archived_tracking_log).on_conflict_do_nothing(
            index_elements=["instance_id", "tracking_log_id"]
        )
        conn.execute(
            statement,
            [
                dict(zip(TRACKING_COLUMNS, (instance_id, *values), strict=True))
                for values in zip(*(rows[f.name] for f in TRACKING_FIELDS), strict=True)
            ],
        )
    _advance_mark(conn, exec_instance_id, archive_state.c.tracking_at, page, lease_until)
    return new


#: what the PostgreSQL merge of events returns for the aggregates
MERGED_COLUMNS = (
    "instance_id",
    "event_id",
    "created",
    "type",
    "wished_channel",
    "folder",
    "status",
    "queued_at",
    "sent_at",
)
EVENT_COLUMNS = (
    "instance_id",
    "event_id",
    "queue",
    "type",
    "status",
    "wished_channel",
    "email",
    "mobile_phone",
    "external_id",
    "folder",
    "template",
    "delivery_log_id",
    "created",
    "last_modified",
    "archived_at",
    "queued_at",
    "sent_at",
)
#: the times of an event without a delivery log
NO_TIMES = (None, None)
LOG_COLUMNS = (
    "instance_id",
    "delivery_log_id",
    "archived_delivery_id",
    "event_id",
    "channel",
    "address",
    "status",
    "failure_type",
    "failure_reason",
    "attempts",
    "created",
    "last_modified",
    "sent_at",
)
TRACKING_COLUMNS = (
    "instance_id",
    "tracking_log_id",
    "delivery_log_id",
    "event_id",
    "kind",
    "url",
    "user_agent",
    "created",
)
QUARANTINE_COLUMNS = (
    "instance_id",
    "address",
    "channel",
    "reason",
    "failure_type",
    "active",
    "last_modified",
)


def import_stats(
    conn: Connection,
    exec_instance_id: int,
    instance_id: str,
    page: StatsPage,
    lease_until: datetime,
) -> int:
    """Archive the samples of a checked stats page not archived yet, add them to the queue-size
    aggregates and advance the stats watermark, in the caller's transaction; returns how many
    were new."""
    rows = page.rows
    report_store.lock_instance(conn, instance_id)
    new = report_store.add_samples(
        conn,
        instance_id,
        # the fields in STATS_FIELDS order, which SAMPLE_COLUMNS follows after the instance id
        list(zip(*(rows[f.name] for f in STATS_FIELDS), strict=True)) if len(page) else [],
    )
    _advance_mark(conn, exec_instance_id, archive_state.c.stats_at, page, lease_until)
    return new


def _advance_watermark(conn: Connection, exec_instance_id: int, cursor: Cursor) -> None:
    """Move the event watermark forward to ``cursor``, never back (an overlapping run may be ahead)."""
    at, last_id = cursor
    mark = archive_state.c
    conn.execute(
        update(archive_state)
        .where(
            mark.exec_instance_id == exec_instance_id,
            or_(
                mark.watermark_at.is_(None),
                mark.watermark_at < at,
                and_(mark.watermark_at == at, mark.watermark_id < last_id),
            ),
        )
        .values(watermark_at=at, watermark_id=last_id)
    )


def _advance_mark(
    conn: Connection,
    exec_instance_id: int,
    mark: Column[Any],
    page: RowPage,
    lease_until: datetime,
) -> None:
    """Renew the run's lease and move ``mark`` (a watermark column of ``archive_state``) forward
    to the page's cursor, never back (an overlapping run may be ahead)."""
    held = archive_state.c.exec_instance_id == exec_instance_id
    conn.execute(update(archive_state).where(held).values(lease_until=lease_until))
    cursor = page.cursor()
    if cursor is not None:
        conn.execute(
            update(archive_state)
            .where(held, or_(mark.is_(None), mark < cursor[0]))
            .values({mark.name: cursor[0]})
        )


def _upsert(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    key: list[str],
) -> int:
    """Insert ``rows`` or update the archived ones they are newer than; returns how many were new."""
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        return _copy_upsert(conn, table, columns, rows, key)
    new = len(rows) - _existing(conn, table, key, [row[: len(key)] for row in rows])
    statement = dialect_insert(conn, table)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=key,
            set_={c: statement.excluded[c] for c in columns if c not in key},
            where=table.c.last_modified < statement.excluded.last_modified,
        ),
        [dict(zip(columns, row, strict=True)) for row in rows],
    )
    return new


def _existing(conn: Connection, table: Table, key: list[str], keys: list[tuple[Any, ...]]) -> int:
    found = 0
    for start in range(0, len(keys), KEY_CHUNK):
        found += conn.execute(
            select(func.count()).where(
                tuple_(*(table.c[k] for k in key)).in_(keys[start : start + KEY_CHUNK])
            )
        ).scalar_one()
    return found


def _copy_upsert(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    key: list[str],
) -> int:
    _stage(conn, table, columns, rows)
    # an inserted row has no xmax; an updated one has; a row not newer is not returned
    merged = (
        _merge(table, columns, key)
        .returning(literal_column("xmax = 0").label("inserted"))
        .cte("merged")
    )
    return conn.execute(
        select(func.count()).select_from(merged).where(merged.c.inserted)
    ).scalar_one()


@functools.cache
def _merge_events_and_reports() -> Select[Any]:
    """One statement (PostgreSQL) that merges the staged events and adds the difference of those
    it inserted or replaced to the report aggregates, reading the replaced rows only; it
    returns how many events were new. Built once: it is large to compile."""
    merged = (
        _merge(archived_event, EVENT_COLUMNS, ["instance_id", "event_id"])
        .returning(
            *(archived_event.c[c] for c in MERGED_COLUMNS),
            literal_column("xmax = 0").label("inserted"),
        )
        .cte("merged")
    )
    deltas = report_store.merged_deltas(merged).cte("deltas")
    return select(func.count()).select_from(merged).where(merged.c.inserted).add_cte(deltas)


def _stage(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> Table:
    """Put ``rows`` of ``table`` into its temporary staging table (emptied first), and return it."""
    staging = _staging(table)
    conn.execute(CreateTable(staging, if_not_exists=True))
    if conn.dialect.name != "postgresql":
        # SQLite keeps a temporary table's rows past the commit
        conn.execute(delete(staging))
        if rows:
            conn.execute(staging.insert(), [dict(zip(columns, row, strict=True)) for row in rows])
        return staging
    # Binary COPY into a per-session temporary table emptied at each commit (ten times
    # cheaper per row than text COPY in psycopg).
    names = ", ".join(columns)
    raw = cast(psycopg.Connection[Any], conn.connection.driver_connection)
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY {staging.name} ({names}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types([_wire_type(table.c[c]) for c in columns])
        for row in rows:
            copy.write_row(row)
    return staging


def _merge(table: Table, columns: Sequence[str], key: list[str]) -> postgresql.Insert:
    """The merge of ``table``'s staging rows into it: insert, or update the archived rows they
    are newer than (PostgreSQL)."""
    staging = _staging(table)
    statement = postgresql.insert(table).from_select(
        list(columns),
        select(*(staging.c[c] for c in columns)).order_by(*(staging.c[k] for k in key)),
    )
    return statement.on_conflict_do_update(
        index_elements=key,
        set_={c: statement.excluded[c] for c in columns if c not in key},
        where=table.c.last_modified < statement.excluded.last_modified,
    )


def _wire_type(column: Column[Any]) -> str:
    """The PostgreSQL type a binary COPY sends for ``column`` (the text types share one format)."""
    kind = column.type
    for python_type, name in (
        (BigInteger, "int8"),
        (SmallInteger, "int2"),
        (Integer, "int4"),
        (Boolean, "bool"),
        (UtcDateTime, "timestamptz"),
    ):
        if isinstance(kind, python_type):
            return name
    return "text"


_staging_tables: dict[str, Table] = {}


def _staging(table: Table) -> Table:
    found = _staging_tables.get(table.name)
    if found is None:
        found = Table(
            f"staging_{table.name}",
            MetaData(),
            *(Column(c.name, c.type) for c in table.columns),
            prefixes=["TEMPORARY"],
            postgresql_on_commit="DELETE ROWS",
        )
        _staging_tables[table.name] = found
    return found


# -- control side: retention ------------------------------------------------------------------


def purge(conn: Connection, before: datetime, limit: int) -> Purged:
    """Delete up to ``limit`` archived events created before ``before``, as many delivery logs
    last changed before it and as many tracking logs recorded before it, then the deliveries of
    weeks ended before it that hold no log any more; and up to ``limit`` queue-size samples
    taken before it, with the report aggregates of the hours ended before it.
    """
    events = _delete_batch(
        conn,
        archived_event,
        (archived_event.c.instance_id, archived_event.c.event_id),
        archived_event.c.created < before,
        limit,
    )
    logs = _delete_batch(
        conn,
        archived_delivery_log,
        (archived_delivery_log.c.instance_id, archived_delivery_log.c.delivery_log_id),
        archived_delivery_log.c.last_modified < before,
        limit,
    )
    deliveries = conn.execute(
        delete(archived_delivery).where(
            archived_delivery.c.iso_week < iso_week(before),
            ~select(archived_delivery_log.c.delivery_log_id)
            .where(archived_delivery_log.c.archived_delivery_id == archived_delivery.c.id)
            .exists(),
        )
    ).rowcount
    tracking = _delete_batch(
        conn,
        archived_tracking_log,
        (archived_tracking_log.c.instance_id, archived_tracking_log.c.tracking_log_id),
        archived_tracking_log.c.created < before,
        limit,
    )
    samples = report_store.purge(conn, before, limit)
    return Purged(events, logs, deliveries, tracking, samples)


def _delete_batch(
    conn: Connection, table: Table, key: tuple[Column[Any], ...], condition: Any, limit: int
) -> int:
    """Delete up to ``limit`` rows of ``table`` meeting ``condition``; returns how many went."""
    return conn.execute(
        delete(table).where(tuple_(*key).in_(select(*key).where(condition).limit(limit)))
    ).rowcount
