"""webhookOutbox and webhookDelivery: delivery-status webhooks, at least once (SPEC §3.7).

webhookOutbox reads new outcomes from the tables the processing paths write
anyway (status changes, bounce reports, tracking logs, delivery receipts) and
turns each into outbox messages, one per subscription that wants it, in the
transaction that advances its cursors (:func:`msgcenter.store.webhooks.collect`):
nothing is added to intake or sending, and nothing is lost or doubled by a crash.

webhookDelivery claims due messages, posts them, and records each result: a
2xx answer delivers the message; anything else puts it back with exponential
backoff, and a subscription whose posts have all failed for
``disable_after_seconds`` is disabled. A message is marked delivered only after
its post succeeded, so a crash between the two posts it again after the claim's
lease, with the same ``webhook-id``: receivers drop such duplicates by that id.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from functools import partial

import structlog

from msgcenter.sending.attempts import retry_delay
from msgcenter.sending.webhooks import WebhookPoster
from msgcenter.settings import WebhookSettings
from msgcenter.store import webhooks as webhook_store
from msgcenter.store.database import Database
from msgcenter.webhooks import Attempt, AttemptResult
from msgcenter.workflows.runner import Workflow

log = structlog.get_logger(__name__)

#: delivered messages purged per transaction, and how often (seconds)
PURGE_BATCH = 5_000
PURGE_EVERY_SECONDS = 3_600.0


class WebhookOutbox(Workflow):
    """Reads new outcomes into the outbox of the subscriptions that want them."""

    name = "webhookOutbox"
    required = False

    def __init__(
        self, db: Database, settings: WebhookSettings, on_new: asyncio.Event | None = None
    ) -> None:
        super().__init__()
        self._db = db
        self._settings = settings
        self._on_new = on_new
        self._purged = 0.0

    async def run_once(self) -> float:
        inserted, more = await asyncio.to_thread(self.collect)
        if inserted and self._on_new is not None:
            self._on_new.set()
        if time.monotonic() - self._purged > PURGE_EVERY_SECONDS:
            await asyncio.to_thread(self.purge)
            self._purged = time.monotonic()
        return 0 if more else self._settings.collect_interval_seconds

    def collect(self) -> tuple[int, bool]:
        """One transaction: new outcomes into the outbox, cursors advanced; how many messages,
        and whether a source has more rows waiting."""
        settings = self._settings
        with self._db.write() as conn:
            return webhook_store.collect(
                conn,
                datetime.now(UTC),
                batch=settings.collect_batch,
                gap_wait=timedelta(seconds=settings.gap_wait_seconds),
                settle=timedelta(seconds=settings.settle_seconds),
            )

    def purge(self) -> None:
        """Delete delivered messages past their retention."""
        before = datetime.now(UTC) - timedelta(days=self._settings.retention_days)
        while True:
            with self._db.write() as conn:
                if webhook_store.purge(conn, before, PURGE_BATCH) < PURGE_BATCH:
                    return


class WebhookDelivery(Workflow):
    """Posts the outbox's due messages and records how each post ended."""

    name = "webhookDelivery"
    required = False

    def __init__(self, db: Database, settings: WebhookSettings) -> None:
        super().__init__()
        self._db = db
        self._settings = settings
        self.poster = WebhookPoster(settings)

    async def run_once(self) -> float:
        attempts = await asyncio.to_thread(self.claim)
        if not attempts:
            return self._settings.collect_interval_seconds
        results = await self.poster.post_all(attempts)
        await asyncio.to_thread(self.record, results)
        return 0  # more may be due: the next round finds out

    async def close(self) -> None:
        """Close the kept connections."""
        await self.poster.close()

    def claim(self) -> list[Attempt]:
        """Due messages, claimed for ``claim_lease_seconds``."""
        settings = self._settings
        with self._db.write() as conn:
            return webhook_store.claim_due(
                conn,
                datetime.now(UTC),
                settings.deliver_batch,
                timedelta(seconds=settings.claim_lease_seconds),
            )

    def record(self, results: list[AttemptResult]) -> None:
        """Write the results; log failures and the subscriptions disabled."""
        settings = self._settings
        with self._db.write() as conn:
            disabled = webhook_store.record_results(
                conn,
                results,
                datetime.now(UTC),
                backoff=partial(
                    retry_delay,
                    base=settings.retry_base_seconds,
                    maximum=settings.retry_max_seconds,
                ),
                disable_after=timedelta(seconds=settings.disable_after_seconds),
            )
        failed = [r for r in results if r.error is not None]
        if failed:
            first = failed[0]
            log.warning(
                "webhook posts failed; retried with backoff",
                action="webhooks.post_failed",
                failed=len(failed),
                posted=len(results),
                subscription=first.subscription_id,
                error=first.error,
            )
        for subscription in disabled:
            log.warning(
                "webhook subscription disabled: its posts have failed for too long",
                action="webhooks.subscription_disabled",
                subscription=subscription,
                failing_for_seconds=settings.disable_after_seconds,
            )
