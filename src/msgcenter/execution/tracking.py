"""Recording opens and clicks of tracked messages (SPEC §3.7)."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from msgcenter.errors import MsgcenterError
from msgcenter.store import tracking as tracking_store
from msgcenter.store.database import Database
from msgcenter.tracking import TrackingKind

log = structlog.get_logger(__name__)


class TrackingRecorder:
    """Writes the tracking logs of one execution instance."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(
        self, kind: TrackingKind, delivery_log_id: int, url: str | None, user_agent: str | None
    ) -> None:
        """Record an open or a click. A log that cannot be recorded (its delivery log purged,
        the database down) is logged and dropped: the recipient's click matters more."""
        try:
            with self._db.write() as conn:
                recorded = tracking_store.record(
                    conn, kind, delivery_log_id, url, user_agent, datetime.now(UTC)
                )
        except MsgcenterError as exc:
            log.warning(
                "tracking log not recorded",
                action="tracking.not_recorded",
                delivery_log=delivery_log_id,
                error=exc.message,
            )
            return
        if not recorded:
            log.info(
                "tracking of an unknown delivery log",
                action="tracking.unknown_log",
                delivery_log=delivery_log_id,
            )
