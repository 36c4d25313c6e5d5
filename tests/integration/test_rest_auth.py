"""REST authentication over real HTTP on both stores: Basic, sessions, rights, IP masks, zones, throttling.

SPEC §3.2 (REST authentication) and §3.9 (operators, security zones). Refusals are
RFC 9457 problems that say which credential or rule failed, and store nothing.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select, update

from msgcenter.auth import passwords
from msgcenter.store.tables import event, operator_session
from tests.conftest import FakeClock, add_operator, start_exec_server

PROBLEM_JSON = "application/problem+json"
EVENT = {"type": "order_confirmation", "email": "ann@example.com", "ctx": {"order": 1}}


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch):
    """Real Argon2id, at its lowest cost: the default costs up to 0.5 s per hash on a busy machine,
    paid twice per test (add_operator, then the server's first verification)."""
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


@contextmanager
def serve(db, clock: FakeClock | None = None, **settings: object) -> Iterator[str]:
    """An execution instance on ``db`` with settings overrides (and a test's ``clock``);
    yields its base URL."""
    threaded, running = start_exec_server(db, clock=clock, **settings)
    with threaded:
        yield running.url


def client(
    url: str, auth: tuple[str, str] | None = None, *, source: str | None = None, token: str = ""
) -> httpx.Client:
    """A client with HTTP Basic ``auth`` or a Bearer ``token``, optionally from a source address."""
    transport = httpx.HTTPTransport(local_address=source) if source else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, auth=auth, headers=headers, transport=transport, timeout=10)


def push(http: httpx.Client, **kwargs: object) -> httpx.Response:
    return http.post("/api/v1/events/rt", json=EVENT, **kwargs)


def logon(http: httpx.Client, login: str, password: str) -> httpx.Response:
    return http.post("/api/v1/sessions", json={"login": login, "password": password})


def event_count(db) -> int:
    with db.read() as conn:
        return conn.execute(select(func.count()).select_from(event)).scalar_one()


def assert_problem(response: httpx.Response, status: int, detail: str) -> dict:
    """An RFC 9457 problem with ``status`` whose detail contains ``detail``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["status"] == status
    assert detail in problem["detail"], problem["detail"]
    if status == 401:
        assert response.headers["WWW-Authenticate"] == 'Basic realm="msgcenter", Bearer'
    return problem


def basic(raw: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


# -- HTTP Basic --------------------------------------------------------------------------


def test_basic_credentials_are_accepted(exec_server, db):
    operator = add_operator(db, "mc", "secret")
    with client(exec_server.url, ("mc", "secret")) as http:
        assert push(http).status_code == 201
        assert http.get("/api/v1/events").status_code == 200
    with db.read() as conn:
        assert conn.execute(select(event.c.operator_id)).scalar_one() == operator.id


def test_no_credentials_is_401_with_a_challenge(exec_server, db):
    with client(exec_server.url) as http:
        problem = assert_problem(push(http), 401, "no credentials: send HTTP Basic")
        assert problem["title"] == "authentication failed"
        assert_problem(http.get("/api/v1/events"), 401, "no credentials")
        assert_problem(http.get("/api/v1/events/1"), 401, "no credentials")
    assert event_count(db) == 0


def test_refused_credentials_name_what_was_wrong(exec_server, db, subtests):
    """Under the failed-logon limit (5 by default): two of these count as failures."""
    add_operator(db, "mc", "secret")
    cases = [
        ("malformed base64", {"Authorization": "Basic not*base64!"}, "malformed HTTP Basic"),
        ("not UTF-8", basic(b"\xff\xfe:x"), "malformed HTTP Basic credentials"),
        ("unknown scheme", {"Authorization": "Digest username=mc"}, "no credentials"),
        ("bearer without a token", {"Authorization": "Bearer"}, "no credentials"),
        ("wrong password", basic(b"mc:wrong"), "unknown login or wrong password"),
        ("unknown login", basic(b"ghost:secret"), "unknown login or wrong password"),
        ("non-ASCII bytes", {"Authorization": b"Basic bWM6c2VjcmV0\xe9"}, "malformed HTTP Basic"),
    ]
    with client(exec_server.url) as http:
        for name, headers, detail in cases:
            with subtests.test(msg=name):
                assert_problem(push(http, headers=headers), 401, detail)
    assert event_count(db) == 0


def test_operator_without_the_push_right_is_403(exec_server, db):
    add_operator(db, "reader", "pw", rights="mc_admin")
    with client(exec_server.url, ("reader", "pw")) as http:
        problem = assert_problem(push(http), 403, "operator 'reader' lacks the mc_push right")
        assert problem["title"] == "permission denied"
        assert http.get("/api/v1/events").status_code == 200  # reading needs no push right
    assert event_count(db) == 0


def test_trusted_ip_masks(exec_server, db):
    add_operator(db, "remote", "pw", trusted="10.0.0.0/8")
    add_operator(db, "local", "pw", trusted="192.168.0.0/16, 127.0.0.1/32")
    with client(exec_server.url, ("remote", "pw")) as http:
        detail = "address 127.0.0.1 is not in the trusted IP masks of operator 'remote'"
        assert_problem(push(http), 403, detail)
        assert_problem(logon(http, "remote", "pw"), 403, detail)
    assert event_count(db) == 0
    with client(exec_server.url, ("local", "pw")) as http:
        assert push(http).status_code == 201
    with client(exec_server.url, ("local", "pw"), source="127.0.0.2") as http:
        assert_problem(push(http), 403, "address 127.0.0.2 is not in the trusted IP masks")
    assert event_count(db) == 1


# -- sessions ----------------------------------------------------------------------------


def session_rows(db) -> list:
    with db.read() as conn:
        return conn.execute(select(operator_session)).mappings().all()


def test_session_lifecycle(exec_server, db):
    operator = add_operator(db, "mc", "secret")
    with client(exec_server.url) as anonymous:
        opened = logon(anonymous, "mc", "secret")
    assert opened.status_code == 201, opened.text
    session = opened.json()
    token = session["token"]
    assert token.startswith("mcs_") and len(token) > 40
    assert session["login"] == "mc"
    expires = datetime.fromisoformat(session["expires"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=1))) < timedelta(minutes=1)
    (row,) = session_rows(db)
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()  # never the token
    assert row["operator_id"] == operator.id

    with client(exec_server.url, token=token) as bearer:
        assert push(bearer).status_code == 201
        assert bearer.get("/api/v1/events").status_code == 200
        assert bearer.delete("/api/v1/sessions/current").status_code == 204
        assert session_rows(db) == []
        assert_problem(push(bearer), 401, "unknown session token (ended, or never issued)")
        assert_problem(bearer.delete("/api/v1/sessions/current"), 401, "unknown session token")
    assert event_count(db) == 1


def test_logon_refusals(exec_server, db):
    add_operator(db, "mc", "secret")
    with client(exec_server.url) as http:
        wrong = assert_problem(logon(http, "mc", "nope"), 401, "unknown login or wrong password")
        unknown = assert_problem(logon(http, "nobody", "x"), 401, "unknown login or wrong password")
        # the same answer for both, and the login is never echoed
        assert wrong == unknown
        assert "nobody" not in str(unknown)
        missing = http.post("/api/v1/sessions", json={"login": "mc"})
        problem = assert_problem(missing, 422, "/password")
        assert problem["field"] == "/password"
        with_basic = http.delete("/api/v1/sessions/current", auth=("mc", "secret"))
        assert_problem(with_basic, 401, "log off needs the session as a Bearer token")
    assert session_rows(db) == []


def test_forged_bearer_tokens_are_401(exec_server, db):
    add_operator(db, "mc", "secret")
    with client(exec_server.url, token="mcs_" + "A" * 43) as http:
        assert_problem(push(http), 401, "unknown session token (ended, or never issued)")
    with client(exec_server.url, token="not-a-session") as http:
        assert_problem(push(http), 401, "malformed session token")
        assert_problem(http.get("/api/v1/events"), 401, "malformed session token")
    assert event_count(db) == 0


def test_expired_session_is_401(db):
    """With no credential cache, the expiry stored in the database is checked on each call."""
    add_operator(db, "mc", "secret")
    with serve(db, security={"credential_cache_seconds": 0}) as url:
        with client(url) as anonymous:
            token = logon(anonymous, "mc", "secret").json()["token"]
        with client(url, token=token) as http:
            assert push(http).status_code == 201
            past = datetime.now(UTC) - timedelta(minutes=5)
            with db.write() as conn:
                conn.execute(update(operator_session).values(expires=past))
            problem = assert_problem(push(http), 401, "session token expired at")
            assert datetime.fromisoformat(problem["detail"].rsplit(" ", 1)[1]) == past
    assert event_count(db) == 1


# -- failed-logon throttling -------------------------------------------------------------


def assert_throttled(response: httpx.Response) -> None:
    problem = assert_problem(response, 429, "too many failed logons from 127.0.0.")
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= 60
    assert problem["retry_after"] == retry_after
    assert "WWW-Authenticate" not in response.headers


def test_failed_logons_slow_down_their_login_and_address_not_bystanders(db):
    add_operator(db, "mc", "secret")
    add_operator(db, "other", "pw")
    add_operator(db, "third", "pw3")
    clock = FakeClock()
    security = {"failed_login_limit": 3, "failed_address_limit": 10}
    with serve(db, clock, security=security) as url:
        with client(url, ("mc", "wrong")) as http:
            for _ in range(3):
                assert_problem(push(http), 401, "unknown login or wrong password")
            assert_throttled(push(http))
        # the right password must wait too, for this login from this address: a delay
        with client(url, ("mc", "secret")) as http:
            assert_throttled(push(http))
            assert_throttled(logon(http, "mc", "secret"))
        # a bystander from the same address (a NAT) is not slowed, nor 'mc' from elsewhere:
        # its wrong password there is refused as wrong, not delayed
        with client(url, ("other", "pw")) as http:
            assert push(http).status_code == 201
        with client(url, ("mc", "wrong"), source="127.0.0.2") as http:
            assert_problem(push(http), 401, "unknown login or wrong password")
        # the delay is short, 1 s after the third failure: before it has passed the right
        # password still waits, after it the right password works again
        with client(url, ("mc", "secret")) as http:
            clock.advance(0.5)
            assert_throttled(push(http))
            clock.advance(0.5)
            assert push(http).status_code == 201
        # a verified password is cached, and is then not slowed from anywhere
        with client(url, ("mc", "secret"), source="127.0.0.2") as http:
            assert push(http).status_code == 201
        # many logins failing from one address slow that address past its own limit
        with client(url, source="127.0.0.3") as http:
            for n in range(10):
                assert_problem(
                    push(http, auth=(f"ghost{n}", "x")), 401, "unknown login or wrong password"
                )
            # (credentials not verified yet: those just checked stay cached and are never slowed)
            assert_throttled(push(http, auth=("third", "pw3")))
    assert event_count(db) == 3


def test_forged_tokens_slow_their_address_but_a_valid_token_is_never_throttled(db):
    add_operator(db, "mc", "secret")
    with serve(db, FakeClock(), security={"failed_address_limit": 2}) as url:
        with client(url) as anonymous:
            token = logon(anonymous, "mc", "secret").json()["token"]
        with client(url, token="mcs_guess") as http:
            for _ in range(2):
                assert_problem(push(http), 401, "unknown session token")
            assert_throttled(push(http))
        with client(url, token=token) as http:
            assert push(http).status_code == 201
        with client(url, token=token, source="127.0.0.3") as http:
            assert push(http).status_code == 201
    assert event_count(db) == 2


# -- security zones ----------------------------------------------------------------------


def test_empty_password_is_allowed_from_loopback_by_default(exec_server, db):
    add_operator(db, "kiosk", "")
    for source in ("127.0.0.1", "127.0.0.2"):
        with client(exec_server.url, ("kiosk", ""), source=source) as http:
            assert push(http).status_code == 201, source
    assert event_count(db) == 2


def test_empty_password_follows_the_configured_zones(db):
    add_operator(db, "kiosk", "")
    add_operator(db, "mc", "secret")
    zones = [{"name": "local", "networks": ["127.0.0.1/32"], "allow_empty_password": True}]
    with serve(db, security={"zones": zones}) as url:
        with client(url, ("kiosk", "")) as http:
            assert push(http).status_code == 201
        with client(url, ("kiosk", ""), source="127.0.0.2") as http:
            detail = "empty passwords are not allowed from 127.0.0.2 (security zone 'default')"
            assert_problem(push(http), 403, detail)
            assert_problem(logon(http, "kiosk", ""), 403, detail)
        with client(url, ("mc", "secret"), source="127.0.0.2") as http:
            assert push(http).status_code == 201
    assert event_count(db) == 2


def test_zone_without_plain_http_asks_for_https(db):
    add_operator(db, "mc", "secret")
    zones = [{"name": "tls-only", "networks": ["127.0.0.0/8"], "allow_http": False}]
    with serve(db, security={"zones": zones}) as url:
        detail = "plain HTTP is not allowed from 127.0.0.1 (security zone 'tls-only'); use HTTPS"
        with client(url, ("mc", "secret")) as http:
            assert_problem(push(http), 403, detail)
            assert_problem(logon(http, "mc", "secret"), 403, detail)
        with client(url, token="mcs_whatever") as http:
            assert_problem(push(http), 403, detail)
    assert event_count(db) == 0
    assert session_rows(db) == []
