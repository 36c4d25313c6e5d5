"""Noticing that the database is unavailable, and that it is back.

The parts of a worker that use the database (the workflow runner, the
dispatcher's outcome writer and claim renewer) report a
:class:`~msgcenter.errors.StoreUnavailableError` here instead of logging it:
an outage is one warning when it starts (``store.unavailable``) and one info
line with its duration when it ends (``store.available``), whatever the number
of failed rounds in between.

While it lasts, a probe tries the database every
``processing.store_probe_seconds``, or at once when some part sees the database
answer again; the first success ends the outage and wakes every workflow,
whatever backoff it was waiting out. The probe's work is a write: the last error
each workflow met, kept on the workflow (``workflow.last_error``) so that the
outage leaves its trace. Only a committed write ends an outage, so a database
that can be read but not written (a SQLite file on a full disk) is not taken
for back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

import structlog

from msgcenter.errors import describe_error
from msgcenter.monitoring import metrics
from msgcenter.store import workflows as workflow_store
from msgcenter.store.database import Database

log = structlog.get_logger(__name__)


class StoreWatch:
    """Whether the database answers, as a worker's parts see it; lives in one event loop."""

    def __init__(self, db: Database, probe_seconds: float) -> None:
        self._db = db
        self._probe_seconds = probe_seconds
        #: monotonic time the current outage started (None: the database answers)
        self._down_since: float | None = None
        #: monotonic time the last outage ended
        self._back_at = float("-inf")
        #: the last error each part met during the current outage, and when
        self._errors: dict[str, tuple[str, datetime]] = {}
        self._to_wake: list[asyncio.Event] = []
        self._check_now = asyncio.Event()
        self._probe_task: asyncio.Task[None] | None = None
        metrics.STORE_AVAILABLE.set(1)

    @property
    def available(self) -> bool:
        """Whether no outage is going on."""
        return self._down_since is None

    def wake_on_return(self, event: asyncio.Event) -> None:
        """Set ``event`` whenever an outage ends (a workflow's wake-up)."""
        self._to_wake.append(event)

    def failed(self, exc: BaseException, source: str, *, since: float | None = None) -> bool:
        """Report that ``source`` (a workflow's name, or a part of the dispatcher) found the
        database unavailable, in work it started at ``since`` (monotonic).

        Returns whether the caller should wait for the database's return: False when it
        came back after that work started (the failure is stale; try again at once).
        """
        if since is not None and since < self._back_at:
            return False
        self._errors[source] = (describe_error(exc), datetime.now(UTC))
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "the database is unavailable: work waits until it is back",
                action="store.unavailable",
                source=source,
                error=describe_error(exc),
            )
            metrics.STORE_AVAILABLE.set(0)
            metrics.STORE_OUTAGES.inc()
            self._check_now.clear()
            self._probe_task = asyncio.get_running_loop().create_task(
                self._probe(), name="store-probe"
            )
        return True

    def check_now(self) -> None:
        """Some part saw the database answer: probe at once rather than at the next interval."""
        if self._down_since is not None:
            self._check_now.set()

    async def stop(self) -> None:
        """Stop probing (the worker stops)."""
        if self._probe_task is not None:
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe_task
            self._probe_task = None

    async def _probe(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._check_now.wait(), self._probe_seconds)
            self._check_now.clear()
            errors = dict(self._errors)
            try:
                await asyncio.to_thread(self._write, errors)
            except Exception:  # noqa: BLE001 - still unavailable: the next probe tells
                continue
            self._returned()
            return

    def _write(self, errors: dict[str, tuple[str, datetime]]) -> None:
        if not errors:  # only the dispatcher met the outage: a query is enough
            self._db.ping()
            return
        with self._db.write() as conn:
            workflow_store.record_errors(conn, errors)

    def _returned(self) -> None:
        assert self._down_since is not None
        now = time.monotonic()
        log.info(
            "the database is available again",
            action="store.available",
            outage_seconds=round(now - self._down_since, 1),
        )
        metrics.STORE_AVAILABLE.set(1)
        self._down_since = None
        self._back_at = now
        self._errors.clear()
        self._probe_task = None
        for event in self._to_wake:
            event.set()
