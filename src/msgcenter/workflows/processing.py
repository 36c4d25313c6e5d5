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

import structlog
from sqlalchemy import Connection

from msgcenter.deliveries import Claim, ClaimedMessage
from msgcenter.errors import StoreUnavailableError, describe_error
from msgcenter.events.model import EventStatus, Queue
from msgcenter.routing import RoutingTable, route_events
from msgcenter.sending.attempts import retry_delay
from msgcenter.sending.dispatcher import Dispatcher
from msgcenter.settings import ProcessingSettings
from msgcenter.store import processing as processing_store
from msgcenter.store import publications as publication_store
from msgcenter.store import unsubscriptions as unsubscription_store
from msgcenter.store.database import Database
from msgcenter.workflows.runner import Workflow
from msgcenter.workflows.wakeup import Wakeup

log = structlog.get_logger(__name__)


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
        owner: str | None = None,
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
        #: who the claims made here belong to (:mod:`msgcenter.workflows.owners`)
        self._owner = owner

    def look_for_retries(self) -> None:
        """Look for due attempts at the next round (messages were made due at once)."""
        self._next_retry_look = 0.0
        self.wake.set()

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
        try:
            claim = self._claim_events(room, now)
        except StoreUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - one event must not stop the others
            log.warning(
                "a claim failed: its events are taken one by one",
                action="processing.claim_failed",
                queue=self.queue.value,
                error=describe_error(exc),
            )
            claim = self._claim_one_by_one(room, now)
        messages, taken = claim.messages, claim.events
        # Due retries and lapsed claims are not latency-critical: look for them once per
        # poll interval, unless the last look filled the room (a backlog is draining).
        if taken < room and time.monotonic() >= self._next_retry_look:
            with self._db.write() as conn:
                retries = processing_store.claim_due_attempts(
                    conn, self.queue, room - taken, now, lease=self._lease, owner=self._owner
                )
            messages += retries
            taken += len(retries)
            backlog = len(retries) >= room - claim.events
            self._next_retry_look = time.monotonic() + (
                0 if backlog else self._settings.poll_interval_seconds
            )
        return messages, taken

    def _claim_events(self, limit: int, now: datetime, *, into: list[int] | None = None) -> Claim:
        """Lock up to ``limit`` due events, route them and record it, in one transaction;
        ``into`` receives the ids locked (so that a failure can be laid at their door)."""
        with self._deliveries.transaction(), self._db.write() as conn:
            events = processing_store.lock_due_events(conn, self.queue, limit, now)
            if into is not None:
                into.extend(e["id"] for e in events)
            routing = route_events(events, self.queue, self._routing.current(conn))
            held = processing_store.quarantined(conn, routing.addresses())
            opted_out = unsubscription_store.unsubscribed(conn, routing.streams())
            return processing_store.record_routing(
                conn,
                self.queue,
                routing.holding(held, opted_out),
                self._deliveries,
                now,
                lease=self._lease,
                validity=self._validity,
                owner=self._owner,
            )

    def _claim_one_by_one(self, room: int, now: datetime) -> Claim:
        """After a claim failed: each event in a transaction of its own, and the one that fails
        again waits with a backoff (``error_count`` + 1) or expires (SPEC §3.4)."""
        total = Claim()
        for _ in range(room):
            locked: list[int] = []
            try:
                claim = self._claim_events(1, now, into=locked)
            except StoreUnavailableError:
                raise
            except Exception as exc:  # noqa: BLE001 - that event fails alone
                if not locked:
                    raise
                self._fail_event(locked[0], describe_error(exc), now)
                total.failed += 1
                continue
            if not claim.events:
                break
            total.messages += claim.messages
            total.not_routed += claim.not_routed
            total.ignored += claim.ignored
        return total

    def _fail_event(self, event_id: int, error: str, now: datetime) -> None:
        """Count a failed try: the event waits with a backoff, or expires after the last try."""
        settings = self._settings
        with self._db.write() as conn:
            previous = processing_store.pending_error_count(conn, event_id)
            if previous is None:
                return
            errors = previous + 1
            expired = errors >= settings.max_event_tries
            tries = f"processing failed {errors} time{'s' if errors > 1 else ''}"
            processing_store.record_event_failure(
                conn,
                event_id,
                errors=errors,
                status=EventStatus.EXPIRED if expired else EventStatus.PENDING,
                reason=f"{tries}: {error}" if expired else f"{tries}, tried again later: {error}",
                retry_at=now
                + retry_delay(errors, settings.retry_base_seconds, settings.retry_max_seconds),
                now=now,
            )
        log.warning(
            "an event could not be processed",
            action="processing.event_expired" if expired else "processing.event_failed",
            event_id=event_id,
            tries=errors,
            error=error,
        )
