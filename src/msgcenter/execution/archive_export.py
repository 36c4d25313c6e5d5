"""The archive export of an execution instance: the pages its control instances' archiving pulls
(SPEC §4), encoded as JSON objects of columns (see :mod:`msgcenter.archives`).

An operator restricted to a folder gets only that folder's events, quarantine
rows and tracking logs: this is how several brands share one execution
instance, and each control instance archives only its own. Queue-size samples
measure the whole instance, and every brand gets them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from msgcenter.archives import (
    Cursor,
    encode_event_page,
    encode_quarantine_page,
    encode_stats_page,
    encode_tracking_page,
)
from msgcenter.errors import InvalidInputError, PermissionDeniedError
from msgcenter.operators import Operator, Right
from msgcenter.store import archive as archive_store
from msgcenter.store.database import Database


class PageKind(enum.Enum):
    """What a page holds."""

    EVENTS = "events"
    QUARANTINE = "quarantine"
    TRACKING = "tracking"
    STATS = "stats"


_EXPORTS: dict[
    PageKind,
    tuple[Callable[[Connection, Cursor | None, int, str | None], Any], Callable[[Any], bytes]],
] = {
    PageKind.EVENTS: (archive_store.export_events, encode_event_page),
    PageKind.QUARANTINE: (archive_store.export_quarantine, encode_quarantine_page),
    PageKind.TRACKING: (archive_store.export_tracking, encode_tracking_page),
    PageKind.STATS: (archive_store.export_stats, encode_stats_page),
}


class ArchiveExport:
    """Encoded archive pages of one execution instance."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def page(
        self,
        kind: PageKind,
        operator: Operator,
        *,
        after_at: datetime | None,
        after_id: int,
        limit: int,
        folder: str | None,
    ) -> bytes:
        """The page of ``kind`` after the cursor (``after_at``, ``after_id``), of ``folder`` (an
        operator restricted to a folder always gets its own), as JSON."""
        operator.require(Right.MC_ADMIN)
        target = _folder(operator, folder)
        after = _cursor(after_at, after_id)
        export, encode = _EXPORTS[kind]
        with self._db.read() as conn:
            exported = export(conn, after, limit, target)
        return encode(exported)


def _folder(operator: Operator, asked: str | None) -> str | None:
    if operator.folder is None:
        return asked
    if asked not in (None, operator.folder):
        raise PermissionDeniedError(
            f"operator '{operator.login}' is restricted to folder '{operator.folder}', "
            f"not '{asked}'"
        )
    return operator.folder


def _cursor(after_at: datetime | None, after_id: int) -> Cursor | None:
    if after_at is None:
        return None
    if after_at.tzinfo is None:
        raise InvalidInputError(
            "after_at has no UTC offset", detail="after_at must carry an offset, e.g. +00:00"
        )
    return after_at, after_id
