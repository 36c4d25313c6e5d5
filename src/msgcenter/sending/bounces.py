"""Asynchronous bounces and complaints (SPEC §3.7): mail received at the VERP bounce addresses,
read, applied to the delivery log it names, and kept.

Each mail is handled in one transaction: the kept report, and what it changes —
a hard bounce turns the sent delivery log into a failed one (its event into
``delivery_failed``, with a timeline step) and quarantines the address; the
``bounces.soft_bounce_threshold``-th soft bounce of an address within the window
quarantines it; a complaint quarantines it. So a report is stored whole or not
at all: if the database fails, the mail is refused with a temporary error and
its sender tries again later. See :mod:`msgcenter.bounces` for the kinds.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import Connection

from msgcenter.bounces import KeptReport, Report, ReportKind
from msgcenter.channels.email.identity import domain_of, parse_verp
from msgcenter.channels.email.receiver import BounceReceiver, ReceivedMail
from msgcenter.channels.email.reports import read_report
from msgcenter.deliveries import DeliveryStatus, FailureType
from msgcenter.events.model import Channel
from msgcenter.monitoring import metrics
from msgcenter.sending.email import DEVELOPMENT_SECRET
from msgcenter.settings import Settings
from msgcenter.store import bounces as bounce_store
from msgcenter.store import processing as processing_store
from msgcenter.store.database import Database

log = structlog.get_logger(__name__)


class BounceHandling:
    """Recognises this instance's bounce addresses, and reads and applies what comes to them."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings.bounces
        self._secret = settings.secret_key.get_secret_value() or DEVELOPMENT_SECRET
        self._domain = settings.smtp.bounce_domain.strip().lower()
        # with every message forced to one development inbox, reports are about that inbox,
        # not about the addresses of the delivery logs: they fail messages, quarantine none
        self._quarantines = settings.smtp.force_recipient is None

    def verify(self, address: str) -> int | None:
        """The delivery log that ``address`` is the bounce address of, or None if it is not one
        of ours (forged, altered, another domain)."""
        if self._domain and domain_of(address) != self._domain:
            return None
        return parse_verp(address, self._secret)

    def refused(self, address: str) -> None:
        """Account a recipient the receiver refused."""
        metrics.BOUNCE_REFUSED.inc()
        log.debug("not a bounce address of ours", action="bounces.refused", address=address[:100])

    def receive(self, mail: ReceivedMail) -> str:
        """Read, apply and keep one mail, in one transaction; the SMTP reply to give.

        Raises what the database raises (nothing is then stored): the receiver answers with
        a temporary failure and the sender tries again later.
        """
        report = read_report(mail.data)
        now = datetime.now(UTC)
        log_ids: list[int | None] = list(dict.fromkeys(mail.delivery_log_ids)) or [None]
        with self._db.write() as conn:
            applied = [self._apply(conn, log_id, report, len(mail.data), now) for log_id in log_ids]
        metrics.BOUNCE_REPORTS.labels(kind=report.kind.value).inc()
        for kept, effect in applied:
            log.info(
                "bounce report kept",
                action="bounces.report",
                kind=report.kind.value,
                reader=report.reader,
                delivery_log=kept.delivery_log_id,
                report=kept.id,
                reason=kept.reason,
                effect=effect,
                peer=mail.peer,
            )
        return f"250 2.0.0 {report.kind.value} report kept: {applied[0][1]}"

    def _apply(
        self, conn: Connection, log_id: int | None, report: Report, size: int, now: datetime
    ) -> tuple[KeptReport, str]:
        target = bounce_store.bounced_log(conn, log_id) if log_id is not None else None
        reason, effect = report.reason, "nothing to apply it to"
        if log_id is not None and target is not None:
            effect = self._change(conn, log_id, target, report, now)
        elif log_id is not None:
            reason, log_id = f"{reason} (delivery log {log_id} is not here)", None
        kept = bounce_store.keep(
            conn,
            received=now,
            kind=report.kind,
            delivery_log_id=log_id,
            recipient=target[0].lower() if target is not None else report.recipient,
            reason=reason,
            size=size,
        )
        return kept, effect

    def _change(
        self,
        conn: Connection,
        log_id: int,
        target: tuple[str, Channel],
        report: Report,
        now: datetime,
    ) -> str:
        """Apply ``report`` to delivery log ``log_id`` (to ``target``); says what changed."""
        if report.kind is ReportKind.HARD:
            failure_type = FailureType.USER_UNKNOWN if report.user_unknown else FailureType.HARD
            before = processing_store.record_late_failure(
                conn,
                log_id,
                failure_type,
                f"bounce: {report.reason}",
                now,
                quarantine=self._quarantines,
            )
            quarantined = ", address quarantined" if self._quarantines else ""
            if before is DeliveryStatus.SENT:
                return f"message failed{quarantined}"
            state = before.label if before is not None else "gone"
            return f"message left as it was ({state}){quarantined}"
        address, channel = target
        reason, failure_type = "", FailureType.SOFT
        if report.kind is ReportKind.SOFT:
            window = self._settings.soft_bounce_window_days
            count = 1 + bounce_store.soft_bounces(
                conn, address.lower(), now - timedelta(days=window)
            )
            threshold = self._settings.soft_bounce_threshold
            if count < threshold or not self._quarantines:
                return f"soft bounce {count} of {threshold} within {window:g} days"
            reason = f"{count} soft bounces within {window:g} days, the last: {report.reason}"
        elif report.kind is ReportKind.COMPLAINT:
            if not self._quarantines:
                return "complaint noted"
            reason, failure_type = f"complaint: {report.reason}", FailureType.COMPLAINT
        else:
            return "nothing applied"
        processing_store.quarantine_address(
            conn,
            address,
            channel,
            reason=reason,
            failure_type=failure_type,
            delivery_log_id=log_id,
            now=now,
        )
        return "address quarantined"


def build_receiver(settings: Settings, db: Database, *, reuse_port: bool = False) -> BounceReceiver:
    """The bounce receiver of ``settings.bounces``, storing into ``db``."""
    if not settings.secret_key.get_secret_value():
        log.warning(
            "secret_key is empty: bounce addresses use a development key anyone can forge",
            action="bounces.development_secret",
        )
    handling = BounceHandling(db, settings)
    bounces = settings.bounces
    return BounceReceiver(
        host=bounces.host,
        port=bounces.port,
        verify=handling.verify,
        on_message=handling.receive,
        on_refused=handling.refused,
        max_message_bytes=bounces.max_message_bytes,
        timeout_seconds=bounces.timeout_seconds,
        hostname=bounces.hostname or settings.smtp.helo_name,
        reuse_port=reuse_port,
    )


async def run_receiver(settings: Settings, db: Database) -> None:
    """Run the bounce receiver alone until SIGTERM or SIGINT (`msgcenter exec bounces`)."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    receiver = build_receiver(settings, db)
    await receiver.start()
    try:
        await stopping.wait()
    finally:
        await receiver.stop()
