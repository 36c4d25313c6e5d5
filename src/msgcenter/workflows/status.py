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

    async def run_once(self) -> float:
        full_page = await asyncio.to_thread(self.copy)
        return 0 if full_page else self._interval

    def copy(self) -> bool:
        """One reconciliation pass; True when a full page was scanned (more may be waiting)."""
        with self._db.write() as conn:
            states = {s.name: s for s in workflow_store.list_all(conn)}
            mark = states[self.name].watermark if self.name in states else None
            since = EPOCH + timedelta(microseconds=mark) - OVERLAP if mark else EPOCH
            _changed, newest = processing_store.copy_final_statuses(
                conn, since, datetime.now(UTC), PAGE
            )
            if newest is not None:
                newest_mark = int((newest - EPOCH) / timedelta(microseconds=1))
                if mark is None or newest_mark > mark:
                    workflow_store.set_watermark(conn, self.name, newest_mark)
                    return _changed >= PAGE
        return False
