"""The console's session at the HTTP level, on both stores: the cookie's attributes, the security
headers, the login form's nonce, no open redirect, logout and idle expiry end the session."""

from __future__ import annotations

import re

import httpx
import pytest

from msgcenter.settings import Settings
from msgcenter.web.exec_app import create_exec_app
from tests.conftest import ThreadedServer, add_operator, wait_for

LOGIN, PASSWORD = "mc", "secret"


def log_in(client: httpx.Client, next_page: str = "/console/") -> httpx.Response:
    """Fetch the login form (its nonce cookie), then post it."""
    form = client.get("/console/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
    assert nonce, form.text
    return client.post(
        "/console/login",
        data={"login": LOGIN, "password": PASSWORD, "nonce": nonce[1], "next": next_page},
    )


@pytest.fixture
def console(exec_server):
    add_operator(exec_server.db, LOGIN, PASSWORD)
    with httpx.Client(base_url=exec_server.url, timeout=10) as client:
        yield client


def test_the_session_cookie_is_httponly_and_samesite_strict(console):
    answer = log_in(console)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/"
    cookie = next(
        c for c in answer.headers.get_list("set-cookie") if c.startswith("msgcenter_console=")
    )
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert "secure" not in attributes  # plain HTTP on loopback; over TLS it is Secure
    assert console.get("/console/").status_code == 200


def test_every_page_forbids_inline_script_and_framing(console):
    log_in(console)
    for path in ("/console/login", "/console/", "/console/events", "/console/quarantine"):
        headers = console.get(path).headers
        policy = headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("style-src")[0]
        assert "frame-ancestors 'none'" in policy
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"


def test_login_needs_the_nonce_of_its_own_form(console):
    # a page of another site posting a login (login CSRF) has no nonce cookie
    answer = console.post(
        "/console/login", data={"login": LOGIN, "password": PASSWORD, "nonce": "guess"}
    )
    assert answer.status_code == 400
    assert "the login form expired" in answer.text
    assert "msgcenter_console" not in console.cookies


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil"])
def test_next_never_leaves_the_site(console, target):
    answer = log_in(console, next_page=target)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/"


def test_logout_ends_the_session_on_the_server(console):
    log_in(console)
    cookie = console.cookies["msgcenter_console"]
    page = console.get("/console/")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]
    assert console.post("/console/logout", data={"csrf_token": csrf}).status_code == 303
    # the old cookie, replayed, leads to the login page
    with httpx.Client(base_url=str(console.base_url), timeout=10) as replay:
        replay.cookies.set("msgcenter_console", cookie)
        answer = replay.get("/console/")
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/console/login")


def test_a_forged_cookie_is_a_stranger(console):
    console.cookies.set("msgcenter_console", "a-token.forged.signature")
    answer = console.get("/console/events")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login?next=/console/events"


def test_an_idle_session_asks_for_the_password_again(db):
    add_operator(db, LOGIN, PASSWORD)
    settings = Settings(database_url=db.url, processing={"workflows_in_web_process": False})
    # below the setting's floor of a minute, which a test cannot wait for
    settings.security.console_idle_seconds = 1
    with (
        ThreadedServer(create_exec_app(settings, db)) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        log_in(client)
        assert client.get("/console/").status_code == 200
        stamped = {"cookie": f"msgcenter_console={client.cookies['msgcenter_console']}"}
        # the cookie as last stamped, idle past the delay (each answer would stamp it anew, so
        # the requests that wait do not keep it): waited for, not slept
        answer = wait_for(
            lambda: (
                (r := httpx.get(f"{url}/console/events", headers=stamped)).status_code == 303 and r
            ),
            timeout=15,
            interval=0.25,
            message="the session to idle out",
        )
        assert answer.headers["location"] == "/console/login?next=/console/events"
        login_page = httpx.get(f"{url}{answer.headers['location']}", cookies=answer.cookies)
        assert "your session was idle too long" in login_page.text


def test_the_api_documentation_link_and_login_page_work_offline(console):
    page = console.get("/console/login")
    assert page.status_code == 200
    scripts = re.findall(r'<script src="([^"]+)"', page.text)
    assert scripts and all(s.startswith("/console/static/") for s in scripts)
    for script in scripts:
        assert console.get(script).status_code == 200
    assert "<script>" not in page.text  # no inline script
