"""Asynchronous bounces and complaints (SPEC §3.7): reports mailed over SMTP to the bounce
receiver of a running execution instance change the right delivery log, event and quarantine;
forged bounce addresses are refused; malformed reports are kept and counted, never half-stored.

Every test runs on SQLite and PostgreSQL: a real message is sent through a real SMTP relay
on loopback, and its bounce address (the envelope sender the relay saw) gets the report.
"""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from msgcenter.bounces import ReportKind
from msgcenter.channels.email.identity import verp_address
from msgcenter.settings import BounceSettings, ProcessingSettings, TrackingSettings
from msgcenter.store import bounces as bounce_store
from msgcenter.store.database import Database
from msgcenter.store.tables import bounce_report, quarantine
from msgcenter.workflows.maintenance import Cleanup
from tests.conftest import (
    RunningServer,
    free_port,
    wait_for,
)
from tests.processing import (
    all_final,
    delivery_logs,
    event_json,
    order_publication,
    publish,
    push_rest,
    relaying_server,
    statuses,
)
from tests.smtp import SmtpServer

SECRET = "bounce-test-secret"
BOUNCE_DOMAIN = "bounces.example.com"
CTX = {"client": {"firstname": "Ann"}, "order": {"id": "1001"}}


@contextmanager
def bounce_server(
    db: Database, relay: SmtpServer, **bounces: Any
) -> Iterator[tuple[RunningServer, int]]:
    """An execution instance with its workflows and its bounce receiver; yields it and the
    receiver's port."""
    port = free_port()
    with relaying_server(
        db,
        relay.port,
        secret_key=SECRET,
        smtp={"bounce_domain": BOUNCE_DOMAIN},
        bounces={"enabled": True, "host": "127.0.0.1", "port": port, **bounces},
    ) as running:
        yield running, port


def send_messages(
    server: RunningServer, relay: SmtpServer, *addresses: str
) -> dict[str, tuple[int, int, str]]:
    """Push one event per address and wait until each is sent; address -> (event id, delivery
    log id, bounce address the relay saw)."""
    ids = push_rest(
        server, [{"type": "order_confirmation", "email": a, "ctx": CTX} for a in addresses]
    )
    wait_for(lambda: all_final(server.db, ids), message="the messages to be sent")
    assert set(statuses(server.db, ids).values()) == {"sent"}
    sent = {}
    for address, event_id in zip(addresses, ids, strict=True):
        (log,) = delivery_logs(server.db, event_id)
        (received,) = relay.handler.to(address)
        sent[address] = (event_id, log["id"], received.mail_from)
    return sent


def mail(port: int, to: str, data: bytes, mail_from: str = "") -> None:
    """Deliver ``data`` to the receiver as a reporting MTA does (null reverse path)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail(mail_from, [to], data)


def dsn(bounce_address: str, recipient: str, action: str, status: str, diagnostic: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        f"To: {bounce_address}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: Shop <shop@example.com>\r\nTo: {recipient}\r\nSubject: Order\r\n\r\n"
        "--B--\r\n"
    ).encode()


def qmail_bounce(bounce_address: str, recipient: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.net\r\n"
        f"To: {bounce_address}\r\n"
        "Subject: failure notice\r\n\r\n"
        "Hi. This is the qmail-send program at mx.example.net.\r\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
        f"<{recipient}>:\r\n"
        "192.0.2.1 does not like recipient.\r\n"
        f"Remote host said: 550 5.1.1 <{recipient}>... User unknown\r\n"
        "Giving up on 192.0.2.1.\r\n\r\n"
        "--- Below this line is a copy of the message.\r\n\r\n"
        f"From: Shop <shop@example.com>\r\nTo: {recipient}\r\nSubject: Order\r\n"
    ).encode()


def arf_complaint(bounce_address: str, recipient: str) -> bytes:
    return (
        "From: feedback@fbl.example.net\r\n"
        f"To: {bounce_address}\r\n"
        "Subject: abuse report\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n\r\n'
        "--F\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n"
        "--F\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: ExampleFBL/2.1\r\nVersion: 1\r\n"
        f"Original-Rcpt-To: <{recipient}>\r\n\r\n"
        "--F\r\nContent-Type: message/rfc822\r\n\r\n"
        f"From: Shop <shop@example.com>\r\nTo: {recipient}\r\nSubject: Order\r\n\r\nHello\r\n\r\n"
        "--F--\r\n"
    ).encode()


def quarantined(db: Database) -> dict[str, tuple[str, bool, int | None]]:
    """address -> (failure type, active, delivery log)"""
    with db.read() as conn:
        rows = conn.execute(
            select(
                quarantine.c.address,
                quarantine.c.failure_type,
                quarantine.c.active,
                quarantine.c.delivery_log_id,
            )
        )
        return {a: (t, bool(active), log) for a, t, active, log in rows}


def reports(db: Database) -> list[dict[str, Any]]:
    with db.read() as conn:
        return [
            dict(r)
            for r in conn.execute(select(bounce_report).order_by(bounce_report.c.id)).mappings()
        ]


def timeline(server: RunningServer, event_id: int) -> list[str]:
    return [step["status"] for step in event_json(server, event_id)["history"]]


def counted(kind: str) -> float:
    return REGISTRY.get_sample_value("msgcenter_bounce_reports_total", {"kind": kind}) or 0.0


def test_dsn_non_standard_bounce_and_complaint_change_their_own_message(db, smtp_server):
    with bounce_server(db, smtp_server) as (server, port):
        publish(server, order_publication())
        sent = send_messages(
            server,
            smtp_server,
            "ann@example.net",
            "bob@example.net",
            "cat@example.net",
            "dan@example.net",
        )
        hard_before = counted("hard")

        # an RFC 3464 report: user unknown
        ann_event, ann_log, ann_verp = sent["ann@example.net"]
        assert ann_verp.endswith("@" + BOUNCE_DOMAIN)
        ann_bounce = dsn(
            ann_verp,
            "ann@example.net",
            "failed",
            "5.1.1",
            "550 5.1.1 <ann@example.net>: User unknown",
        )
        mail(port, ann_verp, ann_bounce)
        # a qmail bounce, which only flufl.bounce reads
        bob_event, bob_log, bob_verp = sent["bob@example.net"]
        mail(port, bob_verp, qmail_bounce(bob_verp, "bob@example.net"))
        # a feedback-loop complaint (ARF)
        cat_event, cat_log, cat_verp = sent["cat@example.net"]
        mail(port, cat_verp, arf_complaint(cat_verp, "cat@example.net"))

        # the receiver answered 250 only once all of it was committed: no waiting
        (ann,) = delivery_logs(db, ann_event)
        assert (ann["status"], ann["failure_type"]) == (2, "user_unknown")
        assert ann["failure_reason"] == "bounce: 550 5.1.1 <ann@example.net>: User unknown"
        failed_timeline = ["pending", "pending_delivery", "sent", "delivery_failed"]
        assert timeline(server, ann_event) == failed_timeline
        assert event_json(server, ann_event)["history"][-1]["reason"] == ann["failure_reason"]

        (bob,) = delivery_logs(db, bob_event)
        assert (bob["status"], bob["failure_type"]) == (2, "user_unknown")
        assert bob["failure_reason"] == "bounce: 550 5.1.1 <bob@example.net>... User unknown"
        assert timeline(server, bob_event)[-1] == "delivery_failed"

        # a complaint quarantines the address; the message itself was delivered
        (cat,) = delivery_logs(db, cat_event)
        assert cat["status"] == 1
        assert timeline(server, cat_event)[-1] == "sent"

        assert quarantined(db) == {
            "ann@example.net": ("user_unknown", True, ann_log),
            "bob@example.net": ("user_unknown", True, bob_log),
            "cat@example.net": ("complaint", True, cat_log),
        }
        kept = reports(db)
        assert [(r["kind"], r["delivery_log_id"], r["recipient"]) for r in kept] == [
            ("hard", ann_log, "ann@example.net"),
            ("hard", bob_log, "bob@example.net"),
            ("complaint", cat_log, "cat@example.net"),
        ]
        assert all(r["size"] > 200 for r in kept)
        assert counted("hard") == hard_before + 2

        # the untouched message stays sent, and its address free
        dan_event, _dan_log, _ = sent["dan@example.net"]
        assert timeline(server, dan_event)[-1] == "sent"
        # a quarantined address's next event is ignored without a send
        (again,) = push_rest(
            server, {"type": "order_confirmation", "email": "ann@example.net", "ctx": CTX}
        )
        wait_for(lambda: all_final(db, [again]), message="the next event to ann")
        assert statuses(db, [again]) == {again: "ignored"}
        assert len(smtp_server.handler.to("ann@example.net")) == 1

        # the same bounce again changes nothing more (and is kept again)
        mail(port, ann_verp, ann_bounce)
        assert timeline(server, ann_event) == failed_timeline
        assert len(reports(db)) == 4


def test_forged_and_foreign_bounce_addresses_are_refused(db, smtp_server):
    with bounce_server(db, smtp_server) as (server, port):
        publish(server, order_publication())
        sent = send_messages(server, smtp_server, "ann@example.net")
        event_id, log_id, verp = sent["ann@example.net"]
        local, domain = verp.split("@")
        tag = local.rsplit("-", 1)[1]
        forged = [
            # another delivery log's id under this one's signature
            local.replace(f"dl-{log_id}-", f"dl-{log_id + 1}-") + "@" + domain,
            # the signature altered
            local[: -len(tag)] + ("0" if tag[0] != "0" else "1") + tag[1:] + "@" + domain,
            # signed with another key
            verp_address(log_id, BOUNCE_DOMAIN, "another-secret"),
            # ours, at another domain than the bounce domain
            f"{local}@elsewhere.example.org",
            "postmaster@" + BOUNCE_DOMAIN,
        ]
        for address in forged:
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                mail(
                    port, address, dsn(address, "ann@example.net", "failed", "5.1.1", "550 5.1.1 x")
                )
            code, text = refused.value.recipients[address]
            assert code == 550 and b"no such bounce address" in text, address

        assert reports(db) == [] and quarantined(db) == {}
        (log,) = delivery_logs(db, event_id)
        assert log["status"] == 1
        # case does not matter: some relays lower-case the local part
        mail(port, verp.upper(), dsn(verp, "ann@example.net", "delayed", "4.2.2", "452 4.2.2 full"))
        assert [r["kind"] for r in reports(db)] == ["soft"]


def test_malformed_reports_are_kept_and_counted_and_nothing_is_half_stored(
    db, smtp_server, monkeypatch
):
    with bounce_server(db, smtp_server, soft_bounce_threshold=2, max_message_bytes=4096) as (
        server,
        port,
    ):
        publish(server, order_publication())
        sent = send_messages(server, smtp_server, "ann@example.net", "bob@example.net")
        ann_event, ann_log, ann_verp = sent["ann@example.net"]
        bob_event, bob_log, bob_verp = sent["bob@example.net"]
        malformed_before = counted("malformed")

        # a DSN whose per-recipient fields have no Action: kept with the reason, nothing applied
        broken = dsn(ann_verp, "ann@example.net", "failed", "5.1.1", "550 5.1.1 unknown").replace(
            b"Action: failed\r\n", b""
        )
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo()
            client.mail("")
            client.rcpt(ann_verp)
            code, text = client.data(broken)
        assert code == 250 and b"malformed report kept" in text
        (kept,) = reports(db)
        assert (kept["kind"], kept["delivery_log_id"]) == ("malformed", ann_log)
        assert kept["reason"] == "no Action for ann@example.net (RFC 3464 §2.3.3)"
        assert counted("malformed") == malformed_before + 1
        assert delivery_logs(db, ann_event)[0]["status"] == 1 and quarantined(db) == {}

        # a mail larger than bounces.max_message_bytes is refused, and nothing kept
        with pytest.raises((smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) as refused:
            mail(port, ann_verp, dsn(ann_verp, "ann@example.net", "failed", "5.1.1", "x" * 5000))
        assert refused.value.smtp_code == 552
        assert len(reports(db)) == 1

        # the database failing halfway (after the delivery log and quarantine changed, while
        # keeping the report): the sender is told to retry, and nothing of it is stored
        def failing_keep(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("disk on fire")

        gone_for_good = dsn(ann_verp, "ann@example.net", "failed", "5.1.1", "550 5.1.1 gone")
        monkeypatch.setattr(bounce_store, "keep", failing_keep)
        with pytest.raises(smtplib.SMTPDataError) as deferred:
            mail(port, ann_verp, gone_for_good)
        assert deferred.value.smtp_code == 451
        monkeypatch.undo()
        assert delivery_logs(db, ann_event)[0]["status"] == 1
        assert timeline(server, ann_event)[-1] == "sent"
        assert quarantined(db) == {} and len(reports(db)) == 1
        # … and its retry is applied whole
        mail(port, ann_verp, gone_for_good)
        assert delivery_logs(db, ann_event)[0]["status"] == 2
        assert quarantined(db)["ann@example.net"][0] == "user_unknown"

        # soft bounces: the threshold-th one within the window quarantines, the message stays sent
        delayed = dsn(bob_verp, "bob@example.net", "delayed", "4.2.2", "452 4.2.2 Mailbox full")
        mail(port, bob_verp, delayed)
        assert "bob@example.net" not in quarantined(db)
        mail(port, bob_verp, delayed)
        assert quarantined(db)["bob@example.net"] == ("soft", True, bob_log)
        assert delivery_logs(db, bob_event)[0]["status"] == 1
        assert timeline(server, bob_event)[-1] == "sent"

        # a signed bounce address of a delivery log that is not here (purged): kept, unapplied
        gone = verp_address(10**9, BOUNCE_DOMAIN, SECRET)
        mail(port, gone, dsn(gone, "zed@example.net", "failed", "5.1.1", "550 5.1.1 x"))
        last = reports(db)[-1]
        assert (last["kind"], last["delivery_log_id"], last["recipient"]) == (
            "hard",
            None,
            "zed@example.net",
        )
        assert "delivery log 1000000000 is not here" in last["reason"]
        assert "zed@example.net" not in quarantined(db)


@pytest.mark.slow
def test_msgcenter_exec_bounces_runs_the_receiver_alone(database_url, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "MSGCENTER_DATABASE_URL": database_url,
        "MSGCENTER_SECRET_KEY": SECRET,
        "MSGCENTER_SMTP__BOUNCE_DOMAIN": BOUNCE_DOMAIN,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "msgcenter", "exec", "bounces", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
                    client.ehlo()
                    client.mail("")
                    forged = client.rcpt("bounce+dl-1-00000000@" + BOUNCE_DOMAIN)
                    assert forged[0] == 550
                    ours = client.rcpt(verp_address(1, BOUNCE_DOMAIN, SECRET))
                    assert ours[0] == 250
                    code, _ = client.data(
                        b"From: someone@example.net\r\nSubject: hi\r\n\r\nhello\r\n"
                    )
                    assert code == 250
                break
            except (ConnectionRefusedError, smtplib.SMTPServerDisconnected):
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "the receiver did not start"
                time.sleep(0.1)
        database = Database(database_url)
        try:
            assert [r["kind"] for r in reports(database)] == ["unknown"]
        finally:
            database.dispose()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


def test_cleanup_purges_kept_reports_past_their_retention(db):
    now = datetime.now(UTC)
    with db.write() as conn:
        for days in (100, 10):
            bounce_store.keep(
                conn,
                received=now - timedelta(days=days),
                kind=ReportKind.UNKNOWN,
                delivery_log_id=None,
                recipient=None,
                reason=f"{days} days old",
                size=10,
            )
    Cleanup(db, ProcessingSettings(), TrackingSettings(), BounceSettings(retention_days=30)).purge()
    assert [r["reason"] for r in reports(db)] == ["10 days old"]
