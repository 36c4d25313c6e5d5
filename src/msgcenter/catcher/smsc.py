"""An SMSC simulator for the embedded mode: a small SMPP 3.4 server on asyncio that accepts
binds and ``submit_sm``, keeps what it received (text decoded, long messages reassembled) in
memory for the catcher page, and sends a ``DELIVRD`` receipt for each message.

It is built on the PDU codec of :mod:`msgcenter.channels.sms.pdu` (aiosmpplib's), not on
smpp34's server: that one cannot drop a session nor be told what to answer except from an
event pump, and the simulator must stay a plain asyncio object the embedded process owns.
``fail_next`` makes it refuse submits with a status (fault injection for a demo or a test).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from aiosmpplib import TON, SmppCommand, SmppCommandStatus

from msgcenter.channels.sms import pdu
from msgcenter.channels.sms.encoding import decode
from msgcenter.channels.sms.pdu import Address, Receipt

log = structlog.get_logger(__name__)

#: messages kept for the page; the oldest go first
KEPT = 500
#: bind commands accepted, whatever the credentials
BINDS = frozenset(
    {SmppCommand.BIND_TRANSCEIVER, SmppCommand.BIND_TRANSMITTER, SmppCommand.BIND_RECEIVER}
)


@dataclass(slots=True)
class CaughtSms:
    """One SMS the simulator received (all its parts, once the last one arrived)."""

    sender: str
    recipient: str
    text: str
    parts: int
    #: the SMSC message id of each part, first part first
    message_ids: list[str]
    received: datetime
    data_coding: int


@dataclass(slots=True)
class _Partial:
    parts: dict[int, str] = field(default_factory=dict)
    ids: dict[int, str] = field(default_factory=dict)


class SmscSimulator:
    """Listens on ``host``:``port`` (0: a free port, read :attr:`port` after :meth:`start`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, receipts: bool = True) -> None:
        self.host = host
        self.port = port
        #: send a DELIVRD receipt for each part of a message that asks for one
        self.receipts = receipts
        #: the SMS received, oldest first (at most :data:`KEPT`)
        self.messages: deque[CaughtSms] = deque(maxlen=KEPT)
        #: command_status to answer the next submits with, instead of accepting them
        self.fail_next: deque[int] = deque()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._ids = itertools.count(1)
        self._partials: dict[tuple[str, str, int], _Partial] = {}

    async def start(self) -> None:
        """Start listening."""
        self._server = await asyncio.start_server(self._session, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("SMSC simulator listening", action="smsc.listening", port=self.port)

    async def stop(self) -> None:
        """Close every session and stop listening."""
        if self._server is not None:
            self._server.close()
        self.drop()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    def drop(self) -> None:
        """Cut every session at once, answers pending (a lost connection, for tests)."""
        for writer in list(self._connections):
            writer.transport.abort()
        self._connections.clear()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        sequence = itertools.count(1)
        try:
            while True:
                try:
                    request = await pdu.read_pdu(reader)
                except (asyncio.IncompleteReadError, ConnectionError, pdu.ProtocolError):
                    return
                command = request.command_id
                if command in BINDS:
                    writer.write(pdu.bind_resp(command, request.sequence, "MSGCENTER"))
                elif command == SmppCommand.SUBMIT_SM:
                    for answer in self._submitted(request, sequence):
                        writer.write(answer)
                elif command == SmppCommand.ENQUIRE_LINK:
                    writer.write(pdu.enquire_link_resp(request.sequence))
                elif command == SmppCommand.UNBIND:
                    writer.write(pdu.unbind_resp(request.sequence))
                    await writer.drain()
                    return
                elif not command & pdu.RESPONSE:
                    writer.write(
                        pdu.generic_nack(request.sequence, SmppCommandStatus.ESME_RINVCMDID)
                    )
                await writer.drain()
        finally:
            self._connections.discard(writer)
            writer.close()

    def _submitted(self, request: pdu.Pdu, sequence: itertools.count[int]) -> list[bytes]:
        try:
            message = pdu.parse_short_message(request.body)
        except ValueError:
            return [pdu.submit_sm_resp(request.sequence, "", SmppCommandStatus.ESME_RINVMSGLEN)]
        if self.fail_next:
            return [pdu.submit_sm_resp(request.sequence, "", self.fail_next.popleft())]
        message_id = f"sim{next(self._ids)}"
        answers = [pdu.submit_sm_resp(request.sequence, message_id)]
        self._keep(message, message_id)
        if self.receipts and message.registered_delivery & 0x03:
            answers.append(
                pdu.receipt_deliver_sm(
                    next(sequence),
                    Receipt(message_id, "DELIVRD", "000"),
                    Address(message.destination_addr, message.dest_ton, message.dest_npi),
                    Address(message.source_addr, message.source_ton, message.source_npi),
                )
            )
        return answers

    def _keep(self, message: pdu.ShortMessage, message_id: str) -> None:
        part = decode(message.message, message.data_coding, udhi=message.udhi)
        sender = _shown(message.source_addr, message.source_ton)
        recipient = _shown(message.destination_addr, message.dest_ton)
        now = datetime.now(UTC)
        if part.reference is None or part.total <= 1:
            self.messages.append(
                CaughtSms(sender, recipient, part.text, 1, [message_id], now, message.data_coding)
            )
            return
        key = (sender, recipient, part.reference)
        partial = self._partials.setdefault(key, _Partial())
        partial.parts[part.sequence] = part.text
        partial.ids[part.sequence] = message_id
        if len(partial.parts) < part.total:
            return
        del self._partials[key]
        order = sorted(partial.parts)
        self.messages.append(
            CaughtSms(
                sender,
                recipient,
                "".join(partial.parts[n] for n in order),
                part.total,
                [partial.ids[n] for n in order],
                now,
                message.data_coding,
            )
        )


def _shown(number: str, ton: int) -> str:
    """A number as the page shows it: an international one with its +."""
    return f"+{number}" if ton == TON.INTERNATIONAL else number


class ThreadedSmsc:
    """An :class:`SmscSimulator` on an event loop of its own thread, for a process whose own
    loop starts later (``msgcenter up``): started and read from any thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = SmscSimulator(host, port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="smsc", daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self.simulator.port

    def start(self) -> None:
        """Listen; raises OSError if the port is taken."""
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.simulator.start(), self._loop).result(10)
        except BaseException:
            self.stop()
            raise

    def messages(self) -> list[CaughtSms]:
        """The SMS caught, newest first (a copy taken on the simulator's loop)."""

        async def snapshot() -> list[CaughtSms]:
            return list(reversed(self.simulator.messages))

        return asyncio.run_coroutine_threadsafe(snapshot(), self._loop).result(10)

    def stop(self) -> None:
        """Close every session, stop listening and end the thread."""
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.simulator.stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()
