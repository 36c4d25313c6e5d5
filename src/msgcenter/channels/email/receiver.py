"""The SMTP server of the bounce domain: reports come back to the VERP addresses here (SPEC §3.7).

An aiosmtpd server in the caller's event loop (no thread of its own). The bounce
domain's MX faces the whole internet, so RCPT is accepted only for an address
that ``verify`` recognises — a signed bounce address of ours — and refused with
550 otherwise (RFC 5321 §3.3): forged, altered or foreign addresses never get a
mail in. What a message says is handed to ``on_message`` in a worker thread
(reading it and storing what it means is blocking work); the reply it returns is
the SMTP reply. If it raises, the mail is refused with a temporary 451, so the
reporting MTA tries again later and nothing half-done is acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP

from msgcenter.errors import describe_error

log = structlog.get_logger(__name__)

#: aiosmtpd logs every command at INFO: one line per SMTP command of every bounce
_SMTPD_LOGGER = "mail.log"
#: a report goes to one bounce address; a few more are allowed, many are a spammer's
MAX_RECIPIENTS = 10
#: how long stopping waits for sessions under way to end
STOP_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One mail accepted for bounce addresses."""

    #: the envelope sender (empty for a bounce: RFC 5321 §4.5.5's null reverse path)
    mail_from: str
    #: what ``verify`` said about each accepted recipient, in order
    delivery_log_ids: list[int]
    data: bytes
    #: the client's address, for logs
    peer: str


class BounceReceiver:
    """Accepts mail for bounce addresses on ``host:port`` and hands each one to ``on_message``."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        verify: Callable[[str], int | None],
        on_message: Callable[[ReceivedMail], str],
        on_refused: Callable[[str], None] | None = None,
        max_message_bytes: int,
        timeout_seconds: float,
        hostname: str = "",
        reuse_port: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self._handler = _Handler(verify, on_message, on_refused)
        self._max_bytes = max_message_bytes
        self._timeout = timeout_seconds
        # aiosmtpd would look the name up for every session, on the event loop
        self._hostname = hostname or socket.getfqdn()
        self._reuse_port = reuse_port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen (in the running event loop). Raises OSError if the address is taken."""
        logging.getLogger(_SMTPD_LOGGER).setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self.host, self.port, reuse_port=self._reuse_port or None
        )
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]
        log.info(
            "bounce receiver listening",
            action="bounces.listening",
            host=self.host,
            port=self.port,
        )

    async def stop(self) -> None:
        """Stop listening; sessions under way get a few seconds to end."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), STOP_SECONDS)
        log.info("bounce receiver stopped", action="bounces.stopped")

    def _protocol(self) -> SMTP:
        return SMTP(
            self._handler,
            data_size_limit=self._max_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=self._hostname,
            ident="msgcenter bounces",
            timeout=self._timeout,
            loop=asyncio.get_running_loop(),
        )


class _Handler:
    """aiosmtpd handler hooks."""

    def __init__(
        self,
        verify: Callable[[str], int | None],
        on_message: Callable[[ReceivedMail], str],
        on_refused: Callable[[str], None] | None,
    ) -> None:
        self._verify = verify
        self._on_message = on_message
        self._on_refused = on_refused

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self._verify(address) is None:
            if self._on_refused is not None:
                self._on_refused(address)
            return "550 5.1.1 no such bounce address"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        ids = [self._verify(address) for address in envelope.rcpt_tos]
        mail = ReceivedMail(
            # a null reverse path (RFC 5321 §4.5.5) reaches here as "<>"
            mail_from=(envelope.mail_from or "").strip("<>"),
            delivery_log_ids=[i for i in ids if i is not None],
            data=envelope.original_content or b"",
            peer=str(session.peer[0]) if session.peer else "",
        )
        try:
            return await asyncio.to_thread(self._on_message, mail)
        except Exception as exc:  # noqa: BLE001 - the client retries; the receiver goes on
            log.warning(
                "a bounce report could not be stored: refused for now, its sender retries",
                action="bounces.deferred",
                peer=mail.peer,
                error=describe_error(exc),
            )
            return "451 4.3.0 cannot take this report now, try again later"
