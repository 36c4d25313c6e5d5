"""Channel fallback (SPEC §3.7): an event whose message failed for good is queued again, once,
on the channel its publication names — after an immediate failure and after a late bounce —,
shown as a chain in both events' timelines, and never twice.

Every test runs on SQLite and PostgreSQL through a running execution instance: real REST
intake, the processing workflows, a real SMTP relay on loopback, the bounce receiver.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import func, select

from msgcenter.events.model import Channel
from msgcenter.store import control_design
from msgcenter.store.tables import event
from tests.conftest import wait_for
from tests.control import call, control_server, order_template
from tests.integration.test_bounces import bounce_server, dsn, mail
from tests.processing import (
    ADMIN,
    all_final,
    delivery_logs,
    event_json,
    order_publication,
    processing_server,
    publish,
    push_rest,
    statuses,
)

CTX = {"client": {"firstname": "Ann"}, "order": {"id": "1001"}}
PHONE = "+33612345678"


def email_publication(**content: Any) -> dict[str, Any]:
    """The order confirmation by email (``content`` added to its content)."""
    spec = order_publication()
    return {**spec, "content": {**spec["content"], **content}}


def sms_publication(**content: Any) -> dict[str, Any]:
    """An SMS template for the order type (``content`` changes its content)."""
    return {
        "template": "order_confirmation_sms",
        "event_type": "order_confirmation",
        "channel": 1,
        "version": 1,
        "content": {"sms": "Order {{ ctx.order.id }} confirmed", **content},
    }


def fallback_of(server, event_id: int) -> int:  # type: ignore[no-untyped-def]
    """Wait until ``event_id`` has fallen back; the new event's id."""
    wait_for(
        lambda: event_json(server, event_id).get("fallback_event") is not None,
        message=f"event {event_id} to fall back",
    )
    return int(event_json(server, event_id)["fallback_event"])


def events_in(db) -> int:  # type: ignore[no-untyped-def]
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(event)).scalar_one())


def test_failed_sms_falls_back_to_email_once_and_shows_the_chain(db, smtp_server):
    # this instance has no SMSC: the SMS fails for good at once, and email takes over
    with processing_server(db, smtp_server.port) as server:
        publish(server, order_publication())
        publish(server, sms_publication(fallback_channel=0))
        (first,) = push_rest(
            server,
            {
                "type": "order_confirmation",
                "wished_channel": "sms",
                "mobile_phone": PHONE,
                "email": "ann@example.net",
                "ctx": CTX,
            },
        )
        second = fallback_of(server, first)
        wait_for(lambda: all_final(db, [first, second]), message="both events to end")
        assert statuses(db, [first, second]) == {first: "delivery_failed", second: "sent"}

        original, fallback = event_json(server, first), event_json(server, second)
        assert fallback["fallback_of"] == first and fallback["wished_channel"] == 0
        assert fallback["ctx"] == CTX and fallback["email"] == "ann@example.net"
        steps = [(s["status"], s["reason"] or "") for s in original["history"]]
        assert steps[-1] == (
            "delivery_failed",
            f"fallback: queued again on email as event {second}",
        ), steps
        (sms_log,) = delivery_logs(db, first)
        assert sms_log["failure_type"] == "no_channel"
        (received,) = smtp_server.handler.to("ann@example.net")
        assert b"Order 1001 confirmed" in received.data

        # the chain ends: nothing else is queued, however long the workflows run
        assert events_in(db) == 2


def test_a_fallback_that_fails_does_not_fall_back_again(db, smtp_server):
    # email refuses for good -> SMS (no SMSC here: fails) -> no third event, no loop back
    smtp_server.handler.scripted["gone@example.net"] = ["550 5.1.1 user unknown"]
    with processing_server(db, smtp_server.port) as server:
        publish(server, email_publication(fallback_channel=1))
        publish(server, sms_publication(fallback_channel=0))
        (first,) = push_rest(
            server,
            {
                "type": "order_confirmation",
                "email": "gone@example.net",
                "mobile_phone": PHONE,
                "ctx": CTX,
            },
        )
        second = fallback_of(server, first)
        wait_for(lambda: all_final(db, [first, second]), message="both events to end")
        assert statuses(db, [first, second]) == {
            first: "delivery_failed",
            second: "delivery_failed",
        }
        assert event_json(server, second)["fallback_event"] is None
        assert events_in(db) == 2


def test_no_fallback_without_an_address_on_the_other_channel(db, smtp_server):
    smtp_server.handler.scripted["gone@example.net"] = ["550 5.1.1 user unknown"]
    with processing_server(db, smtp_server.port) as server:
        publish(server, email_publication(fallback_channel=1))
        (first,) = push_rest(
            server, {"type": "order_confirmation", "email": "gone@example.net", "ctx": CTX}
        )
        wait_for(lambda: all_final(db, [first]), message="the event to end")
        wait_for(
            lambda: (
                "no fallback: no address for sms"
                in [s["reason"] for s in event_json(server, first)["history"]]
            ),
            message="the refused fallback in the timeline",
        )
        assert events_in(db) == 1


def test_a_late_bounce_falls_back(db, smtp_server):
    with bounce_server(db, smtp_server) as (server, port):
        publish(server, email_publication(fallback_channel=1))
        publish(server, sms_publication())
        ids = push_rest(
            server,
            {
                "type": "order_confirmation",
                "email": "ann@example.net",
                "mobile_phone": PHONE,
                "ctx": CTX,
            },
        )
        wait_for(lambda: all_final(db, ids), message="the email to be sent")
        assert statuses(db, ids)[ids[0]] == "sent"
        (received,) = smtp_server.handler.to("ann@example.net")
        report = dsn(received.mail_from, "ann@example.net", "failed", "5.1.1", "550 user unknown")
        mail(port, received.mail_from, report)
        mail(port, received.mail_from, report)  # the same report twice: one fallback
        second = fallback_of(server, ids[0])
        assert statuses(db, ids)[ids[0]] == "delivery_failed"
        assert event_json(server, second)["wished_channel"] == 1
        assert event_json(server, second)["mobile_phone"] == PHONE
        (log,) = delivery_logs(db, ids[0])
        assert log["failure_type"] == "user_unknown"
        wait_for(lambda: all_final(db, [second]), message="the fallback to end")
        assert events_in(db) == 2


def test_publication_refuses_a_fallback_to_its_own_channel(db, smtp_server):
    with processing_server(db, smtp_server.port) as server:
        for fallback, named in (
            (1, "cannot fall back to its own channel"),
            (7, "fallback_channel"),
        ):
            answer = httpx.put(
                f"{server.url}/api/v1/admin/publications",
                json=sms_publication(fallback_channel=fallback),
                auth=ADMIN,
                timeout=30,
            )
            assert answer.status_code == 422, answer.text
            assert named in answer.text


def test_the_control_instance_refuses_to_publish_a_fallback_to_its_own_channel(db):
    order_template(db)
    with db.write() as conn:
        found = control_design.get_template(conn, "order_mail")
        control_design.update_template(
            conn,
            found,
            label=found.label,
            event_type_name=found.event_type,
            channel=found.channel,
            folder=found.folder,
            content=found.content.model_copy(update={"fallback_channel": Channel.EMAIL}),
            now=datetime.now(UTC),
        )
    with control_server(db) as control:
        answer = call(control, "POST", "/templates/order_mail/publish")
    assert answer.status_code == 400, answer.text
    assert "cannot fall back to its own channel (email)" in answer.text
