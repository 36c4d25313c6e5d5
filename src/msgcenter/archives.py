"""Archive pages: what an execution instance hands to the control instance's archiving (SPEC §2, §4).

An event page holds the events that reached a final status after a keyset
cursor — their ``(last_modified, id)`` — with their delivery logs; a
quarantine page holds the quarantine rows changed after a cursor; a tracking
page the tracking logs (opens, clicks) recorded after a cursor; a stats page
the queue-size samples (``statsSampler``) taken after a cursor. Pages
travel column by column (one list per field): as JSON from the admin API
(``web`` method) or from the same query run on the execution database
(``database`` method). Every page is checked here, field by field, before
anything of it is stored; checks run per column so that a 5,000-event page
costs milliseconds, not a Python loop per value. :class:`ArchiveState` is where
one execution instance's archive stands on the control instance.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import orjson

from msgcenter.errors import InvalidInputError, MsgcenterError
from msgcenter.events.model import EventStatus

#: the event statuses an event never leaves on its own (SPEC §3.3), the ones archived
FINAL_STATUSES = frozenset(int(s) for s in EventStatus) - {
    EventStatus.PENDING,
    EventStatus.PENDING_DELIVERY,
}
#: a keyset position: (last_modified, id) of the last row taken
Cursor = tuple[datetime, int]
#: a page part, one list per field, all of the same length
Columns = dict[str, list[Any]]


class ArchivePageError(MsgcenterError):
    """A page from an execution instance cannot be archived (missing field, wrong type, not JSON)."""

    code = "invalid-archive-page"

    def __init__(self, detail: str) -> None:
        super().__init__("invalid archive page", detail=detail)


@dataclass(frozen=True, slots=True)
class Field:
    """One exported field: its type, and whether every row must have it."""

    name: str
    kind: type
    required: bool = True


EVENT_FIELDS = (
    Field("id", int),
    Field("queue", str),
    Field("type", str),
    Field("status", int),
    Field("wished_channel", int),
    Field("email", str, required=False),
    Field("mobile_phone", str, required=False),
    Field("external_id", str, required=False),
    Field("folder", str, required=False),
    Field("delivery_log_id", int, required=False),
    Field("created", datetime),
    Field("last_modified", datetime),
)
DELIVERY_LOG_FIELDS = (
    Field("id", int),
    Field("event_id", int),
    # the template and folder of the log's delivery
    Field("template", str),
    Field("folder", str, required=False),
    Field("channel", int),
    Field("address", str),
    Field("status", int),
    Field("failure_type", str, required=False),
    Field("failure_reason", str, required=False),
    Field("attempts", int),
    Field("created", datetime),
    Field("last_modified", datetime),
    Field("sent_at", datetime, required=False),
)
QUARANTINE_FIELDS = (
    Field("id", int),
    Field("address", str),
    Field("channel", int),
    Field("reason", str),
    Field("failure_type", str),
    Field("active", bool),
    Field("last_modified", datetime),
)

TRACKING_FIELDS = (
    Field("id", int),
    Field("delivery_log_id", int),
    Field("event_id", int),
    Field("kind", str),
    Field("url", str, required=False),
    Field("user_agent", str, required=False),
    Field("created", datetime),
)
TRACKING_KINDS = frozenset({"open", "click"})

STATS_FIELDS = (
    Field("id", int),
    Field("at", datetime),
    Field("queue", str),
    Field("pending_events", int),
    Field("pending_messages", int),
    Field("events_received", int),
    Field("messages_sent", int),
    Field("messages_failed", int),
)
STATS_QUEUES = frozenset({"rt", "batch"})


@dataclass(frozen=True, slots=True)
class EventPage:
    """Final events after a cursor, oldest change first, with their delivery logs."""

    events: Columns
    delivery_logs: Columns

    def __len__(self) -> int:
        return len(self.events["id"])

    def cursor(self) -> Cursor | None:
        """The greatest (last_modified, id) of the page: where the next page starts."""
        if not len(self):
            return None
        return max(zip(self.events["last_modified"], self.events["id"], strict=True))


@dataclass(frozen=True, slots=True)
class RowPage:
    """Rows of one kind after a keyset cursor over (``ORDER``, id)."""

    rows: Columns
    #: the timestamp column of the cursor
    ORDER: ClassVar[str] = "last_modified"

    def __len__(self) -> int:
        return len(self.rows["id"])

    def cursor(self) -> Cursor | None:
        """The greatest (``ORDER``, id) of the page: where the next page starts."""
        if not len(self):
            return None
        return max(zip(self.rows[self.ORDER], self.rows["id"], strict=True))


class QuarantinePage(RowPage):
    """Quarantine rows changed after a cursor."""

    __slots__ = ()


class TrackingPage(RowPage):
    """Tracking logs recorded after a cursor (they never change once recorded)."""

    __slots__ = ()
    ORDER = "created"


class StatsPage(RowPage):
    """Queue-size and throughput samples taken after a cursor (they never change once taken)."""

    __slots__ = ()
    ORDER = "at"


def transpose(fields: Sequence[Field], rows: Sequence[Sequence[Any]]) -> Columns:
    """Rows (values in ``fields`` order) as columns."""
    if not rows:
        return {f.name: [] for f in fields}
    return {f.name: list(values) for f, values in zip(fields, zip(*rows, strict=True), strict=True)}


def encode_event_page(page: EventPage) -> bytes:
    """The JSON body of ``GET /api/v1/admin/archive``."""
    return orjson.dumps({"events": page.events, "delivery_logs": page.delivery_logs})


def encode_quarantine_page(page: QuarantinePage) -> bytes:
    """The JSON body of ``GET /api/v1/admin/archive/quarantine``."""
    return orjson.dumps({"quarantine": page.rows})


def encode_tracking_page(page: TrackingPage) -> bytes:
    """The JSON body of ``GET /api/v1/admin/archive/tracking``."""
    return orjson.dumps({"tracking": page.rows})


def encode_stats_page(page: StatsPage) -> bytes:
    """The JSON body of ``GET /api/v1/admin/archive/stats``."""
    return orjson.dumps({"stats": page.rows})


def decode_event_page(body: bytes) -> EventPage:
    """An event page from its JSON body, checked; :class:`ArchivePageError` says what is wrong."""
    document = _document(body, ("events", "delivery_logs"))
    return checked_event_page(EventPage(document["events"], document["delivery_logs"]))


def decode_quarantine_page(body: bytes) -> QuarantinePage:
    """A quarantine page from its JSON body, checked."""
    document = _document(body, ("quarantine",))
    return checked_quarantine_page(QuarantinePage(document["quarantine"]))


def decode_tracking_page(body: bytes) -> TrackingPage:
    """A tracking page from its JSON body, checked."""
    document = _document(body, ("tracking",))
    return checked_tracking_page(TrackingPage(document["tracking"]))


def decode_stats_page(body: bytes) -> StatsPage:
    """A stats page from its JSON body, checked."""
    document = _document(body, ("stats",))
    return checked_stats_page(StatsPage(document["stats"]))


def checked_event_page(page: EventPage) -> EventPage:
    """``page`` with every field checked (timestamps parsed); final statuses only."""
    events = checked("events", EVENT_FIELDS, page.events)
    logs = checked("delivery_logs", DELIVERY_LOG_FIELDS, page.delivery_logs)
    wrong = next((row for row, s in enumerate(events["status"]) if s not in FINAL_STATUSES), None)
    if wrong is not None:
        raise ArchivePageError(
            f"{_where('events', events['id'], wrong)}: status {events['status'][wrong]} is not final"
        )
    on_page = set(events["id"])
    stray = next((row for row, e in enumerate(logs["event_id"]) if e not in on_page), None)
    if stray is not None:
        raise ArchivePageError(
            f"{_where('delivery_logs', logs['id'], stray)}: its event "
            f"{logs['event_id'][stray]} is not in the page"
        )
    return EventPage(events, logs)


def checked_quarantine_page(page: QuarantinePage) -> QuarantinePage:
    """``page`` with every field checked (timestamps parsed)."""
    return QuarantinePage(checked("quarantine", QUARANTINE_FIELDS, page.rows))


def checked_tracking_page(page: TrackingPage) -> TrackingPage:
    """``page`` with every field checked (timestamps parsed); kinds are "open" or "click"."""
    rows = checked("tracking", TRACKING_FIELDS, page.rows)
    wrong = next((row for row, k in enumerate(rows["kind"]) if k not in TRACKING_KINDS), None)
    if wrong is not None:
        raise ArchivePageError(
            f"{_where('tracking', rows['id'], wrong)}: kind {rows['kind'][wrong]!r} is not "
            "open or click"
        )
    return TrackingPage(rows)


def checked_stats_page(page: StatsPage) -> StatsPage:
    """``page`` with every field checked (timestamps parsed); queues are "rt" or "batch"."""
    rows = checked("stats", STATS_FIELDS, page.rows)
    wrong = next((row for row, q in enumerate(rows["queue"]) if q not in STATS_QUEUES), None)
    if wrong is not None:
        raise ArchivePageError(
            f"{_where('stats', rows['id'], wrong)}: queue {rows['queue'][wrong]!r} is not rt or batch"
        )
    return StatsPage(rows)


def checked(part: str, fields: Sequence[Field], data: object) -> Columns:
    """The columns of one page part, checked against ``fields``; ISO timestamps become datetimes."""
    if not isinstance(data, dict):
        raise ArchivePageError(f"'{part}' is not an object of columns")
    ids = data.get("id")
    if not isinstance(ids, list):
        raise ArchivePageError(f"'{part}' has no 'id' column")
    columns: Columns = {}
    for field in fields:
        values = data.get(field.name)
        if not isinstance(values, list):
            raise ArchivePageError(f"'{part}' has no '{field.name}' column")
        if len(values) != len(ids):
            raise ArchivePageError(
                f"'{part}' column '{field.name}' has {len(values)} values for {len(ids)} rows"
            )
        if field.required and None in values:
            row = values.index(None)
            raise ArchivePageError(f"{_where(part, ids, row)}: '{field.name}' is missing")
        columns[field.name] = _typed(part, field, values, ids)
    if len(set(ids)) != len(ids):
        first: dict[Any, int] = {}
        row = next(row for row, i in enumerate(ids) if first.setdefault(i, row) != row)
        raise ArchivePageError(f"{_where(part, ids, row)}: the id appears twice in the page")
    return columns


def _typed(part: str, field: Field, values: list[Any], ids: list[Any]) -> list[Any]:
    if field.kind is datetime:
        values = _timestamps(part, field, values, ids)
    # ``type(v) is int`` also refuses booleans, which JSON true/false would give
    wrong = next(
        (row for row, v in enumerate(values) if v is not None and type(v) is not field.kind), None
    )
    if wrong is not None:
        raise ArchivePageError(
            f"{_where(part, ids, wrong)}: '{field.name}' is {values[wrong]!r}, "
            f"not {'a timestamp' if field.kind is datetime else field.kind.__name__}"
        )
    return values


def _timestamps(part: str, field: Field, values: list[Any], ids: list[Any]) -> list[Any]:
    """ISO 8601 strings (JSON) parsed into aware datetimes; datetimes (database) kept."""
    parse = datetime.fromisoformat
    try:
        parsed = [v if v is None or type(v) is datetime else parse(v) for v in values]
    except (TypeError, ValueError):
        # leave the culprit as it came, for the type check to name it
        parsed = [v if v is None or type(v) is datetime else _or_same(parse, v) for v in values]
    naive = next(
        (row for row, v in enumerate(parsed) if type(v) is datetime and v.tzinfo is None), None
    )
    if naive is not None:
        raise ArchivePageError(
            f"{_where(part, ids, naive)}: '{field.name}' {values[naive]!r} has no UTC offset"
        )
    return parsed


def _or_same(parse: Any, value: Any) -> Any:
    try:
        return parse(value)
    except (TypeError, ValueError):
        return value


def _where(part: str, ids: list[Any], row: int) -> str:
    return f"{part} row {row + 1}" + (f" (id {ids[row]})" if ids[row] is not None else "")


def _document(body: bytes, parts: Sequence[str]) -> dict[str, Any]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ArchivePageError(f"the page is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ArchivePageError("the page is not a JSON object")
    for part in parts:
        if part not in document:
            raise ArchivePageError(f"the page has no '{part}'")
    return document


@dataclass(frozen=True, slots=True)
class ArchiveState:
    """Where the archive of one execution instance stands."""

    exec_instance_id: int
    watermark_at: datetime | None
    watermark_id: int
    quarantine_at: datetime | None
    tracking_at: datetime | None
    last_run: datetime | None
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    lease_until: datetime | None
    archived_events: int
    #: time of the newest archived queue-size sample
    stats_at: datetime | None = None
    #: whether the report aggregates hold every archived event (see ``store/reports.py``)
    reports_built: bool = False

    @classmethod
    def empty(cls, exec_instance_id: int) -> ArchiveState:
        """The state of an archive never run."""
        return cls(exec_instance_id, None, 0, None, None, None, None, None, None, None, 0)

    @property
    def watermark(self) -> Cursor | None:
        """The (last_modified, id) of the newest event archived, if any."""
        return None if self.watermark_at is None else (self.watermark_at, self.watermark_id)


@dataclass(frozen=True, slots=True)
class Purged:
    """What one purge batch deleted."""

    events: int
    delivery_logs: int
    deliveries: int
    tracking_logs: int
    #: archived queue-size samples
    stats_samples: int = 0


# -- the archived history, as the control instance shows it -----------------------------------

#: most events one page of the archived-event search holds
MAX_SEARCH_PAGE = 500


@dataclass(frozen=True, slots=True)
class ArchivedEvent:
    """One archived event, as the search lists it."""

    #: the execution instance's internal name (None when it is no longer registered)
    instance: str | None
    instance_id: str
    event_id: int
    queue: str
    type: str
    #: the status's name: sent, ignored, delivery_failed, not_taken_into_account, expired
    status: str
    channel: str
    email: str | None
    mobile_phone: str | None
    external_id: str | None
    folder: str | None
    template: str | None
    delivery_log_id: int | None
    created: datetime
    last_modified: datetime
    archived_at: datetime
    #: when its delivery log was created (None: not routed), and its message sent
    queued_at: datetime | None
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class ArchivedDeliveryLog:
    """An archived delivery log: one message sent or attempted."""

    delivery_log_id: int
    template: str | None
    #: the ISO week of its archived delivery
    iso_week: str | None
    channel: str
    address: str
    #: the delivery-log status's name: sent, failed, ignored, expired
    status: str
    failure_type: str | None
    failure_reason: str | None
    attempts: int
    created: datetime
    last_modified: datetime
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class ArchivedTracking:
    """An archived open or click."""

    tracking_log_id: int
    delivery_log_id: int
    kind: str
    url: str | None
    user_agent: str | None
    created: datetime


@dataclass(frozen=True, slots=True)
class TimelineStep:
    """One step of an event's life."""

    at: datetime
    #: received, queued, sent, failed, ignored, expired, not_taken_into_account, open, click,
    #: archived
    step: str
    detail: str


@dataclass(frozen=True, slots=True)
class ArchivedEventDetail:
    """One archived event with its delivery logs, opens and clicks, and its timeline."""

    event: ArchivedEvent
    delivery_logs: list[ArchivedDeliveryLog]
    tracking: list[ArchivedTracking]
    timeline: list[TimelineStep]


@dataclass(frozen=True, slots=True)
class ArchivedEventPage:
    """A page of the archived-event search, newest first; ``next`` asks for the following one."""

    events: list[ArchivedEvent]
    next: str | None


#: where a page of the search stops: (created, instance id, event id) of its last event
SearchCursor = tuple[datetime, str, int]


def encode_search_cursor(cursor: SearchCursor) -> str:
    """An opaque token for :data:`SearchCursor` (URL-safe)."""
    created, instance_id, event_id = cursor
    raw = orjson.dumps([created.isoformat(), instance_id, event_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_search_cursor(token: str) -> SearchCursor:
    """The cursor of a token from :func:`encode_search_cursor`; :class:`InvalidInputError` if it
    is not one."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created, instance_id, event_id = orjson.loads(raw)
        moment = datetime.fromisoformat(created)
        if (
            moment.tzinfo is None
            or not isinstance(instance_id, str)
            or type(event_id) is not int
            or not 0 <= event_id < 2**63
        ):
            raise ValueError(token)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise InvalidInputError(
            "invalid cursor",
            detail="cursor: not a cursor this search returned (take `next` from the previous page)",
        ) from None
    return moment, instance_id, event_id


def timeline(
    detail_event: ArchivedEvent,
    logs: Sequence[ArchivedDeliveryLog],
    tracking: Sequence[ArchivedTracking],
) -> list[TimelineStep]:
    """An event's life from its archived rows, oldest first: received, queued per delivery log,
    sent or its failure, opens and clicks, its final status, and its archiving."""
    steps = [
        TimelineStep(
            detail_event.created,
            "received",
            f"{detail_event.queue} event of type '{detail_event.type}'",
        )
    ]
    for log in logs:
        steps.append(
            TimelineStep(
                log.created,
                "queued",
                f"{log.channel} message to {log.address}"
                + (f" (template '{log.template}')" if log.template else ""),
            )
        )
        if log.sent_at is not None:
            steps.append(TimelineStep(log.sent_at, "sent", f"accepted for {log.address}"))
        if log.status != "sent":
            reason = ": ".join(r for r in (log.failure_type, log.failure_reason) if r)
            steps.append(
                TimelineStep(log.last_modified, log.status, reason or f"message {log.status}")
            )
    for tracked in tracking:
        steps.append(
            TimelineStep(tracked.created, tracked.kind, tracked.url or tracked.user_agent or "")
        )
    if not logs:
        steps.append(TimelineStep(detail_event.last_modified, detail_event.status, "no message"))
    steps.append(TimelineStep(detail_event.archived_at, "archived", detail_event.instance_id))
    return sorted(steps, key=lambda s: s.at)
