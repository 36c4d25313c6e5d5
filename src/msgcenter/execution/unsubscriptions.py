"""One-click unsubscription (RFC 8058): the recipient of a message leaves its template's stream."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from msgcenter.store import unsubscriptions as unsubscription_store
from msgcenter.store.database import Database

log = structlog.get_logger(__name__)


class Unsubscriptions:
    """Records the opt-outs of one execution instance."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def unsubscribe(self, delivery_log_id: int) -> bool:
        """Record that the recipient of ``delivery_log_id`` left its template's stream (again is
        harmless); False when that delivery log is unknown (purged, or never written)."""
        with self._db.write() as conn:
            done = unsubscription_store.record(conn, delivery_log_id, datetime.now(UTC))
        if done is None:
            log.info(
                "unsubscription of an unknown delivery log",
                action="unsubscribe.unknown_log",
                delivery_log=delivery_log_id,
            )
            return False
        if done.new:
            log.info(
                "address unsubscribed from a template",
                action="unsubscribe.recorded",
                delivery_log=delivery_log_id,
                template=done.template,
                folder=done.folder,
            )
        return True
