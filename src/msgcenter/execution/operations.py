"""The operations of an execution instance (the model product's *Message Center* folder): its
queues, what went through lately, and the quarantine, with release."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog

from msgcenter.deliveries import QuarantineEntry
from msgcenter.queues import QueueSize, Throughput
from msgcenter.store import operations as operations_store
from msgcenter.store.database import Database

log = structlog.get_logger(__name__)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


class Operations:
    """Queues, throughput and quarantine of one execution instance."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def queues(self) -> list[QueueSize]:
        """Each queue now."""
        with self._db.read() as conn:
            return operations_store.queue_sizes(conn)

    def sampled_queue_sizes(self) -> dict[str, tuple[int, int]]:
        """Pending events and waiting messages per queue, from the statsSampler's newest samples."""
        with self._db.read() as conn:
            return operations_store.sampled_queue_sizes(conn)

    def throughput(self) -> dict[str, Throughput]:
        """What went through in the last hour and the last day (statsSampler's samples)."""
        now = datetime.now(UTC)
        with self._db.read() as conn:
            return {
                "hour": operations_store.throughput(conn, now - HOUR, now),
                "day": operations_store.throughput(conn, now - DAY, now),
            }

    def quarantine(
        self, *, address: str | None = None, active_only: bool = True, limit: int = 200
    ) -> list[QuarantineEntry]:
        """Quarantined addresses, newest first."""
        with self._db.read() as conn:
            return operations_store.quarantined(
                conn, address=address, active_only=active_only, limit=limit
            )

    def release(self, entry_id: int, by: str) -> str:
        """Send to a quarantined address again; returns it."""
        with self._db.write() as conn:
            address = operations_store.release(conn, entry_id, datetime.now(UTC))
        log.info("address released from quarantine", action="quarantine.released", by=by)
        return address
