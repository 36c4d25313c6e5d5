"""An execution instance's worker: the technical workflows with their dispatcher and channels.

It runs inside the web process by default, or alone with ``msgcenter exec worker``;
any number of workers can share one PostgreSQL database. A worker that starts
takes back at once the claims of a dead process of its own machine
(:mod:`msgcenter.workflows.owners`), instead of leaving them to their lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import UTC, datetime

import structlog

from msgcenter.errors import describe_error
from msgcenter.events.model import Channel, Queue
from msgcenter.sending.attempts import ChannelSender
from msgcenter.sending.dispatcher import Dispatcher
from msgcenter.sending.email import DEVELOPMENT_SECRET, EmailSender
from msgcenter.sending.push import build_push_senders
from msgcenter.sending.sms import SmsSender
from msgcenter.settings import Settings
from msgcenter.store import processing as processing_store
from msgcenter.store.database import Database
from msgcenter.tracking import LinkSigner, safe_base_url
from msgcenter.workflows.maintenance import Cleanup, StatsSampler
from msgcenter.workflows.outages import StoreWatch
from msgcenter.workflows.owners import ClaimOwner
from msgcenter.workflows.processing import EventsProcessing, RoutingSource
from msgcenter.workflows.runner import WorkflowRunner
from msgcenter.workflows.status import UpdateEventStatus
from msgcenter.workflows.wakeup import Wakeup
from msgcenter.workflows.webhooks import WebhookDelivery, WebhookOutbox

log = structlog.get_logger(__name__)

#: delivery logs named one by one in the log line of claims taken back
LOGGED_TAKEN_BACK = 1_000


def build_senders(settings: Settings, db: Database | None = None) -> dict[Channel, ChannelSender]:
    """The channel connectors this instance is configured for (email through the SMTP relay);
    ``db`` is where SMS delivery receipts are written (without it they are only acknowledged)."""
    senders: dict[Channel, ChannelSender] = {
        Channel.EMAIL: EmailSender(
            settings.smtp,
            settings.attachments,
            settings.secret_key.get_secret_value(),
            instance=settings.instance_name,
            tracking_base_url=settings.tracking_base_url(),
            db=db,
        )
    }
    # push: ios (APNs) and android (FCM), each only when an app has credentials for it
    senders.update(build_push_senders(settings.push))
    # sms: only when an SMSC is configured (sms.host)
    if settings.sms.enabled:
        senders[Channel.SMS] = SmsSender(settings.sms, db)
    return senders


def mirror_links(settings: Settings) -> LinkSigner | None:
    """The signer of tracked emails' mirror-page URLs, or None where the tracking base URL is
    not one a recipient may be sent to (plain http off loopback)."""
    base_url = settings.tracking_base_url()
    if not safe_base_url(base_url):
        return None
    return LinkSigner(settings.secret_key.get_secret_value() or DEVELOPMENT_SECRET, base_url)


class Worker:
    """Starts and stops everything that turns queued events into sent messages."""

    def __init__(self, settings: Settings, db: Database, wakeup: Wakeup | None = None) -> None:
        self.db = db
        self.wakeup = wakeup or Wakeup()
        self.routing = RoutingSource()
        processing = settings.processing
        self.owner = ClaimOwner.this_process(processing.worker_id)
        self.store = StoreWatch(db, processing.store_probe_seconds)
        self.senders = build_senders(settings, db)
        self.dispatcher = Dispatcher(
            db,
            self.senders,
            processing,
            owner=self.owner.token,
            on_store_error=self.store.failed,
            on_relay_back=self._relay_back,
            links=mirror_links(settings),
        )
        self.processing = [
            EventsProcessing(
                queue, db, self.routing, self.dispatcher, processing, self.wakeup, self.owner.token
            )
            for queue in (Queue.RT, Queue.BATCH)
        ]
        webhooks = WebhookDelivery(db, settings.webhooks)
        self.runner = WorkflowRunner(
            db,
            [
                *self.processing,
                UpdateEventStatus(db, processing),
                Cleanup(db, processing, settings.tracking, settings.bounces),
                StatsSampler(db, processing),
                WebhookOutbox(db, settings.webhooks, on_new=webhooks.wake),
                webhooks,
            ],
            self.store,
        )
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start sending and every workflow; on PostgreSQL, listen for new events."""
        self.wakeup.bind(asyncio.get_running_loop())
        await asyncio.to_thread(self._take_back_claims)
        await self.dispatcher.start()
        await self.runner.start()
        if self.db.dialect == "postgresql":
            self._listener = asyncio.create_task(self.wakeup.listen(self.db), name="listen")
        log.info("worker started", action="worker.started", workflows=sorted(self.runner.workflows))

    async def stop(self) -> None:
        """Stop the workflows, then the senders (claimed messages are retried after their lease)."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self.runner.stop()
        await self.dispatcher.stop()
        log.info("worker stopped", action="worker.stopped")

    def _take_back_claims(self) -> None:
        """End at once the claims of dead processes of this machine: a crashed predecessor's
        messages are sent again now, not after their lease (the duplicate window is the same)."""
        try:
            with self.db.write() as conn:
                owners = processing_store.claim_owners(conn, self.owner.machine)
                dead = [
                    token
                    for token in owners
                    if token != self.owner.token
                    and (owner := ClaimOwner.parse(token)) is not None
                    and not owner.is_alive()
                ]
                taken = processing_store.take_back(conn, dead, datetime.now(UTC))
        except Exception as exc:  # noqa: BLE001 - their lease still brings them back
            log.warning(
                "claims of dead processes not taken back: they wait out their lease",
                action="processing.take_back_failed",
                error=describe_error(exc),
            )
            return
        if taken:
            log.info(
                "claims of a dead predecessor taken back: their messages are attempted again now",
                action="processing.claims_taken_back",
                predecessors=dead,
                messages=len(taken),
                delivery_logs=taken[:LOGGED_TAKEN_BACK],
            )

    def _relay_back(self) -> None:
        """A relay answers again and its messages are due: the workflows look for them now."""
        for workflow in self.processing:
            workflow.look_for_retries()


async def run_worker(settings: Settings, db: Database) -> None:
    """Run a worker until SIGTERM or SIGINT, then stop it cleanly."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    worker = Worker(settings, db)
    await worker.start()
    try:
        await stopping.wait()
    finally:
        await worker.stop()
