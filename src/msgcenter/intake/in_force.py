"""Which event types have a publication in force, for the warning a push carries when its type
has none (the event is stored all the same, as the model product's contract requires, and will
end ``not_taken_into_account`` unless a publication arrives before it is processed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from msgcenter.events.model import Queue
from msgcenter.store import publications as publication_store
from msgcenter.store.database import Database

#: how long the set read from the store is trusted: a publication made a second ago may still
#: be missing from a warning, never from the routing (which reads the store in its claim)
REFRESH_SECONDS = 1.0


class PublishedRoutes:
    """The routes of the active publications, read from the store at most once a second."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._routes: set[tuple[str, str, str | None]] = set()
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()
        self._known: dict[str, frozenset[str]] = {}
        self._known_from: set[tuple[str, str, str | None]] | None = None

    async def unpublished(
        self, queue: Queue, event_types: Iterable[str], folder: str | None
    ) -> list[str]:
        """The warnings for ``event_types`` pushed to ``queue`` in ``folder``: one per type
        without a publication in force, in order of first appearance."""
        routes = await self._current()
        missing = dict.fromkeys(
            name for name in event_types if (name, queue.value, folder) not in routes
        )
        return [
            f"event type {name!r} has no publication in force on the {queue.value} queue"
            + (f" of folder {folder!r}" if folder else "")
            + ": the event is stored and will end not_taken_into_account unless one is published"
            for name in missing
        ]

    async def known(self, queue: Queue) -> frozenset[str]:
        """The event types with a publication in force on ``queue`` in any folder (the only
        ones a metric is labelled with: a client's made-up types must not grow it)."""
        routes = await self._current()
        if self._known_from is not routes:
            self._known = {
                name: frozenset(n for n, q, _ in routes if q == name) for name in ("rt", "batch")
            }
            self._known_from = routes
        return self._known.get(queue.value, frozenset())

    async def _current(self) -> set[tuple[str, str, str | None]]:
        if time.monotonic() - self._read_at < REFRESH_SECONDS:
            return self._routes
        async with self._lock:
            if time.monotonic() - self._read_at >= REFRESH_SECONDS:
                self._routes = await asyncio.to_thread(self._read)
                self._read_at = time.monotonic()
        return self._routes

    def _read(self) -> set[tuple[str, str, str | None]]:
        with self._database.read() as conn:
            return publication_store.routes_in_force(conn)
