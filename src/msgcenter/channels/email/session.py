"""The transactions of an SMTP session, pipelined when the relay offers it (RFC 2920).

aiosmtplib opens the session (connection, implicit TLS or STARTTLS, EHLO, AUTH), then
hands its transport over to :class:`SmtpSession`, which runs the transactions: MAIL,
RCPT and DATA, RSET after a refusal, QUIT. aiosmtplib waits for each reply before the
next command; with PIPELINING, MAIL, RCPT and DATA go in one write and their three
replies are read together, then the message follows the 354: two writes and two reads
per message instead of four of each. Each write and read is a system call made by the
event loop's thread with the interpreter's lock held, and a wake-up of the relay; on
the bench they were the largest single cost of a worker (``bench/README.md``).

Without PIPELINING the same commands go one at a time. No maintained Python SMTP
client pipelines (aiosmtplib, smtplib and Twisted wait for each reply), hence this one,
kept to what a relay transaction needs.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from dataclasses import dataclass
from email.utils import parseaddr

from aiosmtplib import SMTP

#: RFC 5321 §4.2.3: the relay is closing the connection
CLOSING = 421
#: RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets; a relay's text may run longer
MAX_REPLY_BYTES = 64 * 1024

#: RFC 5321 §4.5.2: a line of the message that starts with a dot gets another
_LEADING_DOT = re.compile(rb"(?m)^\.")
#: lone CR or LF become CRLF, as RFC 5321 §2.3.8 wants every line to end
_LINE_END = re.compile(rb"\r\n|\n|\r(?!\n)")
#: what a command argument may not hold (CR and LF would inject commands)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: an address written as is: nothing RFC 5321 would need quoted or parsed
_PLAIN_ADDRESS = re.compile(r"[^<>()\[\]\\,;:\s\"@]+@[^<>()\[\]\\,;:\s\"@]+")


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: its code and its text (lines joined by newlines)."""

    code: int
    text: str


class SessionLost(Exception):
    """The relay closed the connection, or it broke."""


class ReplyTimeout(Exception):
    """The relay did not reply in time."""


@dataclass(frozen=True, slots=True)
class Transaction:
    """The replies of one MAIL/RCPT/DATA transaction, as far as it went.

    ``refused`` names the first command refused (``MAIL``, ``RCPT``, or ``DATA``, whose
    refusal may come before or after the message), with its reply; ``None`` when the
    message was accepted, with the final reply in ``reply``.
    """

    reply: Reply
    refused: str | None = None


def argument(address: str) -> bytes:
    """The ``<address>`` of MAIL FROM or RCPT TO; :class:`ValueError` for control characters."""
    if _CONTROL.search(address):
        raise ValueError("Command arg contains a prohibited control character")
    address = address.strip()
    if not _PLAIN_ADDRESS.fullmatch(address):
        address = parseaddr(address)[1] or address
    return b"<" + address.encode("ascii") + b">"


def data_block(message: bytes) -> bytes:
    """``message`` as DATA sends it: CRLF line ends, leading dots doubled, ending with
    the lone dot (RFC 5321 §4.1.1.4)."""
    message = _LINE_END.sub(b"\r\n", message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return _LEADING_DOT.sub(b"..", message) + b".\r\n"


class SmtpSession(asyncio.Protocol):
    """An open SMTP session whose replies this protocol reads (see the module)."""

    def __init__(self, transport: asyncio.WriteTransport, *, pipelining: bool, timeout: float):
        self._transport: asyncio.WriteTransport | None = transport
        self.pipelining = pipelining
        self._timeout = timeout
        self._buffer = bytearray()
        self._replies: deque[Reply | Exception] = deque()
        self._waiter: asyncio.Future[None] | None = None
        #: the reply a transaction awaits (MAIL, RCPT or DATA), for error messages
        self.stage = "MAIL"
        transport.set_protocol(self)

    @classmethod
    def take_over(cls, smtp: SMTP, timeout: float) -> SmtpSession:
        """The session aiosmtplib opened in ``smtp``, from now on run by this class (``smtp``
        must not be used again)."""
        protocol = smtp.protocol
        transport = protocol.transport if protocol is not None else None
        if transport is None or transport.is_closing():
            raise SessionLost("the relay closed the session")
        return cls(
            transport,  # type: ignore[arg-type]
            pipelining=smtp.supports_extension("pipelining"),
            timeout=timeout,
        )

    @property
    def is_connected(self) -> bool:
        """Whether the connection is still open (as far as this side knows)."""
        return self._transport is not None and not self._transport.is_closing()

    # -- commands ---------------------------------------------------------------------

    async def transact(self, sender: bytes, recipient: bytes, message: bytes) -> Transaction:
        """MAIL FROM ``sender``, RCPT TO ``recipient``, DATA ``message`` (from
        :func:`data_block`); after a refusal every reply owed has been read, and the
        session is ready for RSET. Raises :class:`SessionLost` or :class:`ReplyTimeout`,
        with :attr:`stage` naming the reply that was awaited."""
        mail = b"MAIL FROM:" + sender + b"\r\n"
        rcpt = b"RCPT TO:" + recipient + b"\r\n"
        self.stage = "MAIL"
        if self._replies:
            # the relay spoke out of turn (a 421 to an idle client, RFC 5321 §4.2.3): a
            # reply read now could be paired with the wrong command
            self.close()
            raise SessionLost("the relay spoke while the connection was idle")
        if not self.pipelining:
            return await self._one_by_one(mail, rcpt, message)
        self._write(mail + rcpt + b"DATA\r\n")
        first = await self._reply()
        if first.code == CLOSING:
            return Transaction(first, "MAIL")  # the relay is leaving: no more replies come
        # RFC 2920 §3.1: every reply of the group is read, whatever the first ones said
        self.stage = "RCPT"
        second = await self._reply()
        self.stage = "DATA"
        third = await self._reply()
        for command, reply in (("MAIL", first), ("RCPT", second)):
            if reply.code != 250:
                if third.code == 354:
                    # a relay that took DATA after a refusal gets an empty message
                    await self._command(b".\r\n")
                return Transaction(reply, command)
        if third.code != 354:
            return Transaction(third, "DATA")
        return await self._message(message)

    async def reset(self) -> Reply:
        """RSET: the next transaction starts afresh (RFC 5321 §4.1.1.5)."""
        return await self._command(b"RSET\r\n")

    async def quit(self, timeout: float) -> None:
        """QUIT (waiting at most ``timeout`` seconds for the reply), then close."""
        self._timeout = min(self._timeout, timeout)
        try:
            await self._command(b"QUIT\r\n")
        finally:
            self.close()

    def close(self) -> None:
        """Close the connection at once."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def _one_by_one(self, mail: bytes, rcpt: bytes, message: bytes) -> Transaction:
        for command, line in (("MAIL", mail), ("RCPT", rcpt), ("DATA", b"DATA\r\n")):
            self.stage = command
            reply = await self._command(line)
            if reply.code != (354 if command == "DATA" else 250):
                return Transaction(reply, command)
        return await self._message(message)

    async def _message(self, message: bytes) -> Transaction:
        # the stage stays DATA: the reply to the message is the end of the DATA command
        reply = await self._command(message)
        return Transaction(reply, None if reply.code == 250 else "DATA")

    async def _command(self, line: bytes) -> Reply:
        self._write(line)
        return await self._reply()

    def _write(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise SessionLost("the connection to the relay is closed")
        self._transport.write(data)

    async def _reply(self) -> Reply:
        if not self._replies:
            if self._transport is None:
                raise SessionLost("the connection to the relay is closed")
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            # one timer handle, cheaper than asyncio.wait_for's wrapping of the future
            timer = loop.call_later(self._timeout, _expire, waiter, self._timeout)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        found = self._replies.popleft()
        if isinstance(found, Exception):
            self._replies.appendleft(found)  # the session stays broken
            raise found
        return found

    # -- asyncio.Protocol -------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > MAX_REPLY_BYTES:
            self._fail(SessionLost(f"a reply longer than {MAX_REPLY_BYTES} bytes"))
            return
        while True:
            reply = self._parse()
            if reply is None:
                break
            self._replies.append(reply)
        if self._replies:
            self._wake()

    def eof_received(self) -> bool:
        self._fail(SessionLost("the relay closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else ""
        self._fail(SessionLost(f"the connection to the relay was lost{reason}"))
        self._transport = None

    def _parse(self) -> Reply | Exception | None:
        """The first complete reply in the buffer (taken out of it), or None."""
        lines: list[bytes] = []
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end == -1:
                return None
            line = bytes(self._buffer[start : end + 1]).rstrip(b"\r\n")
            start = end + 1
            if len(line) < 3 or not line[:3].isdigit():
                del self._buffer[:]
                self.close()
                return SessionLost(f"not an SMTP reply: {line[:80]!r}")
            lines.append(line)
            if line[3:4] != b"-":
                break
        del self._buffer[:start]
        text = "\n".join(line[4:].decode("utf-8", "replace").strip() for line in lines)
        return Reply(int(lines[-1][:3]), text)

    def _fail(self, exc: Exception) -> None:
        if not self._replies or not isinstance(self._replies[-1], Exception):
            self._replies.append(exc)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _expire(waiter: asyncio.Future[None], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(ReplyTimeout(f"no reply within {timeout:g} s"))
