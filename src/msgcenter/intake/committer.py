"""Group commit: the events of many concurrent requests stored in one transaction.

Request handlers hand their events to a single writer thread and wait. The
writer takes everything that queued up while the previous transaction was
committing, inserts it with one statement, commits once, and only then
releases the waiting handlers with their ids. Under load this turns thousands
of tiny transactions into a few large ones without adding latency when idle:
a lone request is committed as soon as it arrives.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import structlog

from msgcenter.errors import MsgcenterError, StoreUnavailableError
from msgcenter.events.model import Enqueued, EnqueueRequest, Queue
from msgcenter.store import events as event_store
from msgcenter.store.database import Database

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class _Pending:
    request: EnqueueRequest
    future: asyncio.Future[Enqueued]
    loop: asyncio.AbstractEventLoop


class GroupCommitter:
    """Owns the writer thread. ``submit`` returns ids only once their events are committed.

    ``on_commit(queues, events, seconds)`` is called after each commit (from the
    writer thread): metrics, and waking the processing workflows of this process.
    """

    def __init__(
        self,
        db: Database,
        *,
        max_events: int = 5_000,
        delay_seconds: float = 0.0,
        on_commit: Callable[[set[Queue], int, float], None] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._max_events = max_events
        self._delay = delay_seconds
        self._on_commit = on_commit
        self._now = now
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(target=self._run, name="group-committer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Commit what is queued, then stop the writer thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    async def submit(self, request: EnqueueRequest) -> Enqueued:
        """Store ``request``'s events (all or none); their ids come back in order."""
        if self._thread is None:
            raise StoreUnavailableError("intake is not running (the committer is stopped)")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Enqueued] = loop.create_future()
        self._queue.put(_Pending(request, future, loop))
        return await future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            if self._delay:
                time.sleep(self._delay)
            group, size = [first], len(first.request.events)
            while size < self._max_events:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                group.append(item)
                size += len(item.request.events)
            self._commit(group)

    def _commit(self, group: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            with self._db.write() as conn:
                requests = [p.request for p in group]
                ids = event_store.enqueue(conn, requests, self._now())
                queues = {r.queue for r in requests}
                event_store.notify_enqueued(conn, queues)
        except Exception as exc:  # noqa: BLE001 - every waiting caller must hear of it
            if len(group) > 1 and not isinstance(exc, StoreUnavailableError):
                # One request may be at fault (say a key raced in from another process):
                # commit each alone so the others still go through.
                for pending in group:
                    self._commit([pending])
                return
            log.warning("intake commit failed", action="intake.commit_failed", error=str(exc))
            error = (
                exc
                if isinstance(exc, MsgcenterError)
                else StoreUnavailableError(
                    "events could not be stored", detail=f"database error: {exc}"
                )
            )
            for pending in group:
                _settle(pending, error=error)
            return
        for pending, enqueued in zip(group, ids, strict=True):
            _settle(pending, result=enqueued)
        if self._on_commit is not None:
            try:
                self._on_commit(queues, sum(len(e.ids) for e in ids), time.perf_counter() - started)
            except Exception:  # noqa: BLE001 - bookkeeping must never stop the writer
                log.exception("commit callback failed", action="intake.callback_failed")


def _settle(
    pending: _Pending, *, result: Enqueued | None = None, error: Exception | None = None
) -> None:
    def settle() -> None:
        if pending.future.done():  # the caller went away; its events are stored regardless
            return
        if error is not None:
            pending.future.set_exception(error)
        else:
            pending.future.set_result(cast(Enqueued, result))

    pending.loop.call_soon_threadsafe(settle)
