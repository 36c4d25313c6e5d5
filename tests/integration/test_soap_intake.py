"""SOAP intake over real HTTP on both stores (SPEC §3.1, §3.2, §3.9).

Every call goes to a real server on loopback and every outcome is checked in the
database afterwards: an accepted event is stored with each attribute mapped, a
refused one gets a SOAP 1.1 Client Fault that names the problem, no ``plId``,
and leaves no row behind.

Calls that must store nothing share one server per store (``shared``), so that
the long list of refusals stays fast; calls that store events, or need their own
settings, get a fresh server on a fresh database (``db``).
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import httpx
import pytest
import sqlalchemy
from argon2 import PasswordHasher
from lxml import etree
from sqlalchemy import func, select, update

from msgcenter.operators import Operator, parse_networks, parse_rights
from msgcenter.store import operators as operator_store
from msgcenter.store.database import Database
from msgcenter.store.schema import upgrade
from msgcenter.store.tables import event, operator_session
from tests.conftest import PG_ADMIN_URL, STORES, FakeClock, RunningServer, start_exec_server

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
ROUTER = "/nl/jsp/soaprouter.jsp"
RT, BATCH, SESSION = "urn:nms:rtEvent", "urn:nms:batchEvent", "urn:xtk:session"
TOKEN = "mc/secret"
CTX = '<ctx><client firstname="Ann"/><orderId>123</orderId></ctx>'
#: how the server stores CTX: exclusive canonical XML (empty elements written out)
STORED_CTX = '<ctx><client firstname="Ann"></client><orderId>123</orderId></ctx>'

#: Argon2id at its lowest cost. The server's check is the real one (it reads the cost
#: from the hash), but takes microseconds instead of ~100 ms per operator and server.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


# -- building requests ---------------------------------------------------------------------


def envelope(call: str, ns: str = RT) -> bytes:
    """A SOAP 1.1 envelope whose body holds ``call``, with the ``urn`` prefix bound to ``ns``."""
    return (
        "<?xml version='1.0' encoding='utf-8'?>\n"
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:urn="{ns}">\n'
        "<soapenv:Header/>\n"
        f"<soapenv:Body>\n{call}\n</soapenv:Body>\n"
        "</soapenv:Envelope>\n"
    ).encode()


def event_xml(
    tag: str = "rtEvent", *, ctx: str | None = CTX, inner: str = "", **attrs: str | None
) -> str:
    """An event element: a valid email event unless ``attrs`` say otherwise (None drops one)."""
    values = {"type": "order_confirmation", "email": "ann@example.com", **attrs}
    rendered = "".join(f" {k}={quoteattr(v)}" for k, v in values.items() if v is not None)
    return f"<{tag}{rendered}>{inner}{ctx or ''}</{tag}>"


def push_event(event_element: str, token: str = TOKEN) -> str:
    """A ``PushEvent`` call element (prefix ``urn``)."""
    return (
        f"<urn:PushEvent><urn:sessiontoken>{escape(token)}</urn:sessiontoken>"
        f"<urn:domEvent>{event_element}</urn:domEvent></urn:PushEvent>"
    )


def push_events(event_elements: list[str], token: str = TOKEN) -> str:
    """A ``PushEvents`` call element: the events inside one ``<Events>`` wrapper."""
    return (
        f"<urn:PushEvents><urn:sessiontoken>{escape(token)}</urn:sessiontoken>"
        f"<urn:domEventCollection><Events>{''.join(event_elements)}</Events>"
        "</urn:domEventCollection></urn:PushEvents>"
    )


def logon(login: str, password: str) -> bytes:
    """An ``xtk:session#Logon`` request."""
    return envelope(
        "<urn:Logon><urn:sessiontoken/>"
        f"<urn:strLogin>{escape(login)}</urn:strLogin>"
        f"<urn:strPassword>{escape(password)}</urn:strPassword>"
        "<urn:elemParameters/></urn:Logon>",
        SESSION,
    )


def logoff(token: str) -> bytes:
    """An ``xtk:session#Logoff`` request."""
    return envelope(
        f"<urn:Logoff><urn:sessiontoken>{escape(token)}</urn:sessiontoken></urn:Logoff>", SESSION
    )


def rt_push(event_element: str, token: str = TOKEN) -> bytes:
    """A whole ``nms:rtEvent#PushEvent`` request."""
    return envelope(push_event(event_element, token))


# -- reading answers -----------------------------------------------------------------------


@dataclass
class Fault:
    code: str
    string: str
    detail: str


def client_fault(response: httpx.Response, *fragments: str) -> Fault:
    """The Fault of a refused call, checked: HTTP 500, SOAP 1.1 Client Fault, no id, detail has ``fragments``."""
    assert response.status_code == 500, response.text
    assert response.headers["content-type"].startswith("text/xml")
    assert b"plId" not in response.content
    root = etree.fromstring(response.content)
    assert root.tag == f"{{{SOAP_ENV}}}Envelope"
    (fault,) = root.findall(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    found = Fault(
        fault.findtext("faultcode"), fault.findtext("faultstring"), fault.findtext("detail")
    )
    assert found.code == "SOAP-ENV:Client", found
    assert "\n" not in found.string, found
    for fragment in fragments:
        assert fragment in found.detail, found
    return found


def answer(response: httpx.Response, ns: str, method: str) -> etree._Element:
    """The ``{ns}{method}Response`` element of a successful call."""
    assert response.status_code == 200, response.text
    root = etree.fromstring(response.content)
    (element,) = root.find(f"{{{SOAP_ENV}}}Body")
    assert element.tag == f"{{{ns}}}{method}Response"
    return element


def returned_ids(response: httpx.Response, ns: str = RT, method: str = "PushEvent") -> list[int]:
    """The ``plId`` values of a PushEvent(s) answer, each checked to be typed ``xsd:long``."""
    ids = []
    for plid in answer(response, ns, method):
        assert plid.tag == f"{{{ns}}}plId"
        assert plid.get(XSI_TYPE) == "xsd:long"
        ids.append(int(plid.text))
    return ids


def session_token(response: httpx.Response) -> str:
    """The session token of a Logon answer."""
    token = answer(response, SESSION, "Logon").findtext(f"{{{SESSION}}}pstrSessionToken")
    assert token.startswith("mcs_")
    return token


# -- the database --------------------------------------------------------------------------


def event_count(db: Database) -> int:
    with db.read() as conn:
        return conn.execute(select(func.count()).select_from(event)).scalar_one()


def stored(db: Database) -> list[sqlalchemy.RowMapping]:
    """Every stored event, by id."""
    with db.read() as conn:
        return list(conn.execute(select(event).order_by(event.c.id)).mappings())


def quick_operator(
    db: Database,
    login: str,
    password: str,
    rights: str = "mc_push",
    *,
    trusted: str = "",
    correlation_idempotency: bool = False,
) -> Operator:
    """Create an operator with a cheap (but real) Argon2id hash."""
    with db.write() as conn:
        return operator_store.add(
            conn,
            login,
            CHEAP_HASHER.hash(password),
            parse_rights(rights),
            parse_networks(trusted),
            None,
            datetime.now(UTC),
            correlation_idempotency=correlation_idempotency,
        )


# -- servers -------------------------------------------------------------------------------


@dataclass
class Soap:
    """A running server and an HTTP client to post SOAP requests to it."""

    running: RunningServer
    http: httpx.Client

    @property
    def db(self) -> Database:
        return self.running.db

    def post(
        self, body: bytes, action: str | None = None, *, cookie: str | None = None
    ) -> httpx.Response:
        """POST ``body`` to the SOAP router, with ``SOAPAction`` (quoted, as clients send it)."""
        headers = {"Content-Type": "text/xml; charset=utf-8"}
        if action is not None:
            headers["SOAPAction"] = f'"{action}"'
        if cookie is not None:
            headers["Cookie"] = f"__sessiontoken={cookie}"
        return self.http.post(ROUTER, content=body, headers=headers)

    def from_address(self, address: str) -> httpx.Client:
        """A client whose connections come from ``address`` (any 127.x.y.z reaches the server)."""
        return httpx.Client(
            base_url=self.running.url,
            timeout=10,
            transport=httpx.HTTPTransport(local_address=address),
        )


@contextmanager
def serve(db: Database, **overrides: object) -> Iterator[Soap]:
    """A server on ``db`` with settings ``overrides``, and a client for it."""
    threaded, running = start_exec_server(db, **overrides)
    with threaded, httpx.Client(base_url=running.url, timeout=10) as http:
        yield Soap(running, http)


@pytest.fixture
def server(db: Database) -> Iterator[Soap]:
    """A fresh server with default settings on a fresh database, operator mc/secret (mc_push)."""
    quick_operator(db, "mc", "secret")
    with serve(db) as soap:
        yield soap


#: limits of the shared server, small so that tests can exceed them cheaply
MAX_REQUEST_BYTES = 8192
MAX_EVENT_BYTES = 2048


@contextmanager
def _module_database(store: str, request: pytest.FixtureRequest, tmp: Path) -> Iterator[str]:
    """A migrated database of its own (not the one ``database_url`` empties between tests)."""
    if store == "sqlite":
        yield f"sqlite:///{tmp / 'shared.db'}"
        return
    request.getfixturevalue("pg_database")  # skips (or fails) the same way when PG is down
    admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"msgcenter_soap_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module", params=STORES)
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Soap]:
    """One server per store for calls that must store nothing.

    Small size limits; a high failed-logon limit so that the credential tests do
    not lock each other out. Operators: mc/secret (mc_push), nopush/secret (mc_admin),
    pinned/secret (mc_push, trusted from 10.1.2.0/24 only).
    """
    with _module_database(request.param, request, tmp_path_factory.mktemp("soap")) as url:
        db = Database(url)
        upgrade(db)
        quick_operator(db, "mc", "secret")
        quick_operator(db, "nopush", "secret", "mc_admin")
        quick_operator(db, "pinned", "secret", trusted="10.1.2.0/24")
        try:
            with serve(
                db,
                intake={"max_request_bytes": MAX_REQUEST_BYTES, "max_event_bytes": MAX_EVENT_BYTES},
                security={"failed_login_limit": 1000},
            ) as soap:
                yield soap
        finally:
            db.dispose()


@contextmanager
def stores_nothing(db: Database) -> Iterator[None]:
    """Checks that the block leaves the event table as it found it."""
    before = event_count(db)
    yield
    assert event_count(db) == before


# -- accepted events -----------------------------------------------------------------------

EVERY_ATTRIBUTE = {
    "type": "order_confirmation",
    "email": "ann@example.com",
    "mobilePhone": "+33612345678",
    "registrationToken": "device-token-1",
    "wishedChannel": "42",
    "emailFormat": "2",
    "externalId": "customer-42",
    "origin": "webshop",
    "language": "fr",
    "country": "FR",
    "correlationId": "order-123",
    "scheduled": "2030-06-01T10:00:00+02:00",
    "loyaltyTier": "gold",
    "campaign": "spring",
}


@pytest.mark.parametrize("ns,queue", [(RT, "rt"), (BATCH, "batch")])
def test_push_event_stores_every_attribute(server, ns, queue):
    """PushEvent answers ``plId`` and stores each SOAP attribute in its column, unknown ones in ``extra``."""
    tag = f"{queue}Event"
    element = event_xml(tag, inner='<mobileApp uuid="app-7"/>', **EVERY_ATTRIBUTE)
    response = server.post(envelope(push_event(element), ns), f"nms:{tag}#PushEvent")

    (event_id,) = returned_ids(response, ns)
    assert event_id > 0
    assert f'<urn:plId xsi:type="xsd:long">{event_id}</urn:plId>' in response.text
    (row,) = stored(server.db)
    expected = {
        "id": event_id,
        "queue": queue,
        "type": "order_confirmation",
        "status": 0,
        "email": "ann@example.com",
        "mobile_phone": "+33612345678",
        "registration_token": "device-token-1",
        "mobile_app_uuid": "app-7",
        "wished_channel": 42,
        "email_format": 2,
        "external_id": "customer-42",
        "origin": "webshop",
        "language": "fr",
        "country": "FR",
        "correlation_id": "order-123",
        "scheduled": datetime(2030, 6, 1, 8, 0, tzinfo=UTC),
        "ctx": STORED_CTX,
        "ctx_format": "xml",
        "extra": '{"loyaltyTier":"gold","campaign":"spring"}',
        "idempotency_key": None,
        "operator_id": 1,
        "folder": None,
        "error_count": 0,
    }
    assert {k: row[k] for k in expected} == expected
    # a scheduled event is not due before its time
    assert row["process_requested_on"] == datetime(2030, 6, 1, 8, 0, tzinfo=UTC)


def test_wished_channel_as_number_or_label(server):
    """``wishedChannel`` takes the model product's codes and their labels (SPEC §3.1)."""
    addresses = {"mobilePhone": "+33612345678", "registrationToken": "tok"}
    cases = [
        ("0", 0),
        ("email", 0),
        ("1", 1),
        ("sms", 1),
        ("mobile", 1),
        ("41", 41),
        ("iOS", 41),
        ("android", 42),
        ("42", 42),
    ]
    pushed = {}
    for value, code in cases:
        response = server.post(
            rt_push(event_xml(wishedChannel=value, **addresses)), "nms:rtEvent#PushEvent"
        )
        (event_id,) = returned_ids(response)
        pushed[event_id] = (value, code)
    rows = stored(server.db)
    assert {r["id"]: r["wished_channel"] for r in rows} == {
        i: code for i, (_, code) in pushed.items()
    }


def test_defaults_when_attributes_are_absent(server):
    """A minimal event: email channel, unknown email format, due now, no extra."""
    response = server.post(rt_push(event_xml()), "nms:rtEvent#PushEvent")
    (event_id,) = returned_ids(response)
    (row,) = stored(server.db)
    assert (row["id"], row["wished_channel"], row["email_format"]) == (event_id, 0, 0)
    assert (row["scheduled"], row["extra"], row["mobile_app_uuid"]) == (None, None, None)
    assert row["process_requested_on"] == row["created"]


def test_ctx_with_html_in_cdata_is_stored(server):
    """Markup that only looks like a DTD (HTML in a CDATA section) is text, not a declaration."""
    html = "<!DOCTYPE html><html><body><p>Hi Ann</p></body></html>"
    response = server.post(
        rt_push(event_xml(ctx=f"<ctx><html><![CDATA[{html}]]></html></ctx>")),
        "nms:rtEvent#PushEvent",
    )
    (event_id,) = returned_ids(response)
    (row,) = stored(server.db)
    assert row["id"] == event_id
    assert etree.fromstring(row["ctx"]).findtext("html") == html


@pytest.mark.parametrize(
    "body_ns,action,queue",
    [
        pytest.param(None, "nms:batchEvent#PushEvent", "batch", id="header, body unqualified"),
        pytest.param(BATCH, None, "batch", id="namespace, no header"),
        pytest.param(RT, "", "rt", id="namespace, empty header"),
        pytest.param(RT, "nms:rtEvent#PushEvent", "rt", id="header and namespace"),
    ],
)
def test_service_chosen_by_soapaction_or_namespace(server, body_ns, action, queue):
    """The SOAPAction header names the service; without one, the body element's namespace does."""
    tag = f"{queue}Event"
    if body_ns is None:
        body = envelope(push_event(event_xml(tag)).replace("urn:", ""))
    else:
        body = envelope(push_event(event_xml(tag)), body_ns)
    response = server.post(body, action)
    assert response.status_code == 200, response.text
    (plid,) = etree.fromstring(response.content).iter("{*}plId")
    (row,) = stored(server.db)
    assert (row["id"], row["queue"]) == (int(plid.text), queue)


def test_push_events_returns_ids_in_order(server):
    """PushEvents stores every event and answers their ids in the order sent."""
    elements = [event_xml(externalId=f"c{i}") for i in range(1, 6)]
    response = server.post(envelope(push_events(elements)), "nms:rtEvent#PushEvents")

    ids = returned_ids(response, RT, "PushEvents")
    assert len(ids) == 5
    assert ids == sorted(ids)
    rows = stored(server.db)
    assert [(r["id"], r["external_id"], r["queue"]) for r in rows] == [
        (event_id, f"c{i}", "rt") for i, event_id in enumerate(ids, start=1)
    ]


def test_correlation_id_is_idempotency_key_when_enabled(server):
    """For an operator that enables it, a repeated correlationId returns the first id (SPEC §3.1)."""
    quick_operator(server.db, "idem", "secret", correlation_idempotency=True)
    first, again, other = (
        returned_ids(server.post(rt_push(event_xml(correlationId=key), "idem/secret")))[0]
        for key in ("order-1", "order-1", "order-2")
    )
    assert first == again != other
    # without the option, correlationId is just stored
    plain = [
        returned_ids(server.post(rt_push(event_xml(correlationId="order-1"))))[0] for _ in range(2)
    ]
    assert len(set(plain)) == 2
    rows = stored(server.db)
    assert [(r["id"], r["correlation_id"], r["idempotency_key"]) for r in rows] == [
        (first, "order-1", "order-1"),
        (other, "order-2", "order-2"),
        (plain[0], "order-1", None),
        (plain[1], "order-1", None),
    ]


def test_batch_push_events(server):
    """PushEvents on ``nms:batchEvent`` lands in the batch queue."""
    elements = [event_xml("batchEvent", externalId=f"c{i}") for i in range(3)]
    response = server.post(envelope(push_events(elements), BATCH), "nms:batchEvent#PushEvents")
    ids = returned_ids(response, BATCH, "PushEvents")
    assert [(r["id"], r["queue"]) for r in stored(server.db)] == [(i, "batch") for i in ids]


# -- refused requests ----------------------------------------------------------------------


#: ten levels of ten-fold entities: a billion "lol"s if anything expanded them
BILLION_LAUGHS = (
    "<?xml version='1.0'?>\n"
    '<!DOCTYPE lolz [<!ENTITY lol0 "lol">'
    + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    + "]>\n"
    f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body>&lol9;</soapenv:Body>'
    "</soapenv:Envelope>"
).encode()

#: the <ctx> and <rtEvent> opened on line 4 are never closed: line 5 closes PushEvent
MALFORMED = (
    "<?xml version='1.0'?>\n"
    f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:urn="{RT}">\n'
    "<soapenv:Body>\n"
    '<urn:PushEvent><urn:domEvent><rtEvent type="a" email="ann@example.com"><ctx>\n'
    "</urn:PushEvent>\n"
    "</soapenv:Body></soapenv:Envelope>"
).encode()

SOAP12 = b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>'
NO_EVENT = "<urn:PushEvent><urn:sessiontoken>mc/secret</urn:sessiontoken>{}</urn:PushEvent>"
NO_EVENTS = "<urn:PushEvents><urn:sessiontoken>mc/secret</urn:sessiontoken></urn:PushEvents>"


def nested(depth: int) -> str:
    return "<n>" * depth + "</n>" * depth


def bad(name: str, body: bytes, *fragments: str, action: str | None = None) -> object:
    """A refused request: its body, its SOAPAction, and what the Fault detail must contain."""
    return pytest.param(body, action, fragments, id=name)


def push(**attrs: str | None) -> bytes:
    """An rtEvent PushEvent request for ``event_xml(**attrs)``."""
    return rt_push(event_xml(**attrs))


BAD_REQUESTS = [
    # the document
    bad("empty body", b"", "line 1, column 1", "Document is empty"),
    bad("malformed XML", MALFORMED, "XML parse error at line 5, column ", "mismatch"),
    # the client's timeout (10 s) turns any expansion into a failure
    bad("billion laughs", BILLION_LAUGHS, "<!DOCTYPE at line 2, column 1", "refused"),
    bad("internal entity", b'<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>', "<!DOCTYPE at line 1"),
    bad("nesting too deep", push(ctx=f"<ctx>{nested(70)}</ctx>"), "nested deeper than 64 levels"),
    bad("not a SOAP envelope", b"<PushEvent/>", "the root element is PushEvent"),
    bad("empty SOAP body", envelope(""), "the SOAP Body holds no call element"),
    # the call
    bad("unknown method", envelope("<urn:PushAll/>"), "no method PushAll; it offers PushEvent,"),
    bad("unknown session method", envelope("<urn:Write/>", SESSION), "no method Write"),
    bad("unknown namespace", envelope("<urn:PushEvent/>", "urn:x"), "'urn:x' names no service"),
    bad("unknown action", push(), "names no service", action="nms:other#PushEvent"),
    bad("action for other service", push(), "in namespace 'urn:nms:rtEvent'", action="nms:batchEvent#PushEvent"),
    bad("action for other method", push(), "but the body calls PushEvent", action="nms:rtEvent#PushEvents"),
    bad("empty domEvent", envelope(NO_EVENT.format("<urn:domEvent/>")), "domEvent must hold one <rtEvent>"),
    bad("no domEvent", envelope(NO_EVENT.format("")), "domEvent must hold one <rtEvent> element"),
    bad("batchEvent to rtEvent", rt_push(event_xml("batchEvent")), "expected <rtEvent>, found <batchEvent>"),
    bad("rtEvent to batchEvent", envelope(push_event(event_xml()), BATCH), "expected <batchEvent>, found <rtEvent>"),
    bad("empty collection", envelope(push_events([])), "the event collection is empty"),
    bad("no collection", envelope(NO_EVENTS), "domEventCollection must hold one wrapper element"),
    bad("Logon without login", logon("", "x"), "Logon needs strLogin"),
    bad("Logoff without token", logoff(""), "Logoff needs the sessiontoken"),
    # the event (SPEC §3.2 "Intake rules")
    bad("event too large", push(ctx=f"<ctx>{'x' * 3000}</ctx>"), f"at most {MAX_EVENT_BYTES} are accepted"),
    bad("missing type", push(type=None), "invalid 'type': missing"),
    bad("invalid type", push(type="order confirmation"), "invalid 'type': 'order confirmation' is not a valid"),
    bad("missing email", push(email=None), "invalid 'email': missing: required for the email channel"),
    bad("invalid email", push(email="ann@@example"), "invalid 'email': 'ann@@example' is not a valid address"),
    bad("missing mobilePhone", push(wishedChannel="sms"), "invalid 'mobilePhone': missing: required for the SMS"),
    bad("invalid mobilePhone", push(wishedChannel="1", mobilePhone="call me"), "'call me' is not a phone number"),
    bad("missing registrationToken", push(wishedChannel="ios"), "invalid 'registrationToken': missing"),
    bad("unknown wishedChannel label", push(wishedChannel="pigeon"), "invalid 'wishedChannel': unknown channel 'pigeon'"),
    bad("unknown wishedChannel code", push(wishedChannel="7"), "invalid 'wishedChannel': unknown channel code 7"),
    bad("emailFormat out of range", push(emailFormat="3"), "invalid 'emailFormat': '3' is out of range"),
    bad("emailFormat not a number", push(emailFormat="html"), "invalid 'emailFormat': 'html' is out of range"),
    bad("unparseable scheduled", push(scheduled="next tuesday"), "'next tuesday' is not an ISO 8601 timestamp"),
    bad(
        "3rd and 4th of 5 bad",
        envelope(push_events([event_xml(), event_xml(), event_xml(email="x"), event_xml(type=None), event_xml()])),
        "event 3: invalid 'email'",
        action="nms:rtEvent#PushEvents",
    ),
]  # fmt: skip


@pytest.mark.parametrize("body,action,fragments", BAD_REQUESTS)
def test_bad_request_gets_client_fault_and_stores_nothing(shared, body, action, fragments):
    """Each bad request: a Client Fault whose detail says what was wrong, no id, no row."""
    with stores_nothing(shared.db):
        client_fault(shared.post(body, action), *fragments)


def test_fault_names_position_of_first_bad_event(shared):
    """All or nothing: the 3rd of 5 events is bad, the Fault says so and none is stored."""
    elements = [event_xml(externalId=f"c{i}") for i in range(1, 6)]
    elements[2] = event_xml(externalId="c3", emailFormat="9")
    with stores_nothing(shared.db):
        fault = client_fault(shared.post(envelope(push_events(elements)), "nms:rtEvent#PushEvents"))
    assert fault.string == "event 3: invalid 'emailFormat'"
    assert (
        fault.detail
        == "event 3: invalid 'emailFormat': '9' is out of range (0 unknown, 1 text, 2 HTML)"
    )


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_external_entity_is_never_read(shared, tmp_path, encoding):
    """An external entity naming a real file is refused; the file's content appears nowhere."""
    secret = f"TOP-SECRET-{uuid.uuid4().hex}"
    target = tmp_path / "secret.txt"
    target.write_text(secret)
    document = (
        f"<?xml version='1.0' encoding='{encoding}'?>\n"
        f'<!DOCTYPE ctx [<!ENTITY leak SYSTEM "{target.as_uri()}">]>\n'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:urn="{RT}"><soapenv:Body>'
        + push_event(event_xml(ctx="<ctx>&leak;</ctx>"))
        + "</soapenv:Body></soapenv:Envelope>"
    ).encode(encoding)
    with stores_nothing(shared.db):
        response = shared.post(document, "nms:rtEvent#PushEvent")
        fault = client_fault(response, "document type")
    assert fault.string == "DTD and entity declarations are not accepted"
    assert secret not in response.text


def _oversized() -> bytes:
    body = rt_push(event_xml(ctx=f"<ctx>{'x' * MAX_REQUEST_BYTES}</ctx>"))
    assert len(body) > MAX_REQUEST_BYTES
    return body


def test_body_over_size_limit_declared(shared):
    """A Content-Length above ``max_request_bytes`` is refused before the body is read."""
    body = _oversized()
    with stores_nothing(shared.db):
        client_fault(
            shared.post(body),
            f"the body is {len(body)} bytes; at most {MAX_REQUEST_BYTES} are accepted",
        )


def test_body_over_size_limit_chunked(shared):
    """A chunked body (no Content-Length) is cut off as soon as it passes the limit."""
    body = _oversized()
    chunks = (body[i : i + 1024] for i in range(0, len(body), 1024))
    with stores_nothing(shared.db):
        response = shared.http.post(ROUTER, content=chunks, headers={"Content-Type": "text/xml"})
        client_fault(response, f"the body exceeds {MAX_REQUEST_BYTES} bytes")


# -- credentials and sessions --------------------------------------------------------------


@pytest.mark.parametrize(
    "body,fragments",
    [
        pytest.param(
            rt_push(event_xml(), "mc/wrong"),
            ["unknown login or wrong password"],
            id="wrong password",
        ),
        pytest.param(
            rt_push(event_xml(), "ghost/secret"),
            ["unknown login or wrong password"],
            id="unknown login",
        ),
        pytest.param(
            rt_push(event_xml(), "ghost/"),
            ["unknown login or wrong password"],
            id="unknown login, empty password",
        ),
        pytest.param(
            logon("mc", "wrong"), ["unknown login or wrong password"], id="Logon wrong password"
        ),
        pytest.param(
            logon("ghost", "secret"), ["unknown login or wrong password"], id="Logon unknown login"
        ),
        pytest.param(
            rt_push(event_xml(), "mcs_" + secrets.token_urlsafe(32)),
            ["unknown session token (ended, or never issued)"],
            id="forged token",
        ),
        pytest.param(
            rt_push(event_xml(), "not-a-token"), ["malformed session token"], id="malformed token"
        ),
        pytest.param(rt_push(event_xml(), ""), ["no session token"], id="no token"),
        pytest.param(
            rt_push(event_xml(), "nopush/secret"),
            ["operator 'nopush' lacks the mc_push right"],
            id="no mc_push right",
        ),
        pytest.param(
            rt_push(event_xml(), "pinned/secret"),
            ["address 127.0.0.1 is not in the trusted IP masks of operator 'pinned'"],
            id="untrusted address",
        ),
        pytest.param(
            logon("pinned", "secret"),
            ["address 127.0.0.1 is not in the trusted IP masks of operator 'pinned'"],
            id="Logon from untrusted address",
        ),
        pytest.param(
            logoff("mcs_" + secrets.token_urlsafe(32)),
            ["unknown or already ended session token"],
            id="Logoff unknown token",
        ),
    ],
)
def test_credentials_refused(shared, body, fragments):
    """Each refused credential gets a Client Fault that names it, and stores nothing."""
    with stores_nothing(shared.db):
        client_fault(shared.post(body), *fragments)


def test_session_lifecycle(server):
    """Logon, push with the token (element or cookie), Logoff; then the token is refused."""
    response = server.post(logon("mc", "secret"), "xtk:session#Logon")
    token = session_token(response)
    result = answer(response, SESSION, "Logon")
    assert result.findtext(f"{{{SESSION}}}pstrSecurityToken") == f"@{token}"
    user = result.find(f"{{{SESSION}}}pSessionInfo/sessionInfo/userInfo")
    assert (user.get("login"), user.get("rights")) == ("mc", "mc_push")

    (by_element,) = returned_ids(server.post(rt_push(event_xml(), token), "nms:rtEvent#PushEvent"))
    (by_cookie,) = returned_ids(
        server.post(rt_push(event_xml(), ""), "nms:rtEvent#PushEvent", cookie=token)
    )
    assert [r["id"] for r in stored(server.db)] == [by_element, by_cookie]

    answer(server.post(logoff(token), "xtk:session#Logoff"), SESSION, "Logoff")
    with server.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(operator_session)).scalar_one() == 0
    with stores_nothing(server.db):
        client_fault(
            server.post(rt_push(event_xml(), token)),
            "unknown session token (ended, or never issued)",
        )
        client_fault(server.post(rt_push(event_xml(), ""), cookie=token), "unknown session token")


def test_login_password_and_empty_password_forms_from_loopback(server):
    """From 127.0.0.1 the default zone accepts ``login/password`` and ``login/`` (empty password)."""
    quick_operator(server.db, "kiosk", "")
    (first,) = returned_ids(server.post(rt_push(event_xml(), "mc/secret")))
    (second,) = returned_ids(server.post(rt_push(event_xml(), "kiosk/")))
    rows = stored(server.db)
    assert [(r["id"], r["operator_id"]) for r in rows] == [(first, 1), (second, 2)]
    # the empty-password operator can open a session too
    session_token(server.post(logon("kiosk", "")))


def test_expired_session_is_refused(db):
    """A session past its expiry is refused with a Fault that says it expired."""
    quick_operator(db, "mc", "secret")
    with serve(db, security={"credential_cache_seconds": 0}) as soap:
        token = session_token(soap.post(logon("mc", "secret")))
        returned_ids(soap.post(rt_push(event_xml(), token)))
        past = datetime.now(UTC) - timedelta(minutes=5)
        with db.write() as conn:
            conn.execute(update(operator_session).values(expires=past))
        with stores_nothing(db):
            fault = client_fault(soap.post(rt_push(event_xml(), token)), "session token expired at")
    assert past.isoformat()[:16] in fault.detail


ZONES = [
    {
        "name": "dev-box",
        "networks": ["127.0.0.1/32"],
        "allow_empty_password": True,
        "allow_login_password_token": True,
    },
    {"name": "lan", "networks": ["127.0.0.0/8"]},
]


def test_security_zones(db):
    """``login/`` and ``login/password`` work only where the caller's zone allows them."""
    quick_operator(db, "mc", "secret")
    quick_operator(db, "kiosk", "")
    with serve(db, security={"zones": ZONES}) as soap, soap.from_address("127.0.0.2") as lan:
        allowed = [
            returned_ids(soap.post(rt_push(event_xml(), t)))[0] for t in ("kiosk/", "mc/secret")
        ]
        with stores_nothing(db):
            for body, fragment in [
                (
                    rt_push(event_xml(), "kiosk/"),
                    "empty passwords are not allowed from 127.0.0.2 (security zone 'lan')",
                ),
                (
                    logon("kiosk", ""),
                    "empty passwords are not allowed from 127.0.0.2 (security zone 'lan')",
                ),
                (
                    rt_push(event_xml(), "mc/secret"),
                    "the login/password token form is not allowed from 127.0.0.2 (security zone 'lan')",
                ),
            ]:
                response = lan.post(ROUTER, content=body, headers={"Content-Type": "text/xml"})
                client_fault(response, fragment)
        # the lan zone still allows a proper session
        token = session_token(lan.post(ROUTER, content=logon("mc", "secret")))
        (from_lan,) = returned_ids(lan.post(ROUTER, content=rt_push(event_xml(), token)))
    assert [r["id"] for r in stored(db)] == [*allowed, from_lan]


def test_failed_logons_are_slowed_down_per_login_and_address(db):
    """Past the limit, a login from an address must wait (a short delay, not a lockout),
    with one message that names no login; another login from that address is not slowed."""
    quick_operator(db, "mc", "secret")
    quick_operator(db, "other", "secret")
    quick_operator(db, "third", "secret")
    security = {"failed_login_limit": 3, "failed_address_limit": 6}
    # a clock that stands still: the delays last as long as the test takes to check them
    with serve(db, clock=FakeClock(), security=security) as soap:
        for _ in range(3):
            client_fault(soap.post(logon("mc", "wrong")), "unknown login or wrong password")
        fault = client_fault(
            soap.post(logon("mc", "secret")), "too many failed logons from 127.0.0.1; retry in "
        )
        assert re.search(r"retry in \d+ s$", fault.detail)
        assert "mc" not in fault.detail
        client_fault(soap.post(rt_push(event_xml(), "mc/secret")), "too many failed logons")
        session_token(soap.post(logon("other", "secret")))

        with soap.from_address("127.0.0.3") as elsewhere:
            for login in ("ghost1", "ghost2", "ghost3", "ghost4", "ghost5", "ghost6"):
                response = elsewhere.post(ROUTER, content=logon(login, "x"))
                assert login not in client_fault(response, "unknown login or wrong password").detail
            # (credentials not verified yet: those just checked stay cached, never slowed)
            response = elsewhere.post(ROUTER, content=logon("third", "secret"))
            client_fault(response, "too many failed logons from 127.0.0.3")
        # the delays are per key: 'mc' from another address still logs on
        with soap.from_address("127.0.0.4") as fresh:
            session_token(fresh.post(ROUTER, content=logon("mc", "secret")))
    assert event_count(db) == 0
