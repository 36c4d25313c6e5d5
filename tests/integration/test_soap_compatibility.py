"""Integrations as they exist (issue: compatibility): the model product's minimal event without a
ctx, events written in the service's namespace, and ``application/soap+xml`` around a SOAP 1.1
envelope — through a real server with its workflows, on both stores.
"""

from __future__ import annotations

import itertools
import re

import httpx
import pytest
from sqlalchemy import select

from msgcenter.store.tables import event
from tests.conftest import wait_for
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

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
RT = "urn:nms:rtEvent"
ROUTER = "/nl/jsp/soaprouter.jsp"
TOKEN = "/".join(ADMIN)
CTX_BODY = '<client firstname="Ann"/><order id="1001"><article sku="A1" qty="2"/></order>'
STORED_CTX = (
    '<ctx><client firstname="Ann"></client><order id="1001">'
    '<article qty="2" sku="A1"></article></order></ctx>'
)
PL_ID = re.compile(r"<urn:plId[^>]*>(\d+)</urn:plId>")


def soap(server, body: str, *, action: str | None = "nms:rtEvent#PushEvent", **headers: str):  # type: ignore[no-untyped-def]
    """POST a SOAP envelope around ``body``; returns the answer."""
    document = (
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:urn="{RT}">'
        f"<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    )
    sent = {"Content-Type": "text/xml; charset=utf-8", **headers}
    if action is not None:
        sent["SOAPAction"] = f'"{action}"'
    return httpx.post(f"{server.url}{ROUTER}", content=document.encode(), headers=sent)


def ids_of(answer: httpx.Response) -> list[int]:
    assert answer.status_code == 200, answer.text
    return [int(i) for i in PL_ID.findall(answer.text)]


def stored_ctx(db, event_id: int) -> str:  # type: ignore[no-untyped-def]
    with db.read() as conn:
        return conn.execute(select(event.c.ctx).where(event.c.id == event_id)).scalar_one()


def test_the_minimal_event_of_the_documentation_has_an_empty_ctx(db, smtp_server):
    # <rtEvent type="…" email="…"/>: templates see every ctx path as empty
    spec = order_publication()
    with processing_server(db, smtp_server.port) as server:
        publish(server, spec)
        (soap_id,) = ids_of(
            soap(
                server,
                f"<urn:PushEvent><urn:sessiontoken>{TOKEN}</urn:sessiontoken><urn:domEvent>"
                '<rtEvent type="order_confirmation" email="ann@example.com"/>'
                "</urn:domEvent></urn:PushEvent>",
            )
        )
        (rest_id,) = push_rest(server, {"type": "order_confirmation", "email": "bob@example.com"})
        wait_for(lambda: all_final(db, [soap_id, rest_id]), message="both events to be sent")
        assert statuses(db, [soap_id, rest_id]) == {soap_id: "sent", rest_id: "sent"}
        assert stored_ctx(db, soap_id) == "<ctx></ctx>"
        assert event_json(server, rest_id)["ctx"] == {}
        for address in ("ann@example.com", "bob@example.com"):
            (mail,) = smtp_server.handler.to(address)
            assert mail.message["Subject"].strip() == "Order  confirmed,"


def test_required_still_fails_the_message_of_an_event_without_ctx(db, smtp_server):
    spec = order_publication()
    spec["content"]["subject"] = "Order {{ ctx.order.id|required }}"
    with processing_server(db, smtp_server.port) as server:
        publish(server, spec)
        (event_id,) = ids_of(
            soap(
                server,
                f"<urn:PushEvent><urn:sessiontoken>{TOKEN}</urn:sessiontoken><urn:domEvent>"
                '<rtEvent type="order_confirmation" email="ann@example.com"/>'
                "</urn:domEvent></urn:PushEvent>",
            )
        )
        wait_for(lambda: all_final(db, [event_id]), message="the event to be final")
        (log,) = delivery_logs(db, event_id)
        assert statuses(db, [event_id]) == {event_id: "delivery_failed"}
        assert log["failure_type"] == "render" and "ctx.order.id" in log["failure_reason"]
        assert smtp_server.handler.received == []


def _tag(name: str, qualified: bool) -> str:
    return f"urn:{name}" if qualified else name


def push_call(*, token: bool, dom: bool, element: bool, ctx: bool, app: bool) -> str:
    """A PushEvent whose parts are each qualified (``urn:`` prefix) or unqualified."""
    rt, context, mobile = _tag("rtEvent", element), _tag("ctx", ctx), _tag("mobileApp", app)
    return (
        f"<urn:PushEvent><{_tag('sessiontoken', token)}>{TOKEN}</{_tag('sessiontoken', token)}>"
        f"<{_tag('domEvent', dom)}>"
        f'<{rt} type="order_confirmation" email="ann@example.com">'
        f'<{mobile} uuid="APP-1"/><{context}>{CTX_BODY}</{context}></{rt}>'
        f"</{_tag('domEvent', dom)}></urn:PushEvent>"
    )


#: every combination of qualified and unqualified parts, and the shape the issue names: a
#: default namespace on the call that the event and its ctx inherit
SHAPES = [
    pytest.param(
        push_call(**dict(zip(("token", "dom", "element", "ctx", "app"), flags, strict=True))),
        id=name,
    )
    for flags, name in (
        (combo, "".join("Q" if f else "u" for f in combo))
        for combo in itertools.product((False, True), repeat=5)
    )
] + [
    pytest.param(
        f'<PushEvent xmlns="{RT}"><sessiontoken>{TOKEN}</sessiontoken><domEvent>'
        '<rtEvent type="order_confirmation" email="ann@example.com">'
        f'<mobileApp uuid="APP-1"/><ctx>{CTX_BODY}</ctx></rtEvent></domEvent></PushEvent>',
        id="default-namespace",
    ),
    pytest.param(
        f'<PushEvent xmlns="{RT}"><sessiontoken>{TOKEN}</sessiontoken><domEvent>'
        '<rtEvent type="order_confirmation" email="ann@example.com" xmlns="">'
        f'<mobileApp uuid="APP-1"/><ctx>{CTX_BODY}</ctx></rtEvent></domEvent></PushEvent>',
        id="default-namespace-reset",
    ),
]


@pytest.mark.parametrize("call", SHAPES)
def test_events_are_read_alike_unqualified_or_in_the_service_namespace(shared_server, call):
    server, db = shared_server
    (event_id,) = ids_of(soap(server, call))
    assert stored_ctx(db, event_id) == STORED_CTX
    stored = event_json(server, event_id)
    assert (stored["email"], stored["mobile_app_uuid"]) == ("ann@example.com", "APP-1")


def test_the_same_event_in_either_form_is_stored_and_sent_identically(db, smtp_server):
    plain, namespaced = (SHAPES[0].values[0], SHAPES[-2].values[0])
    with processing_server(db, smtp_server.port) as server:
        publish(server, order_publication())
        (first,) = ids_of(soap(server, str(plain)))
        (second,) = ids_of(soap(server, str(namespaced)))
        wait_for(lambda: all_final(db, [first, second]), message="both events to be sent")
        assert stored_ctx(db, first) == stored_ctx(db, second) == STORED_CTX
        sent = [m.message for m in smtp_server.handler.to("ann@example.com")]
        assert len(sent) == 2
        assert sent[0]["Subject"] == sent[1]["Subject"] == "Order 1001 confirmed, Ann"
        bodies = [m.get_body(("plain",)).get_content() for m in sent]
        assert bodies[0] == bodies[1] and "- A1 x 2" in bodies[0]


def test_push_events_in_the_service_namespace_with_any_wrapper(shared_server):
    server, db = shared_server
    events = "".join(
        f'<urn:rtEvent type="order_confirmation" email="e{i}@example.com">'
        f"<urn:ctx>{CTX_BODY}</urn:ctx></urn:rtEvent>"
        for i in range(3)
    )
    for wrapper in ("Events", "urn:Events", "urn:Whatever"):
        answer = soap(
            server,
            f"<urn:PushEvents><urn:sessiontoken>{TOKEN}</urn:sessiontoken>"
            f"<urn:domEventCollection><{wrapper}>{events}</{wrapper}></urn:domEventCollection>"
            "</urn:PushEvents>",
            action="nms:rtEvent#PushEvents",
        )
        ids = ids_of(answer)
        assert len(ids) == 3
        assert {stored_ctx(db, i) for i in ids} == {STORED_CTX}


def test_an_element_in_another_namespace_is_still_refused(shared_server):
    server, _db = shared_server
    answer = soap(
        server,
        f"<urn:PushEvent><urn:sessiontoken>{TOKEN}</urn:sessiontoken><urn:domEvent>"
        '<x:rtEvent xmlns:x="urn:other" type="order_confirmation" email="ann@example.com"/>'
        "</urn:domEvent></urn:PushEvent>",
    )
    assert answer.status_code == 500
    assert "expected &lt;rtEvent&gt;, found &lt;{urn:other}rtEvent&gt;" in answer.text


def test_soap_xml_content_type_carries_the_action(shared_server):
    # what clients of technical accounts send: SOAP 1.1 envelope, SOAP 1.2 media type
    server, _db = shared_server
    call = SHAPES[0].values[0]
    answer = soap(
        server,
        str(call),
        action=None,
        **{"Content-Type": 'application/soap+xml; charset=utf-8; action="nms:rtEvent#PushEvent"'},
    )
    assert len(ids_of(answer)) == 1
    answer = soap(
        server, str(call), action=None, **{"Content-Type": "application/soap+xml; charset=utf-8"}
    )
    assert len(ids_of(answer)) == 1  # no action at all: the body's namespace names the service


@pytest.fixture
def shared_server(db):  # type: ignore[no-untyped-def]
    """An execution instance without workflows (events stay as stored) and its database."""
    from tests.conftest import add_operator, start_exec_server

    add_operator(db, *ADMIN)
    threaded, running = start_exec_server(db)
    with threaded:
        yield running, db
