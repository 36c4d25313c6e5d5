"""Reading events back: one with its timeline, or a search with keyset pages (SPEC §3.2)."""

from __future__ import annotations

from msgcenter.deliveries import DeliveryLogEntry
from msgcenter.errors import NotFoundError
from msgcenter.events.model import EventFilter, StoredEvent
from msgcenter.operators import Operator
from msgcenter.store import events as event_store
from msgcenter.store.database import Database


class EventQueries:
    """The events of one execution instance, as an operator may see them (its folder only)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, event_id: int, operator: Operator) -> StoredEvent:
        """One event with its timeline; :class:`NotFoundError` if it does not exist or lies
        outside the operator's folder."""
        with self._db.read() as conn:
            found = event_store.get(conn, event_id, folder=operator.folder)
        if found is None:
            raise NotFoundError(f"no event {event_id}")
        return found

    def search(
        self, criteria: EventFilter, operator: Operator, *, before_id: int | None, limit: int
    ) -> list[StoredEvent]:
        """Events matching ``criteria`` in the operator's folder, newest first, with ids below
        ``before_id``."""
        if operator.folder is not None:
            criteria.folder = operator.folder
        with self._db.read() as conn:
            return event_store.search(conn, criteria, before_id=before_id, limit=limit)

    def delivery_logs(self, event_id: int, operator: Operator) -> list[DeliveryLogEntry]:
        """The messages of an event the operator may see."""
        self.get(event_id, operator)
        with self._db.read() as conn:
            return event_store.delivery_logs(conn, event_id)
