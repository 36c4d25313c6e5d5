"""The SMS channel end to end (SPEC §3.7): events pushed over REST or SOAP, routed to an SMS
publication, submitted over SMPP 3.4 to a real SMSC on loopback (smpp34's server, scripted by
``tests/sms.py``), and delivery receipts applied to the delivery logs. Both stores."""

from __future__ import annotations

import asyncio
import contextlib
import time
import types
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiosmpplib import SmppCommand
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from msgcenter.catcher.smsc import SmscSimulator
from msgcenter.channels.health import RelayHealth
from msgcenter.channels.sms import pdu
from msgcenter.channels.sms.config import SmsSettings
from msgcenter.channels.sms.pdu import Pdu
from msgcenter.channels.sms.session import BindPool
from msgcenter.deliveries import DeliveryStatus
from msgcenter.sending.attempts import AttemptKind
from msgcenter.sending.sms import SmsSender
from msgcenter.store.database import Database
from msgcenter.store.tables import archived_delivery_log, delivery_log, event, quarantine
from tests.archiving import register, run_archive
from tests.conftest import wait_for
from tests.control import control_server
from tests.processing import ADMIN, delivery_logs, publish, push_rest, statuses
from tests.sms import RunningServer, Smsc, sms_event, sms_publication, sms_server

ESME_RINVDSTADR = 0x0B
ESME_RTHROTTLED = 0x58
ESME_RINVSRCADR = 0x0A


@pytest.fixture
def smsc() -> Iterator[Smsc]:
    server = Smsc().start()
    yield server
    server.stop()


def log_of(db: Database, event_id: int) -> dict:
    logs = delivery_logs(db, event_id)
    assert len(logs) == 1, logs
    return logs[0]


def sent(db: Database, event_id: int, status: int = 1) -> dict | None:
    logs = delivery_logs(db, event_id)
    return logs[0] if logs and logs[0]["status"] == status else None


def sent_hello(db: Database, server: RunningServer) -> int:
    """Publish a one-part SMS, push an event to it; its id once its message is sent."""
    publish(server, sms_publication("Hello"))
    [event_id] = push_rest(server, sms_event())
    wait_for(lambda: sent(db, event_id), message="sent")
    return event_id


def sent_then_undelivered(db: Database, server: RunningServer, smsc: Smsc, error: str) -> int:
    """:func:`sent_hello`, then an UNDELIV receipt with ``error``; the event id once failed."""
    event_id = sent_hello(db, server)
    smsc.receipt(smsc.submits[0].message_id, "UNDELIV", error)
    wait_for(lambda: statuses(db, [event_id])[event_id] == "delivery_failed", message="failed")
    return event_id


def receipts(result: str) -> float:
    return REGISTRY.get_sample_value("msgcenter_sms_receipts_total", {"result": result}) or 0.0


def test_gsm_text_with_receipt_delivered(db, smsc):
    smsc.auto_receipt = "DELIVRD"
    with sms_server(db, smsc.port) as server:
        publish(
            server,
            sms_publication("Hello {{ ctx.client.firstname }}, order {{ ctx.order.id }}: 10€ {ok}"),
        )
        [event_id] = push_rest(server, sms_event())
        delivered = wait_for(lambda: sent(db, event_id, status=6), message="delivered")
    [submit] = smsc.submits
    assert submit.text == "Hello Ann, order A-1: 10€ {ok}"
    assert (submit.data_coding, submit.esm_class, submit.registered_delivery) == (0, 0, 1)
    # € and { are GSM 03.38 extension characters: ESC then the code, one octet per septet
    assert b"\x1b\x65" in submit.short_message and b"\x1b\x28" in submit.short_message
    assert (submit.destination, submit.dest_ton, submit.dest_npi) == ("33612345678", 1, 1)
    assert (submit.source, submit.source_ton, submit.source_npi) == ("Shop", 5, 0)
    assert delivered["message_id"] == submit.message_id
    assert statuses(db, [event_id]) == {event_id: "sent"}  # SPEC §3.3 has no delivered event


def test_ucs2_text_and_numeric_sender(db, smsc):
    with sms_server(db, smsc.port) as server:
        publish(
            server,
            sms_publication(
                "Привет {{ ctx.client.firstname }} 👋", content={"sender": "+33700000001"}
            ),
        )
        [event_id] = push_rest(server, sms_event())
        wait_for(lambda: sent(db, event_id), message="sent")
    [submit] = smsc.submits
    assert submit.data_coding == 8
    assert submit.short_message == "Привет Ann 👋".encode("utf-16-be")
    assert (submit.source, submit.source_ton, submit.source_npi) == ("33700000001", 1, 1)


def test_long_message_is_sent_in_concatenated_parts(db, smsc):
    text = ("Your parcel is on its way. " * 15)[:400]
    smsc.auto_receipt = "DELIVRD"
    with sms_server(db, smsc.port) as server:
        publish(server, sms_publication(text))
        [event_id] = push_rest(server, sms_event())
        delivered = wait_for(lambda: sent(db, event_id, status=6), message="delivered")
        # every part's receipt came: the first decided, the others are recognised as parts
        wait_for(lambda: receipts("part") >= 2, message="later parts' receipts")
    parts = smsc.submits
    assert len(parts) == 3  # 400 septets: 153 + 153 + 94
    headers = [p.udh for p in parts]
    reference = headers[0][3]
    assert headers == [bytes((5, 0, 3, reference, 3, n)) for n in (1, 2, 3)]
    assert all(p.esm_class & 0x40 for p in parts)
    assert [len(p.short_message) - 6 for p in parts] == [153, 153, 94]
    assert "".join(p.text for p in parts) == text
    assert delivered["message_id"] == parts[0].message_id
    assert delivered["status"] == 6 and delivered["failure_reason"] is None  # delivered, no failure


def test_throttling_then_success(db, smsc):
    smsc.replies.extend([ESME_RTHROTTLED, ESME_RTHROTTLED])
    with sms_server(db, smsc.port) as server:
        publish(server, sms_publication("Hello"))
        [event_id] = push_rest(server, sms_event())
        sent_log = wait_for(lambda: sent(db, event_id), message="sent")
    assert [s.status for s in smsc.submits] == [ESME_RTHROTTLED, ESME_RTHROTTLED, 0]
    assert sent_log["attempts"] == 1  # backed off and sent again within the attempt


def test_undeliverable_receipt_fails_the_message(db, smsc):
    with sms_server(db, smsc.port) as server:
        event_id = sent_then_undelivered(db, server, smsc, "034")
    failed = log_of(db, event_id)
    assert failed["status"] == 2
    assert failed["failure_reason"] == "delivery receipt: UNDELIV err:034"
    with db.read() as conn:
        assert conn.execute(select(quarantine)).first() is None  # 34: no invalid-number code


def test_invalid_number_receipt_quarantines(db, smsc):
    with sms_server(db, smsc.port) as server:
        sent_then_undelivered(db, server, smsc, "001")
        with db.read() as conn:
            entry = conn.execute(select(quarantine)).mappings().one()
        assert (entry["address"], entry["failure_type"]) == ("+33612345678", "user_unknown")
        # the next message to that number is not attempted
        [again] = push_rest(server, sms_event())
        wait_for(lambda: statuses(db, [again])[again] == "ignored", message="ignored")
    assert len(smsc.submits) == 1


def test_invalid_number_on_submit_quarantines(db, smsc):
    smsc.replies.append(ESME_RINVDSTADR)
    with sms_server(db, smsc.port) as server:
        publish(server, sms_publication("Hello"))
        [event_id] = push_rest(server, sms_event())
        wait_for(lambda: statuses(db, [event_id])[event_id] == "delivery_failed", message="failed")
    failed = log_of(db, event_id)
    assert (failed["failure_type"], failed["attempts"]) == ("user_unknown", 1)
    assert "ESME_RINVDSTADR" in failed["failure_reason"]
    with db.read() as conn:
        assert conn.execute(select(quarantine.c.address)).scalar() == "+33612345678"


def test_other_permanent_error_fails_without_quarantine(db, smsc):
    smsc.replies.append(ESME_RINVSRCADR)
    with sms_server(db, smsc.port) as server:
        publish(server, sms_publication("Hello"))
        [event_id] = push_rest(server, sms_event())
        wait_for(lambda: statuses(db, [event_id])[event_id] == "delivery_failed", message="failed")
    assert "ESME_RINVSRCADR" in log_of(db, event_id)["failure_reason"]
    with db.read() as conn:
        assert conn.execute(select(quarantine)).first() is None


def test_connection_dropped_mid_batch_loses_nothing(db, smsc):
    window = 2
    with sms_server(db, smsc.port, window=window) as server:
        publish(server, sms_publication("Hello {{ event.external_id }}"))
        wait_for(lambda: smsc.binds == 1, message="bound")
        smsc.hold = True
        ids = push_rest(
            server, [sms_event(f"+3361234567{i}", external_id=str(i)) for i in range(6)]
        )
        # the window is full: two submits written, unanswered; the four others wait
        wait_for(lambda: len(smsc.submits) == window, message="window full")
        smsc.drop()
        wait_for(lambda: all(sent(db, i) for i in ids), timeout=30, message="all sent")
    texts = [s.text for s in smsc.submits]
    assert sorted(set(texts)) == [f"Hello {i}" for i in range(6)]
    # duplicates only among the submits in flight when the connection dropped
    assert len(texts) - 6 <= window
    assert smsc.binds >= 2  # bound again after the drop


def test_oversized_sms_fails_with_a_clear_reason(db, smsc):
    with sms_server(db, smsc.port, max_parts=2) as server:
        publish(server, sms_publication("x" * 400))
        [event_id] = push_rest(server, sms_event())
        wait_for(lambda: statuses(db, [event_id])[event_id] == "delivery_failed", message="failed")
    assert log_of(db, event_id)["failure_reason"] == (
        "the SMS text needs 3 parts (400 characters), more than sms.max_parts (2)"
    )
    assert smsc.submits == []


def test_empty_sms_fails_with_a_clear_reason(db, smsc):
    with sms_server(db, smsc.port) as server:
        publish(server, sms_publication("{{ ctx.missing }}"))
        [event_id] = push_rest(server, sms_event())
        wait_for(lambda: statuses(db, [event_id])[event_id] == "delivery_failed", message="failed")
    assert log_of(db, event_id)["failure_reason"].startswith("the SMS text is empty")
    assert smsc.submits == []


def test_receipt_for_an_unknown_message_is_counted(db, smsc):
    before = receipts("unknown")
    with sms_server(db, smsc.port, receipt_grace_seconds=0.2) as server:
        event_id = sent_hello(db, server)
        smsc.receipt("no-such-id", "DELIVRD")
        wait_for(lambda: receipts("unknown") > before, message="counted")
        # the session goes on
        [again] = push_rest(server, sms_event("+33612345679"))
        wait_for(lambda: sent(db, again), message="sent after")
    assert sent(db, event_id) is not None  # untouched


@pytest.mark.parametrize(
    ("number", "fragment"),
    [("call me", "'call me' is not a phone number"), ("0612345678", "has no country code")],
)
def test_rest_intake_refuses_a_number_that_is_none(db, smsc, number, fragment):
    with sms_server(db, smsc.port) as server:
        answer = httpx.post(f"{server.url}/api/v1/events/rt", json=sms_event(number), auth=ADMIN)
    assert answer.status_code == 422, answer.text
    assert "mobile_phone" in answer.text and fragment in answer.text


def test_soap_intake_refuses_a_number_that_is_none(db, smsc):
    envelope = (
        '<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:urn="urn:nms:rtEvent"><SOAP-ENV:Body><urn:PushEvent>'
        "<urn:sessiontoken>mc/secret</urn:sessiontoken><urn:domEvent>"
        '<rtEvent type="order_confirmation" wishedChannel="sms" mobilePhone="+33 6 12"><ctx/></rtEvent>'
        "</urn:domEvent></urn:PushEvent></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )
    with sms_server(db, smsc.port) as server:
        answer = httpx.post(
            f"{server.url}/nl/jsp/soaprouter.jsp",
            content=envelope,
            headers={"SOAPAction": "nms:rtEvent#PushEvent", "Content-Type": "text/xml"},
        )
    assert answer.status_code == 500, answer.text
    assert "mobilePhone" in answer.text and "is not a phone number" in answer.text


# -- the embedded mode's SMSC simulator (catcher/smsc.py) ---------------------------------


#: what SmsSender.send reads of a claimed message, a publication and a rendered message
MESSAGE: Any = types.SimpleNamespace(address="+33612345678")
PUBLICATION: Any = types.SimpleNamespace(content=types.SimpleNamespace(sender=""))


def rendered(text: str) -> Any:
    return types.SimpleNamespace(sms=text)


def fast_settings(port: int, **changes: Any) -> SmsSettings:
    return SmsSettings(
        host="127.0.0.1",
        port=port,
        throttle_backoff_seconds=0.05,
        reconnect_min_seconds=0.05,
        default_sender="Shop",
        **changes,
    )


async def ignore_deliver(received: Pdu, ack: Callable[[], None]) -> None:
    ack()


def test_simulator_catches_messages_and_reassembles_parts():
    async def scenario() -> None:
        simulator = SmscSimulator()
        await simulator.start()
        sender = SmsSender(fast_settings(simulator.port))
        try:
            long_text = "Grüße 👋 " * 30
            simulator.fail_next.append(ESME_RTHROTTLED)  # once
            attempts = [
                await sender.send(MESSAGE, PUBLICATION, rendered(text), None)
                for text in ("Hello {Ann}", long_text)
            ]
            assert [a.kind for a in attempts] == [AttemptKind.SENT, AttemptKind.SENT]
            short, long = simulator.messages
            assert (short.sender, short.recipient, short.text, short.parts) == (
                "Shop",
                "+33612345678",
                "Hello {Ann}",
                1,
            )
            assert (long.text, long.parts, long.data_coding) == (long_text, 5, 8)
            assert attempts[1].message_id == long.message_ids[0]
            # a dropped session is bound again and the next message goes through
            simulator.drop()
            again = await sender.send(MESSAGE, PUBLICATION, rendered("after"), None)
            assert again.kind is AttemptKind.SENT
            assert simulator.messages[-1].text == "after"
        finally:
            await sender.close()
            await simulator.stop()

    asyncio.run(scenario())


def test_every_bind_opens_and_the_rate_limit_holds_over_the_account():
    async def scenario() -> None:
        simulator = SmscSimulator(receipts=False)
        await simulator.start()
        sender = SmsSender(fast_settings(simulator.port, binds=2, rate_per_second=20))
        try:
            assert await sender.probe()
            await wait_async(lambda: sender._pool.bound == 2)
            started = time.monotonic()
            attempts = await asyncio.gather(
                *(sender.send(MESSAGE, PUBLICATION, rendered(f"n{i}"), None) for i in range(6))
            )
            elapsed = time.monotonic() - started
            assert {a.kind for a in attempts} == {AttemptKind.SENT}
            assert sorted(m.text for m in simulator.messages) == [f"n{i}" for i in range(6)]
            # 20 per second over the account, both binds together: 6 sends span 5 intervals
            assert elapsed >= 5 / 20 - 0.01
        finally:
            await sender.close()
            await simulator.stop()

    asyncio.run(scenario())


def test_a_bind_whose_enquire_link_is_not_answered_is_opened_again():
    """An SMSC that accepts the bind, then answers nothing: the keep-alive gives the bind up
    after ``timeout_seconds`` and binds again."""
    binds: list[int] = []
    sessions: set[asyncio.Task[Any]] = set()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sessions.add(asyncio.current_task())  # type: ignore[arg-type]
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                request = await pdu.read_pdu(reader)
                if request.command_id == SmppCommand.BIND_TRANSCEIVER:
                    binds.append(request.sequence)
                    writer.write(pdu.bind_resp(request.command_id, request.sequence, "SILENT"))

    async def scenario() -> None:
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        health = RelayHealth("sms")
        settings = fast_settings(port, enquire_link_seconds=0.05, timeout_seconds=0.2)
        pool = BindPool(settings, health, ignore_deliver)
        try:
            assert await pool.wait_bound(1)
            await wait_async(lambda: len(binds) >= 2, timeout=5)
            # the outage may have ended already: the bind was opened again
            outages = [*health.take_ended(), *([health.outage] if health.outage else [])]
            assert outages[0].reason == "bind 0 lost: no enquire_link_resp within 0.2 s"
        finally:
            await pool.close()
            server.close()
            for session in sessions:
                session.cancel()
            await asyncio.gather(*sessions, return_exceptions=True)

    asyncio.run(scenario())


async def wait_async(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait on the running loop until ``condition()`` holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def test_a_late_delivery_receipt_reaches_the_control_instances_archive(db, control_db, smsc):
    """The archive takes events by their last change: a receipt that comes long after the
    event was sent still marks it changed, so the archived delivery log turns delivered."""
    with sms_server(db, smsc.port) as server:
        event_id = sent_hello(db, server)
        with control_server(control_db) as control:
            register(control, "exec1", server.url, *ADMIN)
            assert run_archive(control, "exec1").json()["new_events"] == 1
            # the event was sent long ago: beyond the archive's overlap of recent changes
            long_ago = datetime.now(UTC) - timedelta(hours=1)
            with db.write() as conn:
                conn.execute(update(event).values(last_modified=long_ago))
                conn.execute(update(delivery_log).values(last_modified=long_ago))
            assert run_archive(control, "exec1").json()["outcome"] == "complete"
            smsc.receipt(smsc.submits[0].message_id, "DELIVRD", "000")
            wait_for(lambda: sent(db, event_id, status=6), message="delivered")
            assert run_archive(control, "exec1").json()["outcome"] == "complete"
            with control_db.read() as conn:
                archived = conn.execute(select(archived_delivery_log.c.status)).scalar_one()
            assert archived == int(DeliveryStatus.DELIVERED)
