"""Waking the processing workflows when events arrive, so the hot path never polls.

In one process the intake committer signals directly; across processes,
PostgreSQL's ``LISTEN/NOTIFY`` carries the signal (the committer sends
``NOTIFY msgcenter_events, '<queue>'`` in the transaction that stores the events).
While the notification connection is down the workflows still find new events
by polling (``processing.poll_interval_seconds``), only later: the fallback is
logged and shown by ``msgcenter_wakeup_listening``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import structlog

from msgcenter.errors import MsgcenterError
from msgcenter.events.model import Queue
from msgcenter.monitoring import metrics
from msgcenter.store.database import Database
from msgcenter.store.events import NOTIFY_CHANNEL

log = structlog.get_logger(__name__)

#: waits between attempts to listen again: doubling from the first, capped at the second
RELISTEN_SECONDS = (0.5, 10.0)


class Wakeup:
    """One asyncio event per queue, settable from any thread or from PostgreSQL notifications."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events = {queue: asyncio.Event() for queue in Queue}
        #: whether notifications arrive now, and whether the workflows fell back to polling
        self._listening_now = False
        self._polling = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the loop the workflows run in (signals from other threads go through it)."""
        self._loop = loop

    def event(self, queue: Queue) -> asyncio.Event:
        """The event a workflow of ``queue`` waits on."""
        return self._events[queue]

    def notify(self, queues: Iterable[Queue]) -> None:
        """Wake the workflows of ``queues``; safe to call from any thread."""
        if self._loop is None:
            return
        for queue in queues:
            self._loop.call_soon_threadsafe(self._events[queue].set)

    async def listen(self, db: Database) -> None:
        """Forward ``db``'s notifications until cancelled, listening again after any failure.

        Nothing but its cancellation ends this task: an error of any kind is logged once
        when the fallback to polling starts (not at every retry), counted, and followed by
        another attempt after a capped backoff.
        """
        delay = RELISTEN_SECONDS[0]
        while True:
            try:
                await db.listen(NOTIFY_CHANNEL, self._forward, on_listening=self._listening)
            except asyncio.CancelledError:
                metrics.WAKEUP_LISTENING.set(0)  # the worker stops: nobody listens any more
                raise
            except Exception as exc:  # noqa: BLE001 - the listener must outlive any failure
                if self._listening_now or not self._polling:
                    log.warning(
                        "new events are found by polling until notifications are back",
                        action="wakeup.polling",
                        error=exc.detail if isinstance(exc, MsgcenterError) else str(exc),
                    )
                    metrics.WAKEUP_FALLBACKS.inc()
                    delay = RELISTEN_SECONDS[0]
                self._listening_now, self._polling = False, True
                metrics.WAKEUP_LISTENING.set(0)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RELISTEN_SECONDS[1])

    def _forward(self, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._events[Queue(payload)].set()

    def _listening(self) -> None:
        log.info(
            "listening for new events" + (" again" if self._polling else ""),
            action="wakeup.listen",
        )
        self._listening_now, self._polling = True, False
        metrics.WAKEUP_LISTENING.set(1)
        # events stored while nobody listened are looked for at once
        for event in self._events.values():
            event.set()
