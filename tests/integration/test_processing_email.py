"""From a pushed event to a message on a real SMTP server: routing, rendering, MIME, statuses."""

from __future__ import annotations

import httpx

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
)

ORDER_CTX = {
    "client": {"firstname": "Ann"},
    "order": {"id": "1001", "article": [{"sku": "A1", "qty": "1"}, {"sku": "B2", "qty": "2"}]},
}
ORDER_XML = '<ctx><client firstname="Ann"/><order id="1001"><article sku="A1" qty="1"/><article sku="B2" qty="2"/></order></ctx>'
SOAP = (
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:nms:rtEvent">'
    "<soapenv:Body><urn:PushEvent><urn:sessiontoken>mc/secret</urn:sessiontoken><urn:domEvent>"
    '<rtEvent type="order_confirmation" email="{email}" emailFormat="2">{ctx}</rtEvent>'
    "</urn:domEvent></urn:PushEvent></soapenv:Body></soapenv:Envelope>"
)


def push_soap(server, email: str, ctx: str = ORDER_XML) -> int:
    answer = httpx.post(
        f"{server.url}/nl/jsp/soaprouter.jsp",
        content=SOAP.format(email=email, ctx=ctx),
        headers={"Content-Type": "text/xml", "SOAPAction": '"nms:rtEvent#PushEvent"'},
    )
    assert answer.status_code == 200, answer.text
    return int(answer.text.split('xsd:long">')[1].split("<")[0])


def parts(received) -> dict[str, str]:
    message = received.message
    return {
        part.get_content_type(): part.get_content()
        for part in message.walk()
        if not part.is_multipart()
    }


def test_soap_and_rest_events_are_sent_with_headers_parts_and_personalisation(db, smtp_server):
    with processing_server(db, smtp_server.port) as server:
        publish(server, order_publication())
        soap_id = push_soap(server, "ann@example.com")
        rest_id = push_rest(
            server,
            {
                "type": "order_confirmation",
                "email": "bob@example.com",
                "email_format": 2,
                "ctx": ORDER_CTX,
            },
        )[0]
        wait_for(lambda: all_final(db, [soap_id, rest_id]), message="both events final")

        for event_id, address in ((soap_id, "ann@example.com"), (rest_id, "bob@example.com")):
            stored = event_json(server, event_id)
            assert stored["status"] == "sent", stored
            assert [step["status"] for step in stored["history"]] == [
                "pending",
                "pending_delivery",
                "sent",
            ]
            (log,) = delivery_logs(db, event_id)
            assert log["status"] == 1 and log["attempts"] == 1 and log["address"] == address
            (received,) = smtp_server.handler.to(address)
            message = received.message
            assert message["From"] == "Shop <shop@example.com>"
            assert message["To"] == address
            assert message["Reply-To"] == "care@example.com"
            assert message["Subject"] == "Order 1001 confirmed, Ann"
            assert message["Message-ID"].startswith(f"<dl-{log['id']}.")
            assert message["Message-ID"] == log["message_id"]
            assert received.mail_from.startswith(f"bounce+dl-{log['id']}-")
            assert received.mail_from.endswith("@example.com")
            content = parts(received)
            assert message.get_content_type() == "multipart/alternative"
            assert "Hello Ann," in content["text/plain"]
            assert "- A1 x 1" in content["text/plain"] and "- B2 x 2" in content["text/plain"]
            assert "<li>B2 x 2</li>" in content["text/html"]
            assert f"Shop Ltd, {address}" in content["text/html"]


def test_xml_and_json_ctx_render_identically(db, smtp_server):
    with processing_server(db, smtp_server.port) as server:
        publish(server, order_publication())
        xml_id = push_soap(server, "xml@example.com")
        json_id = push_rest(
            server,
            {
                "type": "order_confirmation",
                "email": "json@example.com",
                "email_format": 2,
                "ctx": ORDER_CTX,
            },
        )[0]
        wait_for(lambda: all_final(db, [xml_id, json_id]))
        (from_xml,) = smtp_server.handler.to("xml@example.com")
        (from_json,) = smtp_server.handler.to("json@example.com")
        xml_parts, json_parts = parts(from_xml), parts(from_json)
        assert xml_parts["text/plain"] == json_parts["text/plain"]
        assert xml_parts["text/html"].replace("xml@", "json@") == json_parts["text/html"]
        assert from_xml.message["Subject"] == from_json.message["Subject"]


def test_html_escapes_ctx_values_but_text_does_not(db, smtp_server):
    with processing_server(db, smtp_server.port) as server:
        publish(server, order_publication())
        ctx = {"client": {"firstname": "<script>alert(1)</script>"}, "order": {"id": "7"}}
        (event_id,) = push_rest(
            server, {"type": "order_confirmation", "email": "eve@example.com", "ctx": ctx}
        )
        wait_for(lambda: all_final(db, [event_id]))
        content = parts(smtp_server.handler.to("eve@example.com")[0])
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content["text/html"]
        assert "<script>" not in content["text/html"]
        assert "Hello <script>alert(1)</script>," in content["text/plain"]


def test_event_without_publication_is_not_taken_into_account(db, smtp_server):
    with processing_server(db, smtp_server.port) as server:
        (event_id,) = push_rest(
            server, {"type": "unknown_type", "email": "x@example.com", "ctx": {}}
        )
        wait_for(lambda: all_final(db, [event_id]))
        stored = event_json(server, event_id)
        assert stored["status"] == "not_taken_into_account"
        assert "no published template for type 'unknown_type'" in stored["history"][-1]["reason"]
        assert delivery_logs(db, event_id) == []
        assert smtp_server.handler.received == []


def test_render_error_fails_that_event_only(db, smtp_server):
    with processing_server(db, smtp_server.port) as server:
        spec = order_publication()
        spec["content"]["text"] = "Hi {{ ctx.client.firstname|required }}"
        publish(server, spec)
        ids = push_rest(
            server,
            [
                {"type": "order_confirmation", "email": "ok@example.com", "ctx": ORDER_CTX},
                {
                    "type": "order_confirmation",
                    "email": "missing@example.com",
                    "ctx": {"order": {"id": "2"}},
                },
            ],
        )
        wait_for(lambda: all_final(db, ids))
        assert event_json(server, ids[0])["status"] == "sent"
        failed = event_json(server, ids[1])
        assert failed["status"] == "delivery_failed"
        (log,) = delivery_logs(db, ids[1])
        assert log["failure_type"] == "render" and "client.firstname" in log["failure_reason"]
        assert smtp_server.handler.to("missing@example.com") == []
        workflows = httpx.get(f"{server.url}/api/v1/admin/workflows", auth=ADMIN).json()
        assert {w["name"]: w["state"] for w in workflows}["rtEventsProcessing"] == "running"
