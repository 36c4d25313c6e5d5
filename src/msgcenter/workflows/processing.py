"""rtEventsProcessing and batchEventsProcessing: claim due events, route them, hand them to the senders.

Both are the same loop on a different queue. Real-time work always goes first:
the dispatcher serves real-time messages before batch ones, and the batch
workflow claims a new chunk only when no real-time message is waiting.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection

from msgcenter.deliveries import ClaimedMessage
from msgcenter.events.model import Queue
from msgcenter.routing import RoutingTable, route_events
from msgcenter.sending.dispatcher import Dispatcher
from msgcenter.settings import ProcessingSettings
from msgcenter.store import processing as processing_store
from msgcenter.store import publications as publication_store
from msgcenter.store.database import Database
from msgcenter.workflows.runner import Workflow
from msgcenter.workflows.wakeup import Wakeup


class RoutingSource:
    """The current routing table, rebuilt whenever the publication set changed.

    The check is one cheap query made inside each claim's transaction, so an event
    pushed after a publication committed is always routed with it.
    """

    def __init__(self) -> None:
        self._table = RoutingTable()
        self._marker: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def current(self, conn: Connection) -> RoutingTable:
        """The routing table as of ``conn``'s transaction."""
        marker = publication_store.change_marker(conn)
        with self._lock:
            if marker != self._marker:
                self._table = RoutingTable(publication_store.list_active(conn, any_folder=True))
                self._marker = marker
            return self._table


class EventsProcessing(Workflow):
    """Takes pending events of one queue that are due and turns them into messages being sent."""

    def __init__(
        self,
        queue: Queue,
        db: Database,
        routing: RoutingSource,
        dispatcher: Dispatcher,
        settings: ProcessingSettings,
        wakeup: Wakeup,
    ) -> None:
        super().__init__()
        self.name = "rtEventsProcessing" if queue is Queue.RT else "batchEventsProcessing"
        self.queue = queue
        self.wake = wakeup.event(queue)
        self._db = db
        self._routing = routing
        self._dispatcher = dispatcher
        self._settings = settings
        self._deliveries = processing_store.DeliveryCache()
        self._claim_size = (
            settings.rt_claim_size if queue is Queue.RT else settings.batch_claim_size
        )
        validity = (
            settings.rt_validity_seconds if queue is Queue.RT else settings.batch_validity_seconds
        )
        self._validity = timedelta(seconds=validity)
        self._lease = timedelta(seconds=settings.claim_lease_seconds)
        self._next_retry_look = 0.0

    async def run_once(self) -> float:
        if self.queue is Queue.BATCH and self._dispatcher.waiting(Queue.RT):
            return 0.01  # real-time messages are waiting: let them go first
        room = self._dispatcher.room(self.queue, self._claim_size)
        if room <= 0:
            await self._dispatcher.drained(self.queue)
            return 0
        claimed, taken = await asyncio.to_thread(self._claim, room)
        self._dispatcher.submit(claimed)
        return 0 if taken >= room else self._settings.poll_interval_seconds

    def _claim(self, room: int) -> tuple[list[ClaimedMessage], int]:
        """Claim new events, then due retries with the room left; returns the messages and how many items were taken."""
        now = datetime.now(UTC)
        with self._db.write() as conn:
            events = processing_store.lock_due_events(conn, self.queue, room, now)
            routing = route_events(events, self.queue, self._routing.current(conn))
            held = processing_store.quarantined(conn, routing.addresses())
            claim = processing_store.record_routing(
                conn,
                self.queue,
                routing.holding(held),
                self._deliveries,
                now,
                lease=self._lease,
                validity=self._validity,
            )
        messages, taken = claim.messages, claim.events
        # Due retries and lapsed claims are not latency-critical: look for them once per
        # poll interval, unless the last look filled the room (a backlog is draining).
        if taken < room and time.monotonic() >= self._next_retry_look:
            with self._db.write() as conn:
                retries = processing_store.claim_due_attempts(
                    conn, self.queue, room - taken, now, lease=self._lease
                )
            messages += retries
            taken += len(retries)
            backlog = len(retries) >= room - claim.events
            self._next_retry_look = time.monotonic() + (
                0 if backlog else self._settings.poll_interval_seconds
            )
        return messages, taken
