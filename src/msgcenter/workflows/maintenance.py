"""cleanup and statsSampler: the execution instance's housekeeping workflows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from msgcenter.settings import BounceSettings, ProcessingSettings, TrackingSettings
from msgcenter.store import bounces as bounce_store
from msgcenter.store import processing as processing_store
from msgcenter.store import tracking as tracking_store
from msgcenter.store.database import Database
from msgcenter.workflows.runner import Workflow

PURGE_BATCH = 5_000
#: how long after its timestamp a row is surely committed, for throughput counts
SETTLE = timedelta(seconds=2)


class Cleanup(Workflow):
    """Purges events (with their delivery logs and history), tracking logs, kept bounce reports
    and statistics past their retention."""

    name = "cleanup"
    required = False

    def __init__(
        self,
        db: Database,
        settings: ProcessingSettings,
        tracking: TrackingSettings,
        bounces: BounceSettings | None = None,
    ) -> None:
        super().__init__()
        self._db = db
        self._settings = settings
        self._tracking = tracking
        self._bounces = bounces or BounceSettings()

    async def run_once(self) -> float:
        more = await asyncio.to_thread(self.purge)
        return 0 if more else self._settings.cleanup_interval_seconds

    def purge(self) -> bool:
        """Delete one batch past retention; True when a full batch went (more may remain)."""
        now = datetime.now(UTC)
        with self._db.write() as conn:
            purged = processing_store.purge(
                conn, now - timedelta(days=self._settings.event_retention_days), PURGE_BATCH
            )
            clicks = tracking_store.purge(
                conn, now - timedelta(days=self._tracking.retention_days), PURGE_BATCH
            )
            reports = bounce_store.purge(
                conn, now - timedelta(days=self._bounces.retention_days), PURGE_BATCH
            )
            processing_store.purge_stats(
                conn, now - timedelta(days=self._settings.stats_retention_days)
            )
        return max(purged, clicks, reports) >= PURGE_BATCH


class StatsSampler(Workflow):
    """Records queue sizes and throughput every few seconds for the reports.

    Throughput is counted from rows' timestamps, which a transaction stamps before
    it commits: a window that ended just now could miss rows stamped inside it and
    committed a moment later, and the next window would start after them. So each
    sample counts the window that ended ``SETTLE`` ago, and the windows follow one
    another without gap or overlap.
    """

    name = "statsSampler"
    required = False

    def __init__(self, db: Database, settings: ProcessingSettings) -> None:
        super().__init__()
        self._db = db
        self._interval = settings.stats_interval_seconds
        self._since = datetime.now(UTC)

    async def run_once(self) -> float:
        await asyncio.to_thread(self.sample)
        return self._interval

    def sample(self) -> None:
        """Store one sample per queue: queue sizes now, throughput up to ``SETTLE`` ago."""
        now = datetime.now(UTC)
        until = max(self._since, now - SETTLE)
        with self._db.write() as conn:
            processing_store.sample_stats(conn, self._since, until, now)
        self._since = until
