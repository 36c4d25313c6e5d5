"""An execution instance's worker: the technical workflows with their dispatcher and channels.

It runs inside the web process by default, or alone with ``msgcenter exec worker``;
any number of workers can share one PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import structlog

from msgcenter.events.model import Channel, Queue
from msgcenter.sending.attempts import ChannelSender
from msgcenter.sending.dispatcher import Dispatcher
from msgcenter.sending.email import EmailSender
from msgcenter.settings import Settings
from msgcenter.store.database import Database
from msgcenter.workflows.maintenance import Cleanup, StatsSampler
from msgcenter.workflows.processing import EventsProcessing, RoutingSource
from msgcenter.workflows.runner import WorkflowRunner
from msgcenter.workflows.status import UpdateEventStatus
from msgcenter.workflows.wakeup import Wakeup

log = structlog.get_logger(__name__)


def build_senders(settings: Settings) -> dict[Channel, ChannelSender]:
    """The channel connectors this instance is configured for (email through the SMTP relay)."""
    return {
        Channel.EMAIL: EmailSender(
            settings.smtp,
            settings.attachments,
            settings.secret_key.get_secret_value(),
            instance=settings.instance_name,
            tracking_base_url=settings.tracking_base_url(),
        )
    }


class Worker:
    """Starts and stops everything that turns queued events into sent messages."""

    def __init__(self, settings: Settings, db: Database, wakeup: Wakeup | None = None) -> None:
        self.db = db
        self.wakeup = wakeup or Wakeup()
        self.routing = RoutingSource()
        self.dispatcher = Dispatcher(db, build_senders(settings), settings.processing)
        processing = settings.processing
        self.runner = WorkflowRunner(
            db,
            [
                EventsProcessing(
                    Queue.RT, db, self.routing, self.dispatcher, processing, self.wakeup
                ),
                EventsProcessing(
                    Queue.BATCH, db, self.routing, self.dispatcher, processing, self.wakeup
                ),
                UpdateEventStatus(db, processing),
                Cleanup(db, processing, settings.tracking),
                StatsSampler(db, processing),
            ],
        )
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start sending and every workflow; on PostgreSQL, listen for new events."""
        self.wakeup.bind(asyncio.get_running_loop())
        self.dispatcher.start()
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
