"""The SMS channel end to end (SPEC §3.7): events pushed over REST or SOAP, routed to an SMS
publication, submitted over SMPP 3.4 to a real SMSC on loopback (smpp34's server, scripted by
``tests/sms.py``), and delivery receipts applied to the delivery logs. Both stores."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from msgcenter.deliveries import DeliveryStatus
from msgcenter.store.database import Database
from msgcenter.store.tables import archived_delivery_log, delivery_log, event, quarantine
from tests.archiving import register, run_archive
from tests.conftest import wait_for
from tests.control import control_server
from tests.processing import ADMIN, delivery_logs, publish, push_rest, statuses
from tests.sms import Smsc, sms_event, sms_publication, sms_server

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
        publish(server, sms_publication("Hello"))
        [event_id] = push_rest(server, sms_event())
        wait_for(lambda: sent(db, event_id), message="sent")
        smsc.receipt(smsc.submits[0].message_id, "UNDELIV", "034")
        wait_for(lambda: statuses(db, [event_id])[event_id] == "delivery_failed", message="failed")
    failed = log_of(db, event_id)
    assert failed["status"] == 2
    assert failed["failure_reason"] == "delivery receipt: UNDELIV err:034"
    with db.read() as conn:
        assert conn.execute(select(quarantine)).first() is None  # 34: no invalid-number code


def test_invalid_number_receipt_quarantines(db, smsc):
    with sms_server(db, smsc.port) as server:
        publish(server, sms_publication("Hello"))
        [event_id] = push_rest(server, sms_event())
        wait_for(lambda: sent(db, event_id), message="sent")
        smsc.receipt(smsc.submits[0].message_id, "UNDELIV", "001")
        wait_for(lambda: statuses(db, [event_id])[event_id] == "delivery_failed", message="failed")
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
        publish(server, sms_publication("Hello"))
        [event_id] = push_rest(server, sms_event())
        wait_for(lambda: sent(db, event_id), message="sent")
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


def test_simulator_catches_messages_and_reassembles_parts():
    import asyncio
    import types

    from msgcenter.catcher.smsc import SmscSimulator
    from msgcenter.channels.sms.config import SmsSettings
    from msgcenter.sending.attempts import AttemptKind
    from msgcenter.sending.sms import SmsSender

    async def scenario() -> None:
        simulator = SmscSimulator()
        await simulator.start()
        sender = SmsSender(
            SmsSettings(
                host="127.0.0.1",
                port=simulator.port,
                throttle_backoff_seconds=0.05,
                reconnect_min_seconds=0.05,
                default_sender="Shop",
            )
        )
        publication = types.SimpleNamespace(content=types.SimpleNamespace(sender=""))
        message = types.SimpleNamespace(address="+33612345678")
        try:
            long_text = "Grüße 👋 " * 30
            simulator.fail_next.append(0x58)  # ESME_RTHROTTLED once
            attempts = [
                await sender.send(message, publication, types.SimpleNamespace(sms=text), None)
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
            again = await sender.send(
                message, publication, types.SimpleNamespace(sms="after"), None
            )
            assert again.kind is AttemptKind.SENT
            assert simulator.messages[-1].text == "after"
        finally:
            await sender.close()
            await simulator.stop()

    asyncio.run(scenario())


def test_a_late_delivery_receipt_reaches_the_control_instances_archive(db, control_db, smsc):
    """The archive takes events by their last change: a receipt that comes long after the
    event was sent still marks it changed, so the archived delivery log turns delivered."""
    with sms_server(db, smsc.port) as server:
        publish(server, sms_publication("Hello"))
        [event_id] = push_rest(server, sms_event())
        wait_for(lambda: sent(db, event_id), message="sent")
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
