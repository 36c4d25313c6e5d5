"""SMTP transactions, pipelined or one command at a time (RFC 2920), against scripted relays.

Each relay here is a real TCP server on loopback that reads the client's lines and answers
as its script says, to show what aiosmtpd does not do: wait for a whole pipelined group
before answering, split its replies across reads, accept DATA after a refused RCPT,
or answer garbage. aiosmtpd and Postfix's smtp-sink relays are in test_smtp_pool.py and
test_smtp_sink.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from msgcenter.channels.email import SendStatus, SmtpPool, SmtpSettings
from msgcenter.channels.email.session import MAX_REPLY_BYTES, data_block

pytestmark = pytest.mark.anyio

SENDER = "bounce@example.com"
MESSAGE = b"Subject: hi\r\n\r\n.a line that starts with a dot\r\nbye\r\n"

Script = Callable[["Conversation"], Awaitable[None]]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@dataclass
class Conversation:
    """One client connection to a scripted relay: what it read, and how to answer."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    lines: list[bytes] = field(default_factory=list)
    #: monotonic time each line was read
    read_at: list[float] = field(default_factory=list)

    async def line(self) -> bytes:
        line = await self.reader.readline()
        self.lines.append(line)
        self.read_at.append(time.monotonic())
        return line

    async def say(self, *replies: bytes) -> None:
        self.writer.write(b"".join(replies))
        await self.writer.drain()

    async def message(self) -> bytes:
        """The message after a 354, up to its lone dot."""
        return await self.reader.readuntil(b"\r\n.\r\n")

    async def group(self) -> list[bytes]:
        """The next MAIL, RCPT and DATA, read before any reply; [] after a QUIT (answered)."""
        first = await self.line()
        if first.startswith(b"QUIT"):
            await self.say(b"221 bye\r\n")
            return []
        return [first, await self.line(), await self.line()]

    async def greet(self, *, pipelining: bool) -> None:
        await self.say(b"220 relay.test ESMTP\r\n")
        assert (await self.line()).startswith(b"EHLO")
        offered = b"250-PIPELINING\r\n" if pipelining else b""
        await self.say(b"250-relay.test\r\n" + offered + b"250 8BITMIME\r\n")


@pytest.fixture
async def scripted():
    """``await scripted(script)``: a relay on a free loopback port running ``script`` for each
    connection; returns its settings and the conversations held."""
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> tuple[SmtpSettings, list[Conversation]]:
        held: list[Conversation] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conversation = Conversation(reader, writer)
            held.append(conversation)
            try:
                await script(conversation)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return SmtpSettings(host="127.0.0.1", port=port, timeout_seconds=2), held

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def send(settings: SmtpSettings, *recipients: str) -> list:
    pool = SmtpPool(settings)
    try:
        return [await pool.send(SENDER, r, MESSAGE) for r in recipients]
    finally:
        await pool.close()


async def test_mail_rcpt_and_data_go_together_when_pipelining_is_offered(scripted):
    async def relay(talk: Conversation) -> None:
        await talk.greet(pipelining=True)
        # no reply before the whole group is read: a client waiting for one would hang
        while await talk.group():
            # the replies, split across writes and one of them on several lines
            await talk.say(b"250 2.1.0 O")
            await talk.say(b"k\r\n250-2.1.5 recipient\r\n")
            await talk.say(b"250 2.1.5 ok\r\n354 go ahead\r\n")
            await talk.message()
            await talk.say(b"250 2.0.0 queued\r\n")

    settings, held = await scripted(relay)
    outcomes = await send(settings, "a@example.org", "b@example.org")
    assert [o.status for o in outcomes] == [SendStatus.SENT, SendStatus.SENT]
    assert outcomes[0].reason.startswith("250 2.0.0 queued")
    [talk] = held  # one connection for both
    assert talk.lines[1:4] == [
        b"MAIL FROM:<bounce@example.com>\r\n",
        b"RCPT TO:<a@example.org>\r\n",
        b"DATA\r\n",
    ]


async def test_without_pipelining_each_command_waits_for_its_reply(scripted):
    pause = 0.2

    async def relay(talk: Conversation) -> None:
        await talk.greet(pipelining=False)
        for reply in (b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"):
            await talk.line()
            await asyncio.sleep(pause)
            await talk.say(reply)
        await talk.message()
        await talk.say(b"250 queued\r\n")
        assert await talk.group() == []

    settings, held = await scripted(relay)
    [outcome] = await send(settings, "a@example.org")
    assert outcome.status is SendStatus.SENT
    [talk] = held
    mail, rcpt, data = talk.read_at[1:4]
    assert rcpt - mail >= pause and data - rcpt >= pause


async def test_a_refused_recipient_reads_the_whole_group_and_keeps_the_connection(scripted):
    async def relay(talk: Conversation) -> None:
        await talk.greet(pipelining=True)
        group = await talk.group()
        assert group[1] == b"RCPT TO:<nobody@example.org>\r\n"
        # a relay that takes DATA although it refused the only recipient (RFC 2920 §3.1)
        await talk.say(b"250 ok\r\n550 5.1.1 User unknown\r\n354 go ahead\r\n")
        assert await talk.line() == b".\r\n"  # an empty message
        await talk.say(b"554 no valid recipients\r\n")
        assert await talk.line() == b"RSET\r\n"
        await talk.say(b"250 reset\r\n")
        await talk.group()
        await talk.say(b"250 ok\r\n250 ok\r\n354 go\r\n")
        await talk.message()
        await talk.say(b"250 queued\r\n")
        assert await talk.group() == []

    settings, held = await scripted(relay)
    refused, sent = await send(settings, "nobody@example.org", "a@example.org")
    assert (refused.status, refused.code, refused.user_unknown) == (
        SendStatus.PERMANENT,
        550,
        True,
    )
    assert sent.status is SendStatus.SENT
    assert len(held) == 1


async def test_a_refused_sender_is_about_the_sender_not_the_recipient(scripted):
    async def relay(talk: Conversation) -> None:
        await talk.greet(pipelining=True)
        await talk.group()
        await talk.say(b"553 5.1.8 sender refused\r\n503 no sender\r\n503 no recipients\r\n")
        assert await talk.line() == b"RSET\r\n"
        await talk.say(b"250 reset\r\n")
        assert await talk.group() == []

    settings, _ = await scripted(relay)
    [outcome] = await send(settings, "a@example.org")
    assert (outcome.status, outcome.code, outcome.user_unknown) == (
        SendStatus.PERMANENT,
        553,
        False,
    )


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (b"this is not smtp\r\n", "not an SMTP reply"),
        (b"250-" + b"x" * MAX_REPLY_BYTES + b"\r\n", f"longer than {MAX_REPLY_BYTES}"),
    ],
)
async def test_a_relay_answering_garbage_is_temporary_and_its_connection_dropped(
    scripted, reply, reason
):
    async def relay(talk: Conversation) -> None:
        await talk.greet(pipelining=True)
        await talk.group()
        await talk.say(reply)
        await talk.reader.read()  # until the client closes

    settings, held = await scripted(relay)
    [outcome] = await send(settings, "a@example.org")
    assert outcome.status is SendStatus.TEMPORARY
    # a reply that breaks the session at MAIL on a new connection: not sent, not retried
    assert outcome.reason.startswith("the relay closed a new connection before MAIL: ")
    assert reason in outcome.reason
    assert len(held) == 1


async def test_a_reused_connection_the_relay_leaves_with_421_is_replaced(scripted):
    async def relay(talk: Conversation) -> None:
        await talk.greet(pipelining=True)
        while await talk.group():
            if len(held) == 1 and len(talk.lines) > 4:
                await talk.say(b"421 4.3.2 shutting down\r\n")  # at its second message
                return
            await talk.say(b"250 ok\r\n250 ok\r\n354 go\r\n")
            await talk.message()
            await talk.say(b"250 queued\r\n")

    settings, held = await scripted(relay)
    outcomes = await send(settings, "a@example.org", "b@example.org")
    assert [o.status for o in outcomes] == [SendStatus.SENT, SendStatus.SENT]
    assert len(held) == 2


def test_the_message_is_dot_stuffed_with_crlf_line_ends():
    assert data_block(b"a\n.b\r\n..c\rd") == b"a\r\n..b\r\n...c\r\nd\r\n.\r\n"
    assert data_block(b".\r\n") == b"..\r\n.\r\n"
