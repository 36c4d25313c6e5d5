"""Waking the processing workflows when events arrive, so the hot path never polls.

In one process the intake committer signals directly; across processes,
PostgreSQL's ``LISTEN/NOTIFY`` carries the signal (the committer sends
``NOTIFY msgcenter_events, '<queue>'`` in the transaction that stores the events).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import psycopg
import structlog

from msgcenter.events.model import Queue
from msgcenter.store.events import NOTIFY_CHANNEL

log = structlog.get_logger(__name__)


class Wakeup:
    """One asyncio event per queue, settable from any thread or from PostgreSQL notifications."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events = {queue: asyncio.Event() for queue in Queue}

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

    async def listen(self, database_url: str) -> None:
        """Forward PostgreSQL notifications until cancelled; reconnects after a lost connection."""
        conninfo = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    log.info("listening for new events", action="wakeup.listen")
                    async for notify in conn.notifies():
                        with contextlib.suppress(ValueError):
                            self._events[Queue(notify.payload)].set()
            except psycopg.OperationalError as exc:
                log.warning("notification connection lost", action="wakeup.lost", error=str(exc))
                await asyncio.sleep(1.0)
