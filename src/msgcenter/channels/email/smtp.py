"""A pool of reused SMTP connections to the relay (SPEC §3.7).

aiosmtplib opens each session (TLS, EHLO, AUTH); :mod:`msgcenter.channels.email.session`
runs its transactions, pipelined when the relay offers it. Each message is one
transaction (MAIL, RCPT, DATA) on a connection taken from the pool; at most ``pool_size`` transactions run at once, each on its own
connection. A connection goes back to the pool after a transaction unless it
has carried ``max_messages_per_connection`` messages or broke; an idle one
that the relay closed meanwhile is noticed and replaced.

Every SMTP outcome is returned as a :class:`SendOutcome`; nothing here raises
for a refusal, a timeout or an unreachable relay. A failure to open a session
(refused connection, greeting, EHLO, STARTTLS or AUTH refused) is temporary
even with a 5xx code: it is the relay's or the settings' problem, not the
message's, and the message must wait until it is solved. Such failures, and a
connection lost mid-transaction, are reported to the pool's :class:`RelayHealth`;
:meth:`SmtpPool.probe` opens a session only to see whether the relay is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import ssl

import structlog
from aiosmtplib import (
    SMTP,
    SMTPException,
    SMTPHeloError,
    SMTPResponseException,
    SMTPTimeoutError,
)

from msgcenter.channels.email.config import SmtpSettings, SmtpTls
from msgcenter.channels.email.replies import SendOutcome, SendStatus
from msgcenter.channels.email.session import (
    CLOSING,
    ReplyTimeout,
    SessionLost,
    SmtpSession,
    argument,
    data_block,
)
from msgcenter.channels.health import RelayHealth
from msgcenter.errors import ConfigurationError

log = structlog.get_logger(__name__)

#: seconds allowed for QUIT when the pool closes
_QUIT_TIMEOUT = 2.0


@dataclasses.dataclass(slots=True)
class _Connection:
    session: SmtpSession
    #: messages accepted over this connection
    sent: int = 0


class _Stale(Exception):
    """A reused connection turned out closed before the transaction started: open another."""


class SmtpPool:
    """Sends messages through the relay of ``settings`` over a pool of reused connections."""

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings
        self._slots = asyncio.Semaphore(settings.pool_size)
        self._idle: list[_Connection] = []
        self._tls_context = _tls_context(settings)
        self._helo_name = settings.helo_name or socket.getfqdn()
        self._closed = False
        #: connections opened so far (for metrics and tests)
        self.connections_opened = 0
        #: whether the relay can be reached, as the sessions see it
        self.health = RelayHealth("email")
        #: whether the last session opened pipelines its transactions (None before the first)
        self.pipelining: bool | None = None

    async def send(self, envelope_from: str, recipient: str, data: bytes) -> SendOutcome:
        """Send ``data`` (a complete message, CRLF line ends) from ``envelope_from`` to ``recipient``.

        With ``force_recipient`` set, the message goes to that address instead and
        gains an ``X-Original-To`` header naming ``recipient``; a "user unknown"
        reply then concerns the forced address, so it is not flagged.
        """
        if self._closed:
            raise RuntimeError("the SMTP pool is closed")
        forced = self._settings.force_recipient
        if forced:
            original = " ".join(recipient.split()).encode("ascii", "replace")  # one header line
            data = b"X-Original-To: " + original + b"\r\n" + data
            recipient = forced
        if not (envelope_from.isascii() and recipient.isascii()):
            # RFC 6531 (SMTPUTF8) is not supported: such an address cannot be sent to at all
            return SendOutcome(
                SendStatus.PERMANENT, None, f"non-ASCII address needs SMTPUTF8: {recipient}"
            )
        async with self._slots:
            outcome = await self._send(envelope_from, recipient, data)
        if forced and outcome.user_unknown:
            outcome = dataclasses.replace(outcome, user_unknown=False)
        return outcome

    async def probe(self) -> bool:
        """Open a session (kept in the pool) to see whether the relay answers; the result is
        reported to :attr:`health` too."""
        if self._closed:
            return False
        async with self._slots:
            opened = await self._open()
            if isinstance(opened, SendOutcome):
                return False
            await self._release(opened)
            return True

    async def close(self) -> None:
        """Say QUIT on idle connections and close them; connections in use close when their send ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(connection) for connection in idle))

    async def _send(self, envelope_from: str, recipient: str, data: bytes) -> SendOutcome:
        connection = self._take_idle()
        if connection is not None:
            try:
                return await self._transact(connection, envelope_from, recipient, data)
            except _Stale:
                log.info("stale SMTP connection replaced", action="smtp.stale_connection")
        opened = await self._open()
        if isinstance(opened, SendOutcome):
            return opened
        try:
            return await self._transact(opened, envelope_from, recipient, data)
        except _Stale as exc:
            return SendOutcome.temporary(
                f"the relay closed a new connection before MAIL: {exc.__cause__}"
            )

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()  # the most recently used is the least likely to be stale
            if connection.session.is_connected:
                return connection
        return None

    async def _release(self, connection: _Connection) -> None:
        """Back to the pool, or QUIT when it has carried its share of messages or the pool is closed."""
        if not connection.session.is_connected:
            return
        if self._closed or connection.sent >= self._settings.max_messages_per_connection:
            await _quit(connection)
        else:
            self._idle.append(connection)

    async def _open(self) -> _Connection | SendOutcome:
        """A connected, greeted (and TLS-protected, authenticated) connection, or why there is none."""
        settings = self._settings
        where = f"{settings.host}:{settings.port}"
        smtp = SMTP(
            hostname=settings.host,
            port=settings.port,
            local_hostname=self._helo_name,
            timeout=settings.timeout_seconds,
            use_tls=settings.tls is SmtpTls.IMPLICIT,
            start_tls=settings.tls is SmtpTls.STARTTLS,
            tls_context=self._tls_context,
            username=settings.username,
            password=settings.password.get_secret_value() if settings.username else None,
        )
        try:
            await smtp.connect()
            if smtp.is_ehlo_or_helo_needed:  # connect greets only for STARTTLS or AUTH
                try:
                    await smtp.ehlo()
                except SMTPHeloError:
                    await smtp.helo()
        except SMTPResponseException as exc:
            return self._unreachable(
                f"the relay {where} refused the session: {exc.code} {exc.message}", exc.code
            )
        except SMTPTimeoutError:
            return self._unreachable(
                f"no answer from the relay {where} within {settings.timeout_seconds:g} s"
            )
        except (SMTPException, OSError) as exc:
            # refused or unreachable, TLS handshake failed, STARTTLS not offered
            return self._unreachable(
                f"cannot open a session with the relay {where}: {_describe(exc)}"
            )
        try:
            session = SmtpSession.take_over(smtp, settings.timeout_seconds)
        except SessionLost as exc:
            return self._unreachable(f"cannot open a session with the relay {where}: {exc}")
        self.connections_opened += 1
        self.pipelining = session.pipelining
        self.health.succeeded()
        return _Connection(session)

    def _unreachable(self, reason: str, code: int | None = None) -> SendOutcome:
        """A temporary failure that is the relay's, not the message's."""
        outcome = SendOutcome.temporary(reason, code)
        self.health.failed(outcome.reason)
        return outcome

    async def _transact(
        self, connection: _Connection, envelope_from: str, recipient: str, data: bytes
    ) -> SendOutcome:
        """One MAIL/RCPT/DATA transaction; raises :class:`_Stale` if the connection was already closed."""
        session = connection.session
        try:
            try:
                done = await session.transact(
                    argument(envelope_from), argument(recipient), data_block(data)
                )
            except SessionLost as exc:
                if session.stage == "MAIL":
                    raise _Stale from exc
                raise
            if done.refused is None:
                connection.sent += 1
                return SendOutcome.sent(done.reply.code, done.reply.text)
            if done.refused == "MAIL" and done.reply.code == CLOSING:
                session.close()
                raise _Stale from SessionLost(f"{done.reply.code} {done.reply.text}")
            if done.refused in ("MAIL", "RCPT"):
                await _reset(session)
            # a refused DATA (before or after the message) ends the transaction on both
            # sides (RFC 5321 §4.1.1.4): no RSET
            return SendOutcome.from_refusal(
                done.reply.code, done.reply.text, about_recipient=done.refused != "MAIL"
            )
        except ReplyTimeout:
            session.close()
            return self._unreachable(
                f"no answer from the relay within {self._settings.timeout_seconds:g} s "
                f"at {session.stage}"
            )
        except SessionLost as exc:
            session.close()
            return self._unreachable(f"connection to the relay lost at {session.stage}: {exc}")
        except asyncio.CancelledError:
            session.close()  # the transaction is in an unknown state: never reuse the connection
            raise
        finally:
            await self._release(connection)


async def _reset(session: SmtpSession) -> None:
    """RSET after a refusal so the connection can carry the next message (RFC 5321 §4.1.1.5)."""
    try:
        await session.reset()
    except (SessionLost, ReplyTimeout):
        session.close()


async def _quit(connection: _Connection) -> None:
    with contextlib.suppress(SessionLost, ReplyTimeout):
        await connection.session.quit(_QUIT_TIMEOUT)
    connection.session.close()


def _tls_context(settings: SmtpSettings) -> ssl.SSLContext | None:
    if settings.tls is SmtpTls.NONE:
        return None
    try:
        return ssl.create_default_context(cafile=settings.tls_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"cannot load smtp.tls_ca_file {settings.tls_ca_file}: {exc}"
        ) from exc


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
