"""Technical accounts (OAuth 2.0 client credentials, RFC 6749 §4.4) and Bearer tokens on SOAP and
REST, through the real servers on both stores: an integration written for the model product's
technical accounts switches by changing its token URL and its SOAP URL, nothing else.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
import requests
import zeep
import zeep.exceptions
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from lxml import etree
from sqlalchemy import func, select
from typer.testing import CliRunner
from zeep.transports import Transport

from msgcenter.auth.admin import OperatorAdmin
from msgcenter.auth.tokens import AccessTokens
from msgcenter.cli import app as cli_app
from msgcenter.control.app import create_control_app
from msgcenter.settings import Settings
from msgcenter.store.tables import event
from tests.conftest import RunningServer, ThreadedServer, add_operator, start_exec_server

SECRET_KEY = "technical-accounts-test-secret-key-0123456789"
ROUTER = "/nl/jsp/soaprouter.jsp"
WSDL = "/nl/jsp/schemawsdl.jsp?schema=nms:rtEvent"
#: the model product's documentation samples (a minimal event, and a push event with its app)
DOC_EVENT = (
    '<rtEvent type="test" email="xxx@gmail.com">'
    "<ctx><firstName>ABC</firstName><lastName>DEF</lastName></ctx></rtEvent>"
)
DOC_PUSH_EVENT = (
    '<rtEvent wishedChannel="41" type="rt_MobileJourney_iOS_Push" '
    'registrationToken="c3ddc8aaecc24822df25d0f49865cca61ea3f86c61bfa53ae4d37294e37f4a1c" '
    'hashlpId="27EE7571EC14DBA23B9B5CC0EF79BB782DAECF4C03C88E5D92CC9B9DAC4E5DDA" '
    'correlationId="415b7593-4f6f-e911-811f-00505691247c" xmlns="">'
    '<mobileApp uuid="236B24DC-C073-412F-8BCB-AC7207096258" _operation="none"/>'
    "<ctx><device os='ios'/></ctx></rtEvent>"
)


@pytest.fixture
def server(db) -> Iterator[RunningServer]:  # type: ignore[no-untyped-def]
    threaded, running = start_exec_server(db, secret_key=SECRET_KEY)
    with threaded:
        yield running


def technical(db, login: str = "shop", rights: str = "mc_push", **options):  # type: ignore[no-untyped-def]
    return OperatorAdmin(db).add_technical(login, rights, **options)


def fetch_token(server: RunningServer, client_id: str, secret: str, **params: str) -> dict:
    """The token, as a standard OAuth 2.0 client library asks for it (client_secret_basic)."""
    with OAuth2Client(client_id, secret, timeout=30) as oauth:
        return dict(
            oauth.fetch_token(
                f"{server.url}/oauth2/token", grant_type="client_credentials", **params
            )
        )


def soap_push(
    server: RunningServer, event_xml: str, *, bearer: str, sessiontoken: str = ""
) -> httpx.Response:
    """A SOAP 1.1 envelope in application/soap+xml, as technical-account clients send it."""
    document = (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:urn="urn:nms:rtEvent"><soapenv:Header/><soapenv:Body><urn:PushEvent>'
        f"<urn:sessiontoken>{sessiontoken}</urn:sessiontoken><urn:domEvent>{event_xml}"
        "</urn:domEvent></urn:PushEvent></soapenv:Body></soapenv:Envelope>"
    )
    return httpx.post(
        f"{server.url}{ROUTER}",
        content=document.encode(),
        headers={
            "Content-Type": 'application/soap+xml; charset=utf-8; action="nms:rtEvent#PushEvent"',
            "Authorization": f"Bearer {bearer}",
        },
    )


def stored_events(db) -> int:  # type: ignore[no-untyped-def]
    with db.read() as conn:
        return conn.execute(select(func.count()).select_from(event)).scalar_one()


def test_an_integration_switches_by_changing_its_token_url_and_soap_url(server, db):
    credentials = technical(db, folder="brand1")
    token = fetch_token(server, credentials.client_id, credentials.client_secret)
    assert token["token_type"].lower() == "bearer" and token["expires_in"] == 300
    assert token["scope"] == "mc_push"

    # zeep, from the WSDL as served, with the Bearer header and an empty sessiontoken
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token['access_token']}"
    service = zeep.Client(server.url + WSDL, transport=Transport(session=session)).service
    ids = [
        service.PushEvent(sessiontoken="", domEvent={"_value_1": etree.fromstring(sample)})
        for sample in (DOC_EVENT, DOC_PUSH_EVENT)
    ]
    # a raw client: application/soap+xml around SOAP 1.1, no sessiontoken at all
    raw = soap_push(server, DOC_EVENT, bearer=token["access_token"])
    assert raw.status_code == 200, raw.text
    # REST with the same token
    rest = httpx.post(
        f"{server.url}/api/v1/events/rt",
        json={"type": "test", "email": "xxx@gmail.com"},
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert rest.status_code == 201, rest.text

    with db.read() as conn:
        rows = conn.execute(
            select(event.c.id, event.c.folder, event.c.mobile_app_uuid, event.c.extra)
            .where(event.c.id.in_(ids))
            .order_by(event.c.id)
        ).all()
    assert [r.folder for r in rows] == ["brand1", "brand1"]
    assert rows[1].mobile_app_uuid == "236B24DC-C073-412F-8BCB-AC7207096258"
    assert "hashlpId" in rows[1].extra  # unknown attributes are kept
    listed = {o.login: o for o in OperatorAdmin(db).list()}
    assert listed["shop"].last_used is not None


def test_token_errors_follow_rfc_6749(server, db):
    credentials = technical(db)
    url = f"{server.url}/oauth2/token"
    form = {"grant_type": "client_credentials", "client_id": credentials.client_id}

    def post(data: dict[str, str], **kwargs: object) -> httpx.Response:
        return httpx.post(url, data=data, **kwargs)  # type: ignore[arg-type]

    twice = post(
        {**form, "client_secret": credentials.client_secret},
        auth=(credentials.client_id, credentials.client_secret),
    )
    assert (twice.status_code, twice.json()["error"]) == (400, "invalid_request")
    assert "authenticated twice" in twice.json()["error_description"]

    wrong = post({**form, "client_secret": "nope"})
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    basic_wrong = post({"grant_type": "client_credentials"}, auth=(credentials.client_id, "nope"))
    assert basic_wrong.status_code == 401 and "Basic" in basic_wrong.headers["WWW-Authenticate"]

    grant = post({"grant_type": "password", "client_id": "x", "client_secret": "y"})
    assert (grant.status_code, grant.json()["error"]) == (400, "unsupported_grant_type")
    scope = post({**form, "client_secret": credentials.client_secret, "scope": "mc_admin"})
    assert (scope.status_code, scope.json()["error"]) == (400, "invalid_scope")
    unknown = post({**form, "client_secret": credentials.client_secret, "scope": "root"})
    assert (unknown.status_code, unknown.json()["error"]) == (400, "invalid_scope")
    json_body = httpx.post(url, json={**form, "client_secret": credentials.client_secret})
    assert (json_body.status_code, json_body.json()["error"]) == (400, "invalid_request")
    repeated = httpx.post(
        url,
        content=f"grant_type=client_credentials&grant_type=client_credentials&client_id={credentials.client_id}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (repeated.status_code, repeated.json()["error"]) == (400, "invalid_request")
    good = post({**form, "client_secret": credentials.client_secret})
    assert good.status_code == 200 and good.headers["Cache-Control"] == "no-store"

    # failed client authentications are throttled like logons
    for _ in range(5):
        post({**form, "client_secret": "nope"})
    throttled = post({**form, "client_secret": credentials.client_secret})
    assert (throttled.status_code, throttled.json()["error"]) == (429, "invalid_client")
    assert int(throttled.headers["Retry-After"]) > 0


def test_bad_tokens_get_a_clear_fault_and_store_nothing(server, db):
    pusher = technical(db, "pusher")
    admin_only = technical(db, "watcher", rights="mc_admin")
    good = fetch_token(server, pusher.client_id, pusher.client_secret)["access_token"]
    keys = AccessTokens.from_config([], SECRET_KEY, "urn:msgcenter:exec", 300)
    assert keys is not None
    claims = jwt.decode(good, options={"verify_signature": False})
    expired = jwt.encode(
        {**claims, "exp": datetime.now(UTC) - timedelta(seconds=5)},
        keys._keys[0][1],
        algorithm="HS256",
        headers={"kid": "secret-key", "typ": "at+jwt"},
    )
    forged = jwt.encode(
        claims,
        b"another key" * 4,
        algorithm="HS256",
        headers={"kid": "secret-key", "typ": "at+jwt"},
    )
    no_push = fetch_token(server, admin_only.client_id, admin_only.client_secret)["access_token"]
    cases = [
        (expired, "", "access token expired"),
        (forged, "", "signature does not verify"),
        (no_push, "", "lacks the mc_push right"),
        (good, "mc/other", "two credentials"),
        (good + "x", "", "signature does not verify"),
    ]
    for bearer, sessiontoken, reason in cases:
        answer = soap_push(server, DOC_EVENT, bearer=bearer, sessiontoken=sessiontoken)
        assert answer.status_code == 500, answer.text
        assert "<faultcode>SOAP-ENV:Client</faultcode>" in answer.text, answer.text
        assert reason in answer.text, answer.text
    assert stored_events(db) == 0
    rest = httpx.get(f"{server.url}/api/v1/events", headers={"Authorization": f"Bearer {expired}"})
    assert rest.status_code == 401 and "expired" in rest.json()["detail"]


def test_secrets_rotate_without_downtime_and_a_revoked_account_gets_no_token(server, db):
    first = technical(db)
    admin = OperatorAdmin(db)
    second = admin.rotate_secret("shop")
    for credentials in (first, second):  # both work while integrations move over
        assert fetch_token(server, credentials.client_id, credentials.client_secret)
    third = admin.rotate_secret("shop")
    with pytest.raises(OAuthError):  # the oldest stopped working
        fetch_token(server, first.client_id, first.client_secret)
    token = fetch_token(server, third.client_id, third.client_secret)["access_token"]
    admin.revoke("shop")
    with pytest.raises(OAuthError) as refused:
        fetch_token(server, third.client_id, third.client_secret)
    assert refused.value.error == "invalid_client"
    # a token issued before the revocation works until it expires (access_token_seconds)
    assert soap_push(server, DOC_EVENT, bearer=token).status_code == 200


def test_the_cli_and_the_api_manage_technical_accounts(server, db, tmp_path):
    runner = CliRunner()
    created = runner.invoke(
        cli_app, ["operator", "add-technical", "cli-shop", "--rights", "mc_push", "--db", db.url]
    )
    assert created.exit_code == 0, created.output
    lines = dict(line.split("=", 1) for line in created.output.splitlines() if "=" in line)
    assert fetch_token(server, lines["client_id"], lines["client_secret"])
    listed = runner.invoke(cli_app, ["operator", "list", "--db", db.url])
    assert "technical" in listed.output and lines["client_id"] in listed.output
    rotated = runner.invoke(cli_app, ["operator", "rotate-secret", "cli-shop", "--db", db.url])
    assert rotated.exit_code == 0 and "client_secret=" in rotated.output
    revoked = runner.invoke(cli_app, ["operator", "revoke", "cli-shop", "--db", db.url])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    person = runner.invoke(cli_app, ["operator", "rotate-secret", "nobody", "--db", db.url])
    assert person.exit_code == 1 and "no operator 'nobody'" in person.output

    add_operator(db, "boss", "secret", rights="mc_admin")
    api = f"{server.url}/api/v1/admin/technical-accounts"
    made = httpx.post(
        api, json={"login": "api-shop", "rights": ["mc_push"]}, auth=("boss", "secret")
    )
    assert made.status_code == 201, made.text
    assert fetch_token(server, made.json()["client_id"], made.json()["client_secret"])
    accounts = httpx.get(api, auth=("boss", "secret")).json()
    assert {a["login"] for a in accounts} == {"cli-shop", "api-shop"}
    assert next(a for a in accounts if a["login"] == "api-shop")["last_used"] is not None
    bad = httpx.post(api, json={"login": "x/y", "rights": ["root"]}, auth=("boss", "secret"))
    assert bad.status_code == 422


def test_the_control_instance_accepts_the_access_tokens_of_its_own_accounts(db):
    add_operator(db, "unused", "unused")
    settings = Settings(database_url=db.url, secret_key=SECRET_KEY, instance_name="control")
    credentials = OperatorAdmin(db).add_technical("designer", "mc_admin")
    with ThreadedServer(create_control_app(settings, db)) as url:
        answer = httpx.post(
            f"{url}/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(credentials.client_id, credentials.client_secret),
        )
        assert answer.status_code == 200, answer.text
        bearer = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        assert httpx.get(f"{url}/api/v1/event-types", headers=bearer).status_code == 200
        basic = base64.b64encode(b"designer:anything").decode()
        refused = httpx.get(
            f"{url}/api/v1/event-types", headers={"Authorization": f"Basic {basic}"}
        )
        assert refused.status_code == 401  # a technical account has no password
