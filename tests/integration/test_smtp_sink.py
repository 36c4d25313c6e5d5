"""The SMTP pool against Postfix's ``smtp-sink``, a relay that offers PIPELINING (RFC 2920).

``smtp-sink`` comes with Debian's ``postfix`` package (``bench/setup-relay.sh`` installs it
without starting a mail daemon; ``.ci/run`` runs it). Without it these tests are skipped,
unless ``MSGCENTER_TEST_RELAY=required``, as in CI, where they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from msgcenter.channels.email import SendStatus, SmtpPool, SmtpSettings
from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.anyio

SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
SENDER = "bounce@example.com"


@pytest.fixture
def anyio_backend():
    return "asyncio"


class Sink:
    """``smtp-sink`` on a free loopback port, appending every message to a dump file."""

    def __init__(self, *options: str) -> None:
        if not os.path.exists(SMTP_SINK):
            message = "smtp-sink is not installed (sh bench/setup-relay.sh)"
            if os.environ.get("MSGCENTER_TEST_RELAY", "").lower() == "required":
                pytest.fail(message + " (MSGCENTER_TEST_RELAY=required)")
            pytest.skip(message)
        self.port = free_port()
        # smtp-sink refuses to run as root and then writes as nobody: a directory of its own
        self.root = Path(tempfile.mkdtemp(prefix="msgcenter-sink-"))
        self.root.chmod(0o777)
        self.dump = self.root / "dump"
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.process = subprocess.Popen(
            [SMTP_SINK, *user, *options, "-D", str(self.dump), f"127.0.0.1:{self.port}", "64"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._listening, timeout=10, message="smtp-sink listening")

    def _listening(self) -> bool:
        assert self.process.poll() is None, f"smtp-sink exited with {self.process.returncode}"
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def settings(self) -> SmtpSettings:
        return SmtpSettings(host="127.0.0.1", port=self.port, timeout_seconds=5, pool_size=4)

    def dumped(self) -> bytes:
        return self.dump.read_bytes() if self.dump.exists() else b""

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def sink() -> Iterator[Sink]:
    running = Sink()
    yield running
    running.stop()


async def test_messages_are_sent_pipelined_and_arrive_whole(sink):
    pool = SmtpPool(sink.settings())
    try:
        outcomes = [
            await pool.send(SENDER, f"r{n}@example.org", b"Subject: m%d\r\n\r\n.dot\r\nend\r\n" % n)
            for n in range(40)
        ]
    finally:
        await pool.close()
    assert {o.status for o in outcomes} == {SendStatus.SENT}
    assert pool.pipelining is True and pool.connections_opened == 1
    # smtp-sink writes each message before it answers the final dot
    dumped = sink.dumped()
    assert [dumped.count(b"X-Rcpt-Args: <r%d@example.org>" % n) for n in range(40)] == [1] * 40
    assert dumped.count(b"\n.dot\n") == 40  # dot-stuffed on the way, unstuffed by the relay


async def test_refused_recipients_are_permanent_and_the_connection_kept():
    sink = Sink("-f", "rcpt")  # every RCPT refused with a 5xx
    try:
        pool = SmtpPool(sink.settings())
        try:
            outcomes = [
                await pool.send(SENDER, f"r{n}@example.org", b"Subject: x\r\n\r\nx\r\n")
                for n in range(5)
            ]
        finally:
            await pool.close()
    finally:
        sink.stop()
    assert {(o.status, o.code) for o in outcomes} == {(SendStatus.PERMANENT, 500)}
    assert pool.connections_opened == 1  # RSET after each refusal, the session reused
