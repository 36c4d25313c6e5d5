"""The SMTP pool against a real aiosmtpd relay on loopback (SPEC §3.7)."""

from __future__ import annotations

import asyncio
import base64
import email.policy
import ssl
from dataclasses import dataclass
from email.parser import BytesParser

import dkim
import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from msgcenter.channels.email import (
    DkimSigner,
    SendStatus,
    SmtpPool,
    SmtpSettings,
    build_message,
    message_id,
)
from tests.conftest import free_port

pytestmark = pytest.mark.anyio

#: recipients (local part) the relay refuses, and how
REFUSALS = {
    "busy": "450 4.2.1 Mailbox busy, try later",
    "nobody": "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown",
}
SENDER = "bounce+dl-1-00000000@example.com"


@pytest.fixture
def anyio_backend():
    return "asyncio"  # aiosmtplib runs on asyncio


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: tuple[str, int]
    tls: bool

    @property
    def message(self):
        return BytesParser(policy=email.policy.default).parsebytes(self.data)


class Relay:
    """An aiosmtpd server on 127.0.0.1 that records what it receives and refuses as told.

    ``peers`` holds the client address of every connection that started a
    transaction, so its size is the number of connections used.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        auth: bool = False,
        pipelining: bool = True,
        **smtp_options: object,
    ) -> None:
        self.port = port or free_port()
        #: whether EHLO offers PIPELINING (aiosmtpd reads pipelined commands in order anyway)
        self.pipelining = pipelining
        self.received: list[Received] = []
        self.peers: set[tuple[str, int]] = set()
        self.logins: list[tuple[str, str]] = []
        #: seconds the relay waits before answering DATA
        self.delay = 0.0
        self._options = (
            {**smtp_options, "authenticator": self.authenticate} if auth else smtp_options
        )
        self._controller: Controller | None = None

    def start(self) -> Relay:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **self._options)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def settings(self, **overrides: object) -> SmtpSettings:
        return SmtpSettings(
            **{"host": "127.0.0.1", "port": self.port, "timeout_seconds": 5, **overrides}
        )

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.peers.add(session.peer)
        envelope.mail_from = address
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        refusal = REFUSALS.get(address.split("@")[0])
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if envelope.rcpt_tos[0].startswith("large@"):
            return "552 5.3.4 Message size exceeds fixed limit"
        await asyncio.sleep(self.delay)
        self.received.append(
            Received(
                envelope.mail_from,
                envelope.rcpt_tos,
                envelope.original_content,
                session.peer,
                server.transport.get_extra_info("cipher") is not None,
            )
        )
        return "250 2.0.0 Queued as 42"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((mechanism, auth_data.login.decode()))
        valid = auth_data.login == b"mc" and auth_data.password == b"pa55"
        return AuthResult(success=valid, handled=False)  # handled=False: aiosmtpd sends the 535


@pytest.fixture(params=["pipelining", "one-by-one"])
def relay(request):
    """The relay, offering PIPELINING or not: the client sends MAIL, RCPT and DATA together,
    or waits for each reply."""
    running = Relay(pipelining=request.param == "pipelining").start()
    yield running
    running.stop()


@pytest.fixture
async def pool_for():
    """``pool_for(settings)`` makes a pool that is closed when the test ends."""
    pools = []

    def make(settings):
        pools.append(SmtpPool(settings))
        return pools[-1]

    yield make
    for pool in pools:
        await pool.close()


def sample(recipient="anne@example.org", **overrides) -> bytes:
    fields = {
        "sender": "Boutique <shop@example.com>",
        "recipient": recipient,
        "subject": "Votre commande est confirmée",
        "message_id": message_id(1, "example.com"),
        "text": "Bonjour Anne",
        "html": "<p>Bonjour <b>Anne</b></p>",
    }
    return build_message(**{**fields, **overrides})


async def test_a_message_arrives_with_its_envelope_headers_and_both_parts(relay, pool_for):
    pool = pool_for(relay.settings())
    outcome = await pool.send(SENDER, "anne@example.org", sample())
    assert outcome.status is SendStatus.SENT
    assert (outcome.code, outcome.reason) == (250, "250 2.0.0 Queued as 42")
    [received] = relay.received
    assert (received.mail_from, received.rcpt_tos) == (SENDER, ["anne@example.org"])
    message = received.message
    assert message["Subject"] == "Votre commande est confirmée"
    assert message["Message-ID"] == "<dl-1@example.com>"
    plain, html = message.get_payload()
    assert plain.get_content().strip() == "Bonjour Anne"
    assert html.get_content().strip() == "<p>Bonjour <b>Anne</b></p>"


async def test_connections_are_reused(relay, pool_for):
    pool = pool_for(relay.settings())
    for _ in range(5):
        assert (await pool.send(SENDER, "anne@example.org", sample())).status is SendStatus.SENT
    assert len(relay.peers) == 1 and pool.connections_opened == 1


async def test_a_connection_is_renewed_after_its_share_of_messages(relay, pool_for):
    pool = pool_for(relay.settings(max_messages_per_connection=2))
    for _ in range(5):
        assert (await pool.send(SENDER, "anne@example.org", sample())).status is SendStatus.SENT
    assert len(relay.peers) == 3


async def test_parallel_sends_use_several_connections_up_to_the_pool_size(relay, pool_for):
    relay.delay = 0.05
    pool = pool_for(relay.settings(pool_size=4))
    outcomes = await asyncio.gather(
        *(pool.send(SENDER, f"u{i}@example.org", sample()) for i in range(20))
    )
    assert all(o.status is SendStatus.SENT for o in outcomes)
    assert len(relay.received) == 20
    assert len(relay.peers) == 4


@pytest.mark.parametrize(
    ("recipient", "status", "code", "user_unknown"),
    [
        ("busy@example.org", SendStatus.TEMPORARY, 450, False),
        ("nobody@example.org", SendStatus.PERMANENT, 550, True),
        ("large@example.org", SendStatus.PERMANENT, 552, False),
    ],
)
async def test_refusals_are_classified_and_the_connection_kept(
    relay, pool_for, recipient, status, code, user_unknown
):
    pool = pool_for(relay.settings())
    outcome = await pool.send(SENDER, recipient, sample(recipient))
    assert (outcome.status, outcome.code, outcome.user_unknown) == (status, code, user_unknown)
    assert outcome.reason.startswith(str(code))
    assert (await pool.send(SENDER, "anne@example.org", sample())).status is SendStatus.SENT
    assert len(relay.peers) == 1


async def test_relay_down_is_temporary_and_the_pool_recovers(pool_for):
    relay = Relay()
    pool = pool_for(relay.settings())
    outcome = await pool.send(SENDER, "anne@example.org", sample())
    assert (outcome.status, outcome.code) == (SendStatus.TEMPORARY, None)
    assert "cannot open a session" in outcome.reason
    relay.start()
    try:
        assert (await pool.send(SENDER, "anne@example.org", sample())).status is SendStatus.SENT
    finally:
        relay.stop()


async def test_a_connection_the_relay_dropped_is_replaced_without_failing_a_message(
    relay, pool_for
):
    pool = pool_for(relay.settings())
    assert (await pool.send(SENDER, "anne@example.org", sample())).status is SendStatus.SENT
    relay.stop()  # closes the pooled connection from the server side
    relay.start()
    assert (await pool.send(SENDER, "anne@example.org", sample())).status is SendStatus.SENT
    assert len(relay.received) == 2 and pool.connections_opened == 2


async def test_a_connection_the_relay_timed_out_is_replaced(pool_for):
    relay = Relay(timeout=0.2).start()  # the relay says 421 and closes idle connections after 0.2 s
    try:
        pool = pool_for(relay.settings())
        assert (await pool.send(SENDER, "anne@example.org", sample())).status is SendStatus.SENT
        await asyncio.sleep(0.5)
        assert (await pool.send(SENDER, "anne@example.org", sample())).status is SendStatus.SENT
        assert len(relay.peers) == 2
    finally:
        relay.stop()


async def test_no_answer_in_time_is_temporary(relay, pool_for):
    relay.delay = 3
    pool = pool_for(relay.settings(timeout_seconds=0.5))
    outcome = await pool.send(SENDER, "anne@example.org", sample())
    assert outcome.status is SendStatus.TEMPORARY
    assert "within 0.5 s at DATA" in outcome.reason


async def test_force_recipient_redirects_every_message(relay, pool_for):
    pool = pool_for(relay.settings(force_recipient="dev@example.net"))
    assert (await pool.send(SENDER, "anne@example.org", sample())).status is SendStatus.SENT
    [received] = relay.received
    assert received.rcpt_tos == ["dev@example.net"]
    assert received.message["X-Original-To"] == "anne@example.org"
    assert received.message["To"] == "anne@example.org"


async def test_non_ascii_addresses_fail_without_a_send(relay, pool_for):
    outcome = await pool_for(relay.settings()).send(SENDER, "anné@example.org", b"x")
    assert outcome.status is SendStatus.PERMANENT and "SMTPUTF8" in outcome.reason
    assert relay.peers == set()


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def ca_file(ca, tmp_path):
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def server_tls(ca):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


async def test_starttls(server_tls, ca_file, pool_for):
    relay = Relay(tls_context=server_tls, require_starttls=True).start()
    try:
        pool = pool_for(relay.settings(tls="starttls", tls_ca_file=ca_file))
        assert (await pool.send(SENDER, "anne@example.org", sample())).status is SendStatus.SENT
        assert relay.received[0].tls
    finally:
        relay.stop()


async def test_implicit_tls(server_tls, ca_file, pool_for):
    relay = Relay(ssl_context=server_tls).start()
    try:
        pool = pool_for(relay.settings(tls="implicit", tls_ca_file=ca_file))
        assert (await pool.send(SENDER, "anne@example.org", sample())).status is SendStatus.SENT
        assert relay.received[0].tls
    finally:
        relay.stop()


async def test_an_untrusted_certificate_is_a_temporary_failure(server_tls, pool_for):
    relay = Relay(ssl_context=server_tls).start()
    try:
        outcome = await pool_for(relay.settings(tls="implicit")).send(
            SENDER, "anne@example.org", sample()
        )
        assert outcome.status is SendStatus.TEMPORARY
        assert "certificate" in outcome.reason.lower()
        assert relay.received == []
    finally:
        relay.stop()


@pytest.mark.parametrize(("mechanism", "excluded"), [("PLAIN", ["LOGIN"]), ("LOGIN", ["PLAIN"])])
async def test_auth(pool_for, mechanism, excluded):
    relay = Relay(auth=True, auth_require_tls=False, auth_exclude_mechanism=excluded).start()
    try:
        pool = pool_for(relay.settings(username="mc", password="pa55"))
        assert (await pool.send(SENDER, "anne@example.org", sample())).status is SendStatus.SENT
        assert relay.logins == [(mechanism, "mc")]
        refused = await pool_for(relay.settings(username="mc", password="wrong")).send(
            SENDER, "anne@example.org", sample()
        )
        assert (refused.status, refused.code) == (SendStatus.TEMPORARY, 535), refused
        assert "refused the session" in refused.reason
    finally:
        relay.stop()


async def test_a_dkim_signed_message_verifies_after_the_relay(relay, pool_for):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    signed = DkimSigner("sel", "example.com", key).sign(sample())
    assert (
        await pool_for(relay.settings()).send(SENDER, "anne@example.org", signed)
    ).status is SendStatus.SENT
    assert dkim.verify(relay.received[0].data, dnsfunc=lambda name, timeout=5: record)
