"""Routing: an event goes to the newest active publication of its type, channel, queue and folder (SPEC §3.5)."""

from __future__ import annotations

from collections.abc import Iterable

from msgcenter.events.model import Channel, Queue
from msgcenter.publications import Publication

RouteKey = tuple[str, int, str, str | None]


class RoutingTable:
    """An in-memory index of active publications, rebuilt when the publication set changes."""

    def __init__(self, publications: Iterable[Publication] = ()) -> None:
        self._routes: dict[RouteKey, Publication] = {}
        for candidate in publications:
            key = (
                candidate.event_type,
                int(candidate.channel),
                candidate.queue.value,
                candidate.folder,
            )
            current = self._routes.get(key)
            if current is None or (candidate.published_at, candidate.id) > (
                current.published_at,
                current.id,
            ):
                self._routes[key] = candidate

    def route(
        self, event_type: str, channel: Channel | int, queue: Queue, folder: str | None
    ) -> Publication | None:
        """The publication for an event, or None (the event is then not taken into account)."""
        return self._routes.get((event_type, int(channel), queue.value, folder))

    def __len__(self) -> int:
        return len(self._routes)
