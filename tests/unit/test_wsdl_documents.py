"""The served WSDL documents drive an unmodified zeep client end to end.

Only the HTTP hop is replaced: a Transport subclass records what zeep posts
and hands zeep's real reply processing a canned ``requests.Response``.

How a caller passes an event to an ``tns:Element`` (xsd:any) parameter::

    event = etree.fromstring('<rtEvent type="..." email="..."><ctx/></rtEvent>')
    client.service.PushEvent(sessiontoken=token, domEvent={"_value_1": event})

zeep *appends* that element to the envelope, i.e. moves it out of any tree it
belonged to; pass ``copy.deepcopy(event)`` to keep the original in place.
Logon's empty ``elemParameters`` is passed as ``elemParameters={}``.
"""

from pathlib import Path

import pytest
import requests
import zeep
import zeep.exceptions
from lxml import etree
from zeep.transports import Transport

WSDL_DIR = Path(__file__).resolve().parents[2] / "src" / "msgcenter" / "intake" / "wsdl"
LOCATION = "http://127.0.0.1:1/nl/jsp/soaprouter.jsp"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"

EVENT_XML = (
    '<{tag} type="order_confirmation" email="a@example.com" wishedChannel="0"'
    ' emailFormat="2" externalId="{ext}">'
    '<ctx><client firstname="Ann"/><orderId>{order}</orderId></ctx>'
    "</{tag}>"
)

ENVELOPE = (
    "<?xml version='1.0' encoding='utf-8'?>\n"
    '<SOAP-ENV:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema"'
    ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
    ' xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"{extra_ns}>\n'
    "<SOAP-ENV:Body>\n{body}\n</SOAP-ENV:Body>\n</SOAP-ENV:Envelope>"
)


def response_body(ns, operation, children=""):
    """Server-style ``<urn:{operation}Response>`` element text."""
    return (
        f'<urn:{operation}Response xmlns:urn="{ns}"'
        ' SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">'
        f"{children}</urn:{operation}Response>"
    )


def plid(value):
    return f'<urn:plId xsi:type="xsd:long">{value}</urn:plId>'


class CannedTransport(Transport):
    """Records each POST and answers it with a canned SOAP reply."""

    def __init__(self):
        super().__init__()
        self.reply = (200, "")
        self.posts = []

    def post_xml(self, address, envelope, headers):
        self.posts.append((address, dict(headers), envelope))
        response = requests.Response()
        response.status_code, text = self.reply
        response._content = text.encode("utf-8")
        response.headers["Content-Type"] = "text/xml; charset=utf-8"
        response.url = address
        return response


@pytest.fixture
def load(tmp_path):
    """Load a WSDL the way the server serves it; return (client, transport)."""

    def _load(filename):
        raw = (WSDL_DIR / filename).read_text(encoding="utf-8")
        assert raw.count("{{location}}") == 1
        path = tmp_path / filename
        path.write_text(raw.replace("{{location}}", LOCATION), encoding="utf-8")
        transport = CannedTransport()
        return zeep.Client(str(path), transport=transport), transport

    return _load


def event(tag="rtEvent", ext="42", order="123"):
    return etree.fromstring(EVENT_XML.format(tag=tag, ext=ext, order=order))


def operation_element(envelope, ns, name):
    """The single child of soap Body, checked to be ``{ns}name``."""
    (body,) = envelope.findall(f"{{{SOAP_ENV}}}Body")
    (op,) = list(body)
    assert op.tag == f"{{{ns}}}{name}"
    return op


def assert_event(element, tag="rtEvent", ext="42", order="123"):
    """``element`` is the un-namespaced event with attributes and ctx intact."""
    assert element.tag == tag
    assert dict(element.attrib) == {
        "type": "order_confirmation",
        "email": "a@example.com",
        "wishedChannel": "0",
        "emailFormat": "2",
        "externalId": ext,
    }
    (ctx,) = list(element)
    assert ctx.tag == "ctx"
    client, order_id = list(ctx)
    assert (client.tag, dict(client.attrib)) == ("client", {"firstname": "Ann"})
    assert (order_id.tag, order_id.text) == ("orderId", order)


def children(element):
    return [(child.tag, child.text) for child in element]


@pytest.mark.parametrize(
    "filename,ns,tag",
    [
        ("nms_rtEvent.wsdl", "urn:nms:rtEvent", "rtEvent"),
        ("nms_batchEvent.wsdl", "urn:nms:batchEvent", "batchEvent"),
    ],
)
class TestEventServices:
    def test_push_event_request(self, load, filename, ns, tag):
        client, _ = load(filename)
        envelope = client.create_message(
            client.service,
            "PushEvent",
            sessiontoken="mc/secret",
            domEvent={"_value_1": event(tag)},
        )
        op = operation_element(envelope, ns, "PushEvent")
        token, dom_event = list(op)
        assert (token.tag, token.text) == (f"{{{ns}}}sessiontoken", "mc/secret")
        assert dom_event.tag == f"{{{ns}}}domEvent"
        (sent,) = list(dom_event)
        assert_event(sent, tag)

    def test_push_events_request(self, load, filename, ns, tag):
        client, _ = load(filename)
        wrapper = etree.Element("Events")
        for i in range(3):
            wrapper.append(event(tag, ext=str(i), order=f"o{i}"))
        envelope = client.create_message(
            client.service,
            "PushEvents",
            sessiontoken="mc/secret",
            domEventCollection={"_value_1": wrapper},
        )
        op = operation_element(envelope, ns, "PushEvents")
        token, collection = list(op)
        assert (token.tag, token.text) == (f"{{{ns}}}sessiontoken", "mc/secret")
        assert collection.tag == f"{{{ns}}}domEventCollection"
        (events,) = list(collection)
        assert events.tag == "Events"
        assert len(events) == 3
        for i, sent in enumerate(events):
            assert_event(sent, tag, ext=str(i), order=f"o{i}")

    def test_push_event_call(self, load, filename, ns, tag):
        client, transport = load(filename)
        transport.reply = (
            200,
            ENVELOPE.format(
                extra_ns="", body=response_body(ns, "PushEvent", plid(72057594037927949))
            ),
        )
        result = client.service.PushEvent(
            sessiontoken="mc/secret", domEvent={"_value_1": event(tag)}
        )
        assert result == 72057594037927949
        ((address, headers, envelope),) = transport.posts
        assert address == LOCATION
        assert headers["SOAPAction"] == f'"nms:{tag}#PushEvent"'
        assert headers["Content-Type"] == "text/xml; charset=utf-8"
        (sent,) = list(operation_element(envelope, ns, "PushEvent")[1])
        assert_event(sent, tag)

    def test_push_events_call(self, load, filename, ns, tag):
        client, transport = load(filename)
        ids = "".join(plid(v) for v in (11, 12, 72057594037927949))
        transport.reply = (
            200,
            ENVELOPE.format(extra_ns="", body=response_body(ns, "PushEvents", ids)),
        )
        wrapper = etree.Element("Events")
        wrapper.extend(event(tag, ext=str(i)) for i in range(3))
        result = client.service.PushEvents(
            sessiontoken="mc/secret", domEventCollection={"_value_1": wrapper}
        )
        assert result == [11, 12, 72057594037927949]
        ((_, headers, _),) = transport.posts
        assert headers["SOAPAction"] == f'"nms:{tag}#PushEvents"'

    def test_fault(self, load, filename, ns, tag):
        client, transport = load(filename)
        fault = (
            "<SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode>"
            "<faultstring>Invalid session token</faultstring>"
            "<detail>XSV-350008 Session token is not valid.</detail></SOAP-ENV:Fault>"
        )
        transport.reply = (500, ENVELOPE.format(extra_ns="", body=fault))
        with pytest.raises(zeep.exceptions.Fault) as excinfo:
            client.service.PushEvent(sessiontoken="bad", domEvent={"_value_1": event(tag)})
        assert excinfo.value.message == "Invalid session token"
        assert excinfo.value.code == "SOAP-ENV:Client"
        assert excinfo.value.detail.text == "XSV-350008 Session token is not valid."


class TestSession:
    NS = "urn:xtk:session"

    def test_logon_request(self, load):
        client, _ = load("xtk_session.wsdl")
        envelope = client.create_message(
            client.service,
            "Logon",
            sessiontoken="",
            strLogin="mc",
            strPassword="pw",
            elemParameters={},
        )
        op = operation_element(envelope, self.NS, "Logon")
        assert children(op) == [
            (f"{{{self.NS}}}sessiontoken", ""),
            (f"{{{self.NS}}}strLogin", "mc"),
            (f"{{{self.NS}}}strPassword", "pw"),
            (f"{{{self.NS}}}elemParameters", None),
        ]
        assert len(op[3]) == 0

    def test_logoff_request(self, load):
        client, _ = load("xtk_session.wsdl")
        envelope = client.create_message(client.service, "Logoff", sessiontoken="TOKEN")
        op = operation_element(envelope, self.NS, "Logoff")
        assert children(op) == [(f"{{{self.NS}}}sessiontoken", "TOKEN")]

    def test_logon_call(self, load):
        client, transport = load("xtk_session.wsdl")
        fields = (
            '<urn:pstrSessionToken xsi:type="xsd:string">TOKEN</urn:pstrSessionToken>'
            '<urn:pSessionInfo xsi:type="ns:Element"><sessionInfo>'
            '<serverInfo buildNumber="9032"/><userInfo login="mc" loginId="1"/>'
            "</sessionInfo></urn:pSessionInfo>"
            '<urn:pstrSecurityToken xsi:type="xsd:string">@TOKEN2</urn:pstrSecurityToken>'
        )
        transport.reply = (
            200,
            ENVELOPE.format(
                extra_ns=f' xmlns:ns="{self.NS}"', body=response_body(self.NS, "Logon", fields)
            ),
        )
        result = client.service.Logon(
            sessiontoken="", strLogin="mc", strPassword="pw", elemParameters={}
        )
        assert result.pstrSessionToken == "TOKEN"
        assert result.pstrSecurityToken == "@TOKEN2"
        info = result.pSessionInfo._value_1
        assert info.tag == "sessionInfo"
        assert info.find("userInfo").get("login") == "mc"
        ((_, headers, _),) = transport.posts
        assert headers["SOAPAction"] == '"xtk:session#Logon"'

    def test_logoff_call(self, load):
        client, transport = load("xtk_session.wsdl")
        transport.reply = (200, ENVELOPE.format(extra_ns="", body=response_body(self.NS, "Logoff")))
        assert client.service.Logoff(sessiontoken="TOKEN") is None
        ((_, headers, envelope),) = transport.posts
        assert headers["SOAPAction"] == '"xtk:session#Logoff"'
        assert children(operation_element(envelope, self.NS, "Logoff")) == [
            (f"{{{self.NS}}}sessiontoken", "TOKEN")
        ]
