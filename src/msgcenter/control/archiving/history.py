"""The archived history of a control instance (SPEC §4): search the archived events, and one
event's timeline with its delivery logs, opens and clicks.

An operator restricted to a folder sees only that folder's events; an event
of another folder is "not found", as if it did not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection

from msgcenter.archives import (
    MAX_SEARCH_PAGE,
    ArchivedEventDetail,
    ArchivedEventPage,
    decode_search_cursor,
    encode_search_cursor,
    timeline,
)
from msgcenter.errors import ConflictError, InvalidInputError, NotFoundError
from msgcenter.events.model import EventStatus
from msgcenter.operators import Operator, Right
from msgcenter.store import archive_search
from msgcenter.store import control_instances as instance_store
from msgcenter.store.database import Database


@dataclass(frozen=True, slots=True)
class EventSearch:
    """What to look for (None: anything); ``cursor`` is the ``next`` of the previous page."""

    event_type: str | None = None
    #: a status's name or code (sent, ignored, delivery_failed, not_taken_into_account, expired)
    status: str | None = None
    #: an email address or a phone number, exactly as the event carried it
    address: str | None = None
    external_id: str | None = None
    #: created at or after
    start: datetime | None = None
    #: created before
    end: datetime | None = None
    #: an execution instance's internal name
    instance: str | None = None
    limit: int = 50
    cursor: str | None = None


class ArchivedEvents:
    """The archived events of every execution instance registered on one control instance."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def search(self, query: EventSearch, operator: Operator) -> ArchivedEventPage:
        """A page of the archived events matching ``query``, newest first.

        Raises :class:`InvalidInputError` for a bad status, period, limit or cursor, and
        :class:`NotFoundError` for an unknown instance.
        """
        operator.require(Right.MC_ADMIN)
        if not 1 <= query.limit <= MAX_SEARCH_PAGE:
            raise InvalidInputError(
                "invalid limit", detail=f"limit: from 1 to {MAX_SEARCH_PAGE} events per page"
            )
        start, end = _utc(query.start), _utc(query.end)
        if start is not None and end is not None and start >= end:
            raise InvalidInputError(
                "invalid period",
                detail=f"from ({start.isoformat()}) must be before to ({end.isoformat()})",
            )
        after = None if query.cursor is None else decode_search_cursor(query.cursor)
        with self._db.read() as conn:
            names = _names(conn)
            where = archive_search.SearchFilter(
                event_type=query.event_type,
                status=_status(query.status),
                address=query.address,
                external_id=query.external_id,
                start=start,
                end=end,
                instance_id=_instance_id(conn, query.instance),
                folder=operator.folder,
            )
            found = archive_search.search(conn, where, after, query.limit + 1, names)
        more = len(found) > query.limit
        events = found[: query.limit]
        last = events[-1] if more else None
        return ArchivedEventPage(
            events=events,
            next=None
            if last is None
            else encode_search_cursor((last.created, last.instance_id, last.event_id)),
        )

    def event(self, instance: str, event_id: int, operator: Operator) -> ArchivedEventDetail:
        """One archived event of ``instance`` (its name, or its instance id once it is no longer
        registered) with its history; :class:`NotFoundError` if it is not archived (or of
        another folder than the operator's)."""
        operator.require(Right.MC_ADMIN)
        with self._db.read() as conn:
            names = _names(conn)
            by_name = {name: instance_id for instance_id, name in names.items()}
            instance_id = by_name.get(instance, instance)
            found = archive_search.event(conn, instance_id, event_id, names)
            if found is None or (operator.folder is not None and found.folder != operator.folder):
                raise NotFoundError(
                    f"no archived event {event_id} of '{instance}'",
                    detail="it is not archived yet, or was purged past the retention",
                )
            log_ids = [] if found.delivery_log_id is None else [found.delivery_log_id]
            logs = archive_search.delivery_logs(conn, instance_id, log_ids)
            tracked = archive_search.tracking(conn, instance_id, event_id)
        return ArchivedEventDetail(found, logs, tracked, timeline(found, logs, tracked))


def _names(conn: Connection) -> dict[str, str]:
    """Instance id → internal name of every initialized instance."""
    return {
        i.instance_id: i.name for i in instance_store.list_all(conn) if i.instance_id is not None
    }


def _instance_id(conn: Connection, name: str | None) -> str | None:
    if name is None:
        return None
    found = instance_store.get(conn, name)
    if found.instance_id is None:
        raise ConflictError(
            f"execution instance '{name}' has no instance id",
            detail="initialize its connection first: it has no archive yet",
        )
    return found.instance_id


def _status(value: str | None) -> EventStatus | None:
    if value is None:
        return None
    try:
        status = EventStatus.parse(value.strip())
    except (KeyError, ValueError):
        status = None
    if status is None or status in (EventStatus.PENDING, EventStatus.PENDING_DELIVERY):
        finals = ", ".join(s.label for s in EventStatus if s > EventStatus.PENDING_DELIVERY)
        raise InvalidInputError(
            f"unknown status {value!r}",
            detail=f"status: one of {finals} (archived events are final)",
        )
    return status


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
