"""updateEventStatus: events follow their delivery log's final status, including late changes.

The senders already copy a final status onto its event in the transaction
that records it; this workflow reconciles every other change — an
asynchronous bounce that turns ``sent`` into ``delivery_failed`` hours later,
or an operator's correction — by scanning delivery logs changed since its
watermark (with an overlap that covers transactions committed out of order).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from msgcenter.settings import ProcessingSettings
from msgcenter.store import processing as processing_store
from msgcenter.store import workflows as workflow_store
from msgcenter.store.database import Database
from msgcenter.workflows.runner import Workflow

#: re-scan this far behind the watermark: a transaction may commit after a later one
OVERLAP = timedelta(seconds=30)
PAGE = 5_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class UpdateEventStatus(Workflow):
    """Copies final delivery-log statuses onto events whose status differs."""

    name = "updateEventStatus"

    def __init__(self, db: Database, settings: ProcessingSettings) -> None:
        super().__init__()
        self._db = db
        self._interval = settings.status_copy_interval_seconds
        #: where the pass under way stands; None: the next pass starts at the watermark
        self._cursor: tuple[datetime, int] | None = None

    async def run_once(self) -> float:
        full_page = await asyncio.to_thread(self.copy)
        return 0 if full_page else self._interval

    def copy(self) -> bool:
        """One page of a reconciliation pass; True when the page was full (the pass goes on).

        A pass pages by (``last_modified``, id) from a little behind the watermark, so it
        gets past the overlap however many delivery logs changed within it.
        """
        with self._db.write() as conn:
            states = {s.name: s for s in workflow_store.list_all(conn)}
            mark = states[self.name].watermark if self.name in states else None
            if self._cursor is None:
                since = EPOCH + timedelta(microseconds=mark) - OVERLAP if mark else EPOCH
                self._cursor = (since, 0)
            _changed, scanned, last = processing_store.copy_final_statuses(
                conn, self._cursor, datetime.now(UTC), PAGE
            )
            if last is not None:
                newest_mark = int((last[0] - EPOCH) / timedelta(microseconds=1))
                if mark is None or newest_mark > mark:
                    workflow_store.set_watermark(conn, self.name, newest_mark)
        full = scanned >= PAGE
        self._cursor = last if full else None
        return full
