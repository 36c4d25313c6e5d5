"""A stock SOAP client (zeep) loads the served WSDL documents unmodified and calls the server.

Teams keep their existing SOAP integrations (SPEC §3.2): whatever a standard
client library generates from our WSDL must be accepted, and what we answer must
be understood by it, ids and Faults alike. Runs on both stores.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from importlib import resources

import httpx
import pytest
import zeep
import zeep.exceptions
from lxml import etree

from msgcenter.store.database import Database
from tests.conftest import RunningServer, start_exec_server
from tests.integration.test_soap_intake import event_count, quick_operator, stored

WSDL_PATH = "/nl/jsp/schemawsdl.jsp?schema={}"


def event(tag: str = "rtEvent", external_id: str = "42", **extra: str) -> etree._Element:
    """An event element as a caller builds it (un-namespaced, with attributes and a ctx)."""
    element = etree.Element(
        tag, type="order_confirmation", email="ann@example.com", externalId=external_id, **extra
    )
    ctx = etree.SubElement(element, "ctx")
    etree.SubElement(ctx, "client", firstname="Ann")
    etree.SubElement(ctx, "orderId").text = "123"
    return element


@pytest.fixture
def server(db: Database) -> Iterator[RunningServer]:
    """A fresh server on a fresh database with operator mc/secret (mc_push)."""
    quick_operator(db, "mc", "secret")
    threaded, running = start_exec_server(db)
    with threaded:
        yield running


def client(server: RunningServer, schema: str) -> zeep.Client:
    """A zeep client built from the WSDL exactly as the server serves it."""
    return zeep.Client(server.url + WSDL_PATH.format(schema))


def test_served_wsdl_is_the_packaged_document(server):
    """The server only fills in its own address; everything else is the packaged file."""
    for schema, name in [
        ("nms:rtEvent", "nms_rtEvent.wsdl"),
        ("nms:batchEvent", "nms_batchEvent.wsdl"),
        ("xtk:session", "xtk_session.wsdl"),
    ]:
        response = httpx.get(server.url + WSDL_PATH.format(schema))
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/xml")
        packaged = resources.files("msgcenter.intake").joinpath("wsdl", name).read_text("utf-8")
        location = f"{server.url}/nl/jsp/soaprouter.jsp"
        assert response.text == packaged.replace("{{location}}", location)


def test_unknown_schema_is_404(server):
    response = httpx.get(server.url + WSDL_PATH.format("nms:nothing"))
    assert response.status_code == 404
    assert "unknown schema 'nms:nothing'" in response.text


@pytest.mark.parametrize("schema,queue", [("nms:rtEvent", "rt"), ("nms:batchEvent", "batch")])
def test_push_event(server, schema, queue):
    """PushEvent through zeep returns the id of the stored event, in the right queue."""
    service = client(server, schema).service
    event_id = service.PushEvent(
        sessiontoken="mc/secret", domEvent={"_value_1": event(f"{queue}Event")}
    )
    assert isinstance(event_id, int)
    (row,) = stored(server.db)
    assert (row["id"], row["queue"], row["external_id"]) == (event_id, queue, "42")
    assert row["ctx"] == '<ctx><client firstname="Ann"></client><orderId>123</orderId></ctx>'


@pytest.mark.parametrize("schema,queue", [("nms:rtEvent", "rt"), ("nms:batchEvent", "batch")])
def test_push_events(server, schema, queue):
    """PushEvents through zeep returns every id, in order."""
    wrapper = etree.Element("Events")
    wrapper.extend(event(f"{queue}Event", external_id=f"c{i}") for i in range(4))
    ids = client(server, schema).service.PushEvents(
        sessiontoken="mc/secret", domEventCollection={"_value_1": wrapper}
    )
    assert len(ids) == 4
    assert [(r["id"], r["queue"], r["external_id"]) for r in stored(server.db)] == [
        (event_id, queue, f"c{i}") for i, event_id in enumerate(ids)
    ]


def test_logon_push_logoff(server):
    """Logon gives a token that PushEvent accepts; after Logoff the token gets a Fault."""
    session = client(server, "xtk:session").service
    rt = client(server, "nms:rtEvent").service
    result = session.Logon(sessiontoken="", strLogin="mc", strPassword="secret", elemParameters={})
    token = result.pstrSessionToken
    assert token.startswith("mcs_")
    assert result.pstrSecurityToken == f"@{token}"
    assert result.pSessionInfo._value_1.find("userInfo").get("login") == "mc"

    template = event()
    first = rt.PushEvent(sessiontoken=token, domEvent={"_value_1": copy.deepcopy(template)})
    assert [r["id"] for r in stored(server.db)] == [first]

    assert session.Logoff(sessiontoken=token) is None
    with pytest.raises(zeep.exceptions.Fault) as refused:
        rt.PushEvent(sessiontoken=token, domEvent={"_value_1": copy.deepcopy(template)})
    assert refused.value.code == "SOAP-ENV:Client"
    assert refused.value.detail.text == "unknown session token (ended, or never issued)"
    assert event_count(server.db) == 1


def test_bad_event_raises_fault_with_detail(server):
    """A refused event reaches zeep as a Fault carrying the server's detail."""
    service = client(server, "nms:rtEvent").service
    with pytest.raises(zeep.exceptions.Fault) as refused:
        service.PushEvent(
            sessiontoken="mc/secret", domEvent={"_value_1": event(wishedChannel="pigeon")}
        )
    assert refused.value.code == "SOAP-ENV:Client"
    assert refused.value.message == "invalid 'wishedChannel'"
    assert refused.value.detail.text == (
        "invalid 'wishedChannel': unknown channel 'pigeon' "
        "(email, sms, mobile, ios, android or a code)"
    )
    assert event_count(server.db) == 0


def test_bad_event_in_collection_names_its_position(server):
    """All or nothing through zeep too: the Fault names the first bad event's position."""
    wrapper = etree.Element("Events")
    wrapper.extend([event(), event(), event(emailFormat="5"), event()])
    with pytest.raises(zeep.exceptions.Fault) as refused:
        client(server, "nms:rtEvent").service.PushEvents(
            sessiontoken="mc/secret", domEventCollection={"_value_1": wrapper}
        )
    assert refused.value.message == "event 3: invalid 'emailFormat'"
    assert event_count(server.db) == 0


def test_wrong_password_raises_fault(server):
    """Logon with a wrong password: a Fault that says so without naming the login."""
    session = client(server, "xtk:session").service
    with pytest.raises(zeep.exceptions.Fault) as refused:
        session.Logon(sessiontoken="", strLogin="mc", strPassword="nope", elemParameters={})
    assert refused.value.detail.text == "unknown login or wrong password"
