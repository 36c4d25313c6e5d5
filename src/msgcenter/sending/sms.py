"""The SMS connector: encode the rendered text, submit it over SMPP, apply delivery receipts
(SPEC §3.7).

A message's delivery log keeps the SMSC's message id of its **first part** (from its
``submit_sm_resp``); a delivery receipt names that id and turns the log from sent into
delivered or failed, late, as an asynchronous bounce does. The first part's receipt decides;
the receipts of the other parts are recognised while this process runs (their ids are kept
in memory, :data:`PART_IDS_KEPT` at most) — a failed later part fails a log still sent, any
other is only counted (``part``). After a restart, a later part's receipt is counted as
``unknown``, which is harmless: the first part's receipt decides.

Receipts are written in batches, one transaction every ``sms.receipt_flush_ms``, from a
thread, and each ``deliver_sm`` is acknowledged once the transaction that applied it is
committed; if the database fails, they are not acknowledged and the SMSC delivers them again.
A receipt whose message id is not found yet (its submit's outcome may still be in the
dispatcher's memory) is tried again for ``sms.receipt_grace_seconds``, then counted as
unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from aiosmpplib import NPI, TON, SmppCommand, SmppCommandStatus

from msgcenter.channels.health import RelayHealth
from msgcenter.channels.sms import pdu
from msgcenter.channels.sms.config import SmsSettings
from msgcenter.channels.sms.encoding import TooManyParts, encode
from msgcenter.channels.sms.pdu import Address, Pdu, Receipt
from msgcenter.channels.sms.session import BindPool, LinkDown
from msgcenter.deliveries import ClaimedMessage, FailureType
from msgcenter.errors import describe_error
from msgcenter.events.model import Channel
from msgcenter.monitoring import metrics
from msgcenter.publications import Publication
from msgcenter.render import Ctx, RenderedMessage
from msgcenter.sending.attempts import Attempt, AttemptKind
from msgcenter.store import processing as processing_store
from msgcenter.store.database import Database

log = structlog.get_logger(__name__)

#: ids of later parts of long messages kept to recognise their receipts
PART_IDS_KEPT = 100_000
#: a short code: a number of up to 8 digits that is no international number
SHORT_CODE = re.compile(r"\d{1,8}")
INTERNATIONAL = re.compile(r"\+?\d{9,15}")
#: alphanumeric sender ids: 11 characters at most (TS 23.040 §9.1.2.5), GSM letters
ALPHANUMERIC = re.compile(r"[A-Za-z0-9 .&'_-]{1,11}")

#: command_status answers to submit_sm that a later attempt may get past (SMPP 3.4 §5.1.3);
#: any other is permanent, and ESME_RINVDSTADR also quarantines the number
TEMPORARY_STATUSES = frozenset(
    {
        SmppCommandStatus.ESME_RSYSERR,
        SmppCommandStatus.ESME_RMSGQFUL,
        SmppCommandStatus.ESME_RTHROTTLED,
        SmppCommandStatus.ESME_RINVBNDSTS,
        SmppCommandStatus.ESME_RSUBMITFAIL,
        SmppCommandStatus.ESME_RX_T_APPN,
        SmppCommandStatus.ESME_RDELIVERYFAILURE,
        SmppCommandStatus.ESME_RUNKNOWNERR,
    }
)
#: receipt states that end a message without delivery
FAILED_STATES = {
    "UNDELIV": FailureType.HARD,
    "REJECTD": FailureType.HARD,
    "DELETED": FailureType.HARD,
    "EXPIRED": FailureType.EXPIRED,
}


def is_temporary(status: int) -> bool:
    """Whether a submit_sm refused with ``status`` may go through later (vendor codes
    0x400-0x4FF are unknown here: retried until the validity period ends)."""
    return status in TEMPORARY_STATUSES or status >= 0x400


def source_address(sender: str, settings: SmsSettings) -> Address:
    """The SMPP source address of a sender id, with its TON/NPI (settings override them)."""
    sender = sender.strip()
    if SHORT_CODE.fullmatch(sender):
        ton, npi, number = TON.NETWORK_SPECIFIC, NPI.UNKNOWN, sender
    elif INTERNATIONAL.fullmatch(sender):
        ton, npi, number = TON.INTERNATIONAL, NPI.ISDN, sender.removeprefix("+")
    elif ALPHANUMERIC.fullmatch(sender):
        ton, npi, number = TON.ALPHANUMERIC, NPI.UNKNOWN, sender
    else:
        raise ValueError(
            f"sender id {sender!r} is neither a number (+ and 9 to 15 digits, or a short code of "
            "up to 8 digits) nor an alphanumeric name of 11 characters at most"
        )
    return Address(
        number,
        settings.source_ton if settings.source_ton is not None else ton,
        settings.source_npi if settings.source_npi is not None else npi,
    )


def destination_address(number: str) -> Address:
    """An E.164 number (normalised at intake) as an international SMPP address."""
    return Address(number.removeprefix("+"), TON.INTERNATIONAL, NPI.ISDN)


@dataclass(slots=True)
class PendingReceipt:
    """A receipt waiting to be written, and how to acknowledge its deliver_sm."""

    receipt: Receipt
    ack: Callable[[], None]
    #: when it arrived (monotonic): it is unknown once the grace period has passed
    arrived: float


class SmsSender:
    """Sends rendered messages as SMS through one SMSC account, and applies its receipts."""

    def __init__(self, settings: SmsSettings, db: Database | None = None) -> None:
        self._settings = settings
        self._db = db
        self._health = RelayHealth(Channel.SMS.label)
        self._pool = BindPool(settings, self._health, self._on_deliver)
        #: the concatenation reference of the next long message (its low octet is used)
        self._references = itertools.count(1)
        #: SMSC id of a later part -> SMSC id of its message's first part
        self._part_ids: OrderedDict[str, str] = OrderedDict()
        self._receipts: list[PendingReceipt] = []
        self._receipts_waiting = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the binds now (from the running loop), so that receipts flow before any send."""
        self._open()

    def _open(self) -> None:
        """Open the binds and start the receipt writer, unless they are already."""
        self._pool.start()
        if self._writer is None and self._db is not None:
            self._writer = asyncio.create_task(self._write_receipts(), name="sms-receipts")

    # -- sending --------------------------------------------------------------------------

    async def send(
        self, message: ClaimedMessage, publication: Publication, rendered: RenderedMessage, ctx: Ctx
    ) -> Attempt:
        """Submit one SMS (in as many parts as it needs); every failure comes back as an
        :class:`Attempt`."""
        self._open()
        settings = self._settings
        text = rendered.sms
        if not text.strip():
            return Attempt(
                AttemptKind.PERMANENT,
                "the SMS text is empty: the published template has no sms content, "
                "or it rendered to nothing for this event",
            )
        try:
            encoded = encode(text, next(self._references), max_parts=settings.max_parts)
        except TooManyParts as exc:
            return Attempt(
                AttemptKind.PERMANENT,
                f"the SMS text needs {exc.parts} parts ({len(text)} characters), more than "
                f"sms.max_parts ({settings.max_parts})",
            )
        sender = publication.content.sender or settings.default_sender
        if not sender:
            return Attempt(
                AttemptKind.PERMANENT,
                "no sender id: the published template has no sender and sms.default_sender is empty",
            )
        try:
            source = source_address(sender, settings)
        except ValueError as exc:
            return Attempt(AttemptKind.PERMANENT, str(exc))
        destination = destination_address(message.address)
        registered = 1 if settings.delivery_receipts else 0
        deadline = time.monotonic() + settings.attempt_seconds
        total = len(encoded.parts)
        ids: list[str] = []
        for number, part in enumerate(encoded.parts, start=1):
            # encoded once; each try (throttled, or after a lost bind) only sets its sequence
            octets = pdu.submit_sm(
                0,
                source,
                destination,
                part,
                encoded.data_coding,
                udhi=encoded.concatenated,
                registered_delivery=registered,
            )
            accepted = await self._submit_part(
                functools.partial(pdu.with_sequence, octets),
                deadline,
                ids[0] if ids else None,
                number,
                total,
            )
            if isinstance(accepted, Attempt):
                return accepted
            ids.append(accepted)
        metrics.SMS_PARTS.inc(total)
        first = ids[0]
        for other in ids[1:]:
            self._part_ids[other] = first
        while len(self._part_ids) > PART_IDS_KEPT:
            self._part_ids.popitem(last=False)
        self._health.succeeded()
        return Attempt(
            AttemptKind.SENT,
            f"accepted by the SMSC in {total} part{'s' if total > 1 else ''}",
            message_id=first,
        )

    async def _submit_part(
        self,
        build: Callable[[int], bytes],
        deadline: float,
        first: str | None,
        number: int,
        total: int,
    ) -> str | Attempt:
        """Submit part ``number`` of ``total`` (``first``: the SMSC id of the first part, once
        accepted); its SMSC id once accepted, else the attempt's end.

        A part after the first is retried within the attempt on a temporary error: sending
        the whole message again would repeat the parts already accepted.
        """
        while True:
            try:
                answer = await self._pool.submit(build, deadline)
            except LinkDown as exc:
                return self._unanswered(exc.reason, first, number, total)
            if (
                answer.command_id == SmppCommand.SUBMIT_SM_RESP
                and answer.status == SmppCommandStatus.ESME_ROK
            ):
                self._pool.accepted()
                return pdu.parse_c_string(answer.body)
            status = answer.status
            name = pdu.status_name(status)
            metrics.SMPP_ERRORS.labels(status=name.split(" ")[0]).inc()
            where = f" (part {number} of {total})" if total > 1 else ""
            if status == SmppCommandStatus.ESME_RINVDSTADR:
                return Attempt(
                    AttemptKind.PERMANENT,
                    f"the SMSC refused the number: {name}{where}",
                    message_id=first,
                    failure_type=FailureType.USER_UNKNOWN,
                    quarantine=True,
                )
            if not is_temporary(status):
                return Attempt(
                    AttemptKind.PERMANENT,
                    f"the SMSC refused the message: {name}{where}",
                    message_id=first,
                    failure_type=FailureType.HARD,
                )
            if first is None:
                return Attempt(
                    AttemptKind.TEMPORARY,
                    f"the SMSC refused the message for now: {name}",
                    failure_type=FailureType.SOFT,
                )
            if time.monotonic() >= deadline:
                return self._unanswered(
                    f"the SMSC refused it for now: {name}", first, number, total
                )
            await asyncio.sleep(self._settings.throttle_backoff_seconds)

    def _unanswered(self, reason: str, first: str | None, number: int, total: int) -> Attempt:
        if first is None:
            return Attempt(AttemptKind.TEMPORARY, reason, failure_type=FailureType.SOFT)
        # earlier parts reached the SMSC: sending them again would repeat them on the phone
        return Attempt(
            AttemptKind.PERMANENT,
            f"part {number} of {total} not accepted ({reason}); {number - 1} earlier parts were",
            message_id=first,
            failure_type=FailureType.HARD,
        )

    # -- receipts -------------------------------------------------------------------------

    async def _on_deliver(self, received: Pdu, ack: Callable[[], None]) -> None:
        """A deliver_sm arrived: queue its receipt for the writer (acknowledged once stored)."""
        try:
            message = pdu.parse_short_message(received.body)
        except ValueError as exc:
            metrics.SMS_RECEIPTS.labels(result="malformed").inc()
            log.warning(
                "unreadable deliver_sm acknowledged", action="sms.deliver_malformed", error=str(exc)
            )
            ack()
            return
        receipt = pdu.parse_receipt(message) if message.is_receipt else None
        if receipt is None:
            # a mobile-originated message, or a receipt naming no message: not for us
            metrics.SMS_RECEIPTS.labels(result="malformed" if message.is_receipt else "mo").inc()
            log.info(
                "deliver_sm that is no receipt of ours acknowledged",
                action="sms.deliver_ignored",
                esm_class=message.esm_class,
                source=message.source_addr,
            )
            ack()
            return
        if self._db is None:
            ack()
            return
        self._receipts.append(PendingReceipt(receipt, ack, time.monotonic()))
        self._receipts_waiting.set()

    async def _write_receipts(self) -> None:
        interval = self._settings.receipt_flush_ms / 1000
        while True:
            await self._receipts_waiting.wait()
            await asyncio.sleep(interval)  # gathers the receipts of this interval
            self._receipts_waiting.clear()
            batch, self._receipts = self._receipts, []
            # sorted here, on the loop (the part ids change as messages are sent), and again
            # at each try of a receipt whose message is not found yet: its later parts' ids
            # may be known only once its last part is accepted
            to_store: list[tuple[PendingReceipt, str]] = []
            for pending in batch:
                receipt = pending.receipt
                first = self._part_ids.get(receipt.message_id)
                if receipt.state != "DELIVRD" and receipt.state not in FAILED_STATES:
                    self._settled(pending, "intermediate")
                elif receipt.state == "DELIVRD" and first is not None:
                    self._settled(pending, "part")
                else:
                    to_store.append((pending, first or receipt.message_id))
            if not to_store:
                continue
            try:
                settled, waiting = await asyncio.to_thread(self._store, to_store)
            except Exception as exc:  # noqa: BLE001 - not acknowledged: the SMSC sends them again
                log.warning(
                    "delivery receipts not written: left unacknowledged",
                    action="sms.receipts_deferred",
                    receipts=len(to_store),
                    error=describe_error(exc),
                )
                await asyncio.sleep(1.0)
                continue
            for pending, result in settled:
                self._settled(pending, result)
            if waiting:
                self._receipts[:0] = waiting
                self._receipts_waiting.set()

    def _store(
        self, receipts: list[tuple[PendingReceipt, str]]
    ) -> tuple[list[tuple[PendingReceipt, str]], list[PendingReceipt]]:
        """Apply ``receipts`` (each with the SMSC id of its message's first part) in one
        transaction: one query finds their delivery logs, one update marks the delivered ones.
        Returns the receipts settled, each with its result, and those whose message is not
        found yet (tried again until the grace period ends)."""
        assert self._db is not None
        now = datetime.now(UTC)
        grace = self._settings.receipt_grace_seconds
        settled: list[tuple[PendingReceipt, str]] = []
        waiting: list[PendingReceipt] = []
        delivered: list[int] = []
        with self._db.write() as conn:
            found = processing_store.find_by_message_ids(
                conn, Channel.SMS, [message_id for _, message_id in receipts]
            )
            for pending, message_id in receipts:
                receipt = pending.receipt
                log_id = found.get(message_id)
                failure = FAILED_STATES.get(receipt.state)
                if log_id is None:
                    if time.monotonic() - pending.arrived < grace:
                        waiting.append(pending)
                    else:
                        settled.append((pending, "unknown"))
                elif failure is None:
                    delivered.append(log_id)
                    settled.append((pending, "delivered"))
                else:
                    invalid = _error_code(receipt.error) in self._settings.invalid_number_errors
                    processing_store.record_late_failure(
                        conn,
                        log_id,
                        FailureType.USER_UNKNOWN if invalid else failure,
                        f"delivery receipt: {receipt.state} err:{receipt.error}"
                        + (" (part of a long message)" if message_id != receipt.message_id else ""),
                        now,
                        quarantine=invalid,
                    )
                    settled.append((pending, "failed"))
            processing_store.record_late_deliveries(conn, delivered, now)
        return settled, waiting

    @staticmethod
    def _settled(pending: PendingReceipt, result: str) -> None:
        """A receipt is applied, or needs nothing: counted, and its deliver_sm acknowledged."""
        metrics.SMS_RECEIPTS.labels(result=result).inc()
        if result == "unknown":
            log.warning(
                "delivery receipt for a message no delivery log has",
                action="sms.receipt_unknown",
                message_id=pending.receipt.message_id,
                state=pending.receipt.state,
            )
        pending.ack()

    # -- the ChannelSender protocol -----------------------------------------------------------

    @property
    def health(self) -> RelayHealth:
        """Whether the SMSC can be reached."""
        return self._health

    async def probe(self) -> bool:
        """Whether a bind to the SMSC is open (waiting up to the timeout for one)."""
        return await self._pool.wait_bound(self._settings.timeout_seconds)

    async def close(self) -> None:
        """Unbind (receipts not yet written stay unacknowledged: the SMSC sends them again)."""
        await self._pool.close()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None


def _error_code(error: str) -> int | None:
    try:
        return int(error, 10)
    except ValueError:
        return None
