"""A clean stop (SIGTERM) of ``msgcenter exec serve`` while it sends: nothing is sent twice.

Taking an execution instance out of service behind a load balancer is a SIGTERM
(docs/scaling.md). The messages being sent at that moment may already be accepted by
the relay; their attempts must end and their outcomes be written before the process
exits, or a restart sends them again (the crash's duplicate window, which a clean stop
must stay out of). bench/scale.py found such duplicates; this test holds each DATA
reply for a while, so that the SIGTERM always falls on attempts under way.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from msgcenter.store.database import Database
from msgcenter.store.tables import event
from tests.acceptance.servers import ServerProcess, msgcenter_cli
from tests.conftest import add_operator, wait_for
from tests.smtp import Received, RecordingHandler, SmtpServer

pytestmark = pytest.mark.slow

ADMIN = ("mc", "secret")
PUBLICATION = Path(__file__).parents[1] / "fixtures" / "order_confirmation.toml"


@dataclass
class SlowRelay(RecordingHandler):
    """Takes each message, then waits before answering 250: a sender stopped meanwhile has
    had its message accepted without knowing it yet."""

    delay: float = 0.2

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), b""))
        await asyncio.sleep(self.delay)
        return "250 2.0.0 accepted"

    def count(self) -> int:
        with self.lock:
            return len(self.received)


@pytest.fixture
def relay() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.handler = SlowRelay()
    server.start()
    yield server
    server.stop()


def test_a_sigterm_while_sending_lets_the_attempts_end_and_a_restart_sends_nothing_twice(
    db: Database, relay: SmtpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler: SlowRelay = relay.handler  # type: ignore[assignment]
    for name, value in {
        "SMTP__HOST": "127.0.0.1",
        "SMTP__PORT": str(relay.port),
        "SMTP__TIMEOUT_SECONDS": "10",
        "PROCESSING__POLL_INTERVAL_SECONDS": "0.2",
    }.items():
        monkeypatch.setenv(f"MSGCENTER_{name}", value)
    add_operator(db, *ADMIN)
    msgcenter_cli("exec", "publication", "load", str(PUBLICATION), "--db", db.url)
    total = 200
    events = [
        {
            "type": "order_confirmation",
            "email": f"c{n}@example.com",
            "ctx": {"client": {"firstname": "C"}, "order": {"id": str(n)}},
        }
        for n in range(total)
    ]
    server = ServerProcess(db.url, tmp_path / "serve.log").start()
    try:
        answer = httpx.post(
            f"{server.url}/api/v1/events/batch", json=events, auth=ADMIN, timeout=30
        )
        assert answer.status_code == 201, answer.text
        # attempts (one per pooled SMTP connection) of 0.2 s each at the relay: the stop falls among them
        wait_for(lambda: handler.count() >= 48, timeout=60, message="sending under way")
        server.stop()
        assert server.process is not None and server.process.returncode != -9, "killed"
        stopped_at = handler.count()
        assert stopped_at < total, "everything was sent before the stop: nothing tested"

        server = ServerProcess(db.url, tmp_path / "serve-again.log").start()

        def sent() -> int:
            with db.read() as conn:
                return conn.execute(
                    select(func.count()).select_from(event).where(event.c.status == 2)
                ).scalar_one()

        wait_for(lambda: sent() == total, timeout=120, message="every event sent")
    finally:
        server.stop()
    per_address = Counter(a for r in handler.received for a in r.rcpt_tos)
    assert len(per_address) == total, "an event was never sent"
    twice = sorted(a for a, n in per_address.items() if n > 1)
    assert twice == [], f"sent twice after a clean stop at {stopped_at} messages: {twice}"
