"""The dispatcher: a priority queue of claimed messages served by concurrent senders.

Real-time messages always leave before batch ones (SPEC §3.8). Each message is
rendered with its publication's compiled content and handed to its channel's
sender; outcomes are written in groups (one transaction every
``processing.outcome_flush_ms``), not one by one. The claims of messages in
hand (queued, being attempted, or with an outcome not yet written) are renewed
every third of the lease, so that no other sender takes them while they wait.

The database being unavailable is reported to ``on_store_error`` (one warning per
outage, by the worker's store watch), not logged at every try. While a channel's
relay cannot be reached, it is probed every ``processing.relay_probe_seconds``;
once it answers again, the messages that failed during the outage are made due
at once (``store/processing.hasten_retries``) and ``on_relay_back`` wakes the
workflows to claim them, rather than each waiting out its retry backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from msgcenter.deliveries import ClaimedMessage, DeliveryStatus, FailureType, Outcome
from msgcenter.errors import StoreUnavailableError, describe_error
from msgcenter.events.model import Channel, Queue
from msgcenter.monitoring import metrics
from msgcenter.publications import Publication
from msgcenter.render import RenderProblem, TemplateSyntaxProblem, load_ctx
from msgcenter.sending.attempts import ChannelSender, failed, outcome_of
from msgcenter.sending.contents import ContentCache
from msgcenter.settings import ProcessingSettings
from msgcenter.store import processing as processing_store
from msgcenter.store.database import Database
from msgcenter.tracking import LinkSigner

log = structlog.get_logger(__name__)

#: how long a stopping dispatcher lets the attempts under way end before cancelling them
STOP_GRACE_SECONDS = 10.0

PRIORITY = {Queue.RT: 0, Queue.BATCH: 1}


class Dispatcher:
    """Runs ``send_concurrency`` sender tasks over a real-time-first priority queue."""

    def __init__(
        self,
        db: Database,
        senders: dict[Channel, ChannelSender],
        settings: ProcessingSettings,
        *,
        owner: str | None = None,
        on_store_error: Callable[[BaseException, str], object] | None = None,
        on_relay_back: Callable[[], None] | None = None,
        links: LinkSigner | None = None,
    ) -> None:
        self._db = db
        #: writes the mirror-page URLs of tracked emails (None: tracking links are unsafe here)
        self._links = links
        #: who the claims this dispatcher renews belong to
        self._owner = owner
        self._on_store_error = on_store_error
        self._on_relay_back = on_relay_back
        self._senders = senders
        self._settings = settings
        self._contents = ContentCache(db)
        self._queue: asyncio.PriorityQueue[tuple[int, int, ClaimedMessage]] = (
            asyncio.PriorityQueue()
        )
        self._sequence = itertools.count()
        self._queued = {queue: 0 for queue in Queue}
        self._room_changed = asyncio.Event()
        self._outcomes: list[Outcome] = []
        self._flush_now = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: delivery logs this dispatcher holds a claim on
        self._held: set[int] = set()
        #: attempts under way, which stop() lets end; set when there are none
        self._attempting = 0
        self._idle = asyncio.Event()
        self._stopping = False

    # -- what the processing workflows use --------------------------------------------

    def submit(self, messages: list[ClaimedMessage]) -> None:
        """Queue claimed messages for sending (one this dispatcher already holds is not queued twice)."""
        for message in messages:
            if message.delivery_log_id in self._held:
                continue  # its claim lapsed while it waited here, and the retry sweep took it back
            self._held.add(message.delivery_log_id)
            self._queued[message.queue] += 1
            self._queue.put_nowait((PRIORITY[message.queue], next(self._sequence), message))

    def waiting(self, queue: Queue) -> bool:
        """Whether messages of ``queue`` are queued or being sent."""
        return self._queued[queue] > 0

    def room(self, queue: Queue, claim_size: int) -> int:
        """How many more messages of ``queue`` a workflow should claim now."""
        return claim_size - self._queued[queue]

    async def drained(self, queue: Queue) -> None:
        """Wait until some messages of ``queue`` have left."""
        self._room_changed.clear()
        await self._room_changed.wait()

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the channels' connectors, then the sender tasks and the outcome writer."""
        for sender in self._senders.values():
            await sender.start()
        self._tasks = [
            asyncio.create_task(self._sender(), name=f"sender-{i}")
            for i in range(self._settings.send_concurrency)
        ]
        self._tasks.append(asyncio.create_task(self._writer(), name="outcome-writer"))
        self._tasks.append(asyncio.create_task(self._renewer(), name="claim-renewer"))
        self._tasks.append(asyncio.create_task(self._relay_watch(), name="relay-watch"))

    @property
    def relays(self) -> dict[Channel, str]:
        """Each channel's relay: ``ok``, or since when and why it cannot be reached."""
        return {channel: sender.health.describe() for channel, sender in self._senders.items()}

    async def stop(self) -> None:
        """Stop sending: let the attempts under way end (for up to :data:`STOP_GRACE_SECONDS`)
        and write every outcome known. Queued messages stay claimed: the next start on this
        machine takes them back at once, another worker after their lease."""
        # An attempt cancelled after its relay accepted the message has no outcome written,
        # and is sent again after a restart: a clean stop (SIGTERM) keeps out of the crash's
        # duplicate window by letting attempts finish (bench/scale.py showed the duplicates).
        self._stopping = True
        if self._attempting:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), STOP_GRACE_SECONDS)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):
            await self._write()
        for sender in self._senders.values():
            await sender.close()

    # -- internals ----------------------------------------------------------------------

    async def _sender(self) -> None:
        while True:
            _priority, _seq, message = await self._queue.get()
            if self._stopping:  # left claimed (see stop)
                self._queued[message.queue] -= 1
                return
            self._attempting += 1
            self._idle.clear()
            try:
                outcome = await self._attempt(message)
            except StoreUnavailableError as exc:
                # its publication could not be read: not the message's fault, it waits
                self._store_error(exc, "sender")
                outcome = outcome_of_store_outage(message, exc)
            except Exception as exc:  # noqa: BLE001 - one message never stops the senders
                log.exception(
                    "attempt crashed", action="send.crashed", delivery_log=message.delivery_log_id
                )
                outcome = outcome_of_crash(message, exc)
            finally:
                self._queued[message.queue] -= 1
                self._room_changed.set()
                self._attempting -= 1
                if not self._attempting:
                    self._idle.set()
            self._outcomes.append(outcome)
            metrics.record_outcome(
                message.channel.label, outcome.status.label, message.event["created"]
            )
            if len(self._outcomes) >= 500:
                self._flush_now.set()

    async def _attempt(self, message: ClaimedMessage) -> Outcome:
        now = datetime.now(UTC)
        if now >= message.valid_until:
            return outcome_of_expiry(message)
        sender = self._senders.get(message.channel)
        if sender is None:
            return failed(
                message,
                FailureType.NO_CHANNEL,
                f"this instance has no {message.channel.label} connector",
            )
        try:
            publication, compiled = await self._contents.get(message.publication_id)
            ctx = load_ctx(message.ctx, message.ctx_format)
            rendered = compiled.render(
                message.event, ctx, mirror_url=self._mirror_url(message, publication)
            )
        except (RenderProblem, TemplateSyntaxProblem) as problem:
            return failed(message, FailureType.RENDER, problem.detail)
        attempt = await sender.send(message, publication, rendered, ctx)
        return outcome_of(
            message,
            attempt,
            datetime.now(UTC),
            base=self._settings.retry_base_seconds,
            maximum=self._settings.retry_max_seconds,
        )

    def _mirror_url(self, message: ClaimedMessage, publication: Publication) -> str:
        """``{{ mirror_url }}`` of a tracked email; "" otherwise."""
        if self._links is None or message.channel is not Channel.EMAIL:
            return ""
        if not publication.content.tracking:
            return ""
        return self._links.mirror_url(message.delivery_log_id)

    async def _writer(self) -> None:
        interval = self._settings.outcome_flush_ms / 1000
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_now.wait(), interval)
            self._flush_now.clear()
            try:
                await self._write()
            except StoreUnavailableError as exc:
                self._store_error(exc, "outcome writer")
                await asyncio.sleep(1.0)  # kept in memory; tried again every second
            except Exception as exc:  # noqa: BLE001 - keep the outcomes and try again
                log.warning(
                    "outcomes not written yet", action="send.outcomes_deferred", error=str(exc)
                )
                await asyncio.sleep(1.0)

    async def _write(self) -> None:
        if not self._outcomes:
            return
        batch, self._outcomes = self._outcomes, []
        try:
            await asyncio.to_thread(self._record, batch)
        except BaseException:
            self._outcomes[:0] = batch
            raise
        self._held.difference_update(o.delivery_log_id for o in batch)

    def _record(self, batch: list[Outcome]) -> None:
        with self._db.write() as conn:
            processing_store.record_outcomes(conn, batch, datetime.now(UTC))

    async def _renewer(self) -> None:
        lease = self._settings.claim_lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            if not self._held:
                continue
            until = datetime.now(UTC) + timedelta(seconds=lease)
            try:
                await asyncio.to_thread(self._renew, sorted(self._held), until)
            except StoreUnavailableError as exc:
                self._store_error(exc, "claim renewer")
            except Exception as exc:  # noqa: BLE001 - try again at the next round
                log.warning("claims not renewed", action="send.renew_failed", error=str(exc))

    def _renew(self, log_ids: list[int], until: datetime) -> None:
        with self._db.write() as conn:
            processing_store.extend_claims(conn, log_ids, until, self._owner)

    def _store_error(self, exc: StoreUnavailableError, source: str) -> None:
        if self._on_store_error is not None:
            self._on_store_error(exc, source)
        else:
            log.warning(
                "the database is unavailable", action="send.store_unavailable", error=str(exc)
            )

    async def _relay_watch(self) -> None:
        """Probe the relays that cannot be reached; once one answers, retry its messages now."""
        interval = self._settings.relay_probe_seconds
        while True:
            await asyncio.sleep(interval)
            for channel, sender in self._senders.items():
                if sender.health.outage is not None:
                    await sender.probe()
                ended = sender.health.take_ended()
                if ended:
                    await self._hasten(channel, min(outage.since for outage in ended))

    async def _hasten(self, channel: Channel, since: datetime) -> None:
        """Make due now the messages of ``channel`` that failed since ``since``, and say so."""
        # the failures of the last moments before the relay answered are written first
        self._flush_now.set()
        await asyncio.sleep(2 * self._settings.outcome_flush_ms / 1000)

        def hasten() -> int:
            with self._db.write() as conn:
                return processing_store.hasten_retries(conn, channel, since, datetime.now(UTC))

        try:
            hastened = await asyncio.to_thread(hasten)
        except Exception as exc:  # noqa: BLE001 - they are retried after their backoff anyway
            log.warning(
                "messages of a relay outage not hastened",
                action="relay.retries_not_hastened",
                channel=channel.label,
                error=describe_error(exc),
            )
            return
        log.info(
            "messages that failed while the relay was unreachable are retried now",
            action="relay.retries_hastened",
            channel=channel.label,
            messages=hastened,
        )
        if self._on_relay_back is not None:
            self._on_relay_back()


def outcome_of_expiry(message: ClaimedMessage) -> Outcome:
    """The validity period ended before this attempt could start."""
    return Outcome(
        message.delivery_log_id,
        message.event["id"],
        DeliveryStatus.EXPIRED,
        failure_type=FailureType.EXPIRED,
        reason=f"validity period ended after {message.attempts} attempts",
    )


def outcome_of_store_outage(message: ClaimedMessage, exc: StoreUnavailableError) -> Outcome:
    """The database could not be read to attempt the message: it is tried again at once (its
    outcome is written when the database is back)."""
    return Outcome(
        message.delivery_log_id,
        message.event["id"],
        DeliveryStatus.PENDING,
        failure_type=FailureType.SOFT,
        reason=f"not attempted: {describe_error(exc)}",
        due=datetime.now(UTC),
    )


def outcome_of_crash(message: ClaimedMessage, exc: Exception) -> Outcome:
    """An unexpected error while attempting: the message fails with the error as its reason."""
    return failed(
        message, FailureType.HARD, f"internal error while sending: {type(exc).__name__}: {exc}"
    )
