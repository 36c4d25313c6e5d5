"""The console's session at the HTTP level, on both stores: the cookie's attributes, the security
headers, the login form's nonce, no open redirect, logout and idle expiry end the session."""

from __future__ import annotations

import re

import httpx
import pytest
from pydantic import SecretStr

from msgcenter.settings import Settings
from msgcenter.web.exec_app import create_exec_app
from tests.conftest import ThreadedServer, add_operator, wait_for

LOGIN, PASSWORD = "mc", "secret"
#: the session cookie of an execution instance named "exec" (the default name)
SESSION = "msgcenter_execution_exec"


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
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(f"{SESSION}="))
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
    assert SESSION not in console.cookies


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil"])
def test_next_never_leaves_the_site(console, target):
    answer = log_in(console, next_page=target)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/"


def test_logout_ends_the_session_on_the_server(console):
    log_in(console)
    cookie = console.cookies[SESSION]
    page = console.get("/console/")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]
    assert console.post("/console/logout", data={"csrf_token": csrf}).status_code == 303
    # the old cookie, replayed, leads to the login page
    with httpx.Client(base_url=str(console.base_url), timeout=10) as replay:
        replay.cookies.set(SESSION, cookie)
        answer = replay.get("/console/")
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/console/login")


def test_two_instances_on_one_host_keep_their_own_sessions(db, tmp_path):
    """Browsers keep cookies per host, not port: the consoles of ``msgcenter up`` (both on
    loopback) must not log each other out."""
    add_operator(db, LOGIN, PASSWORD)
    first = Settings(database_url=db.url, processing={"workflows_in_web_process": False})
    # its own secret too: a cookie of one is no session of the other
    second = first.model_copy(
        update={"instance_name": "exec2", "secret_key": SecretStr("another-secret-" * 3)}
    )
    with (
        ThreadedServer(create_exec_app(first, db)) as one,
        ThreadedServer(create_exec_app(second, db)) as two,
        httpx.Client(timeout=10) as browser,
    ):
        for url in (one, two):
            form = browser.get(f"{url}/console/login")
            nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)[1]
            answer = browser.post(
                f"{url}/console/login",
                data={"login": LOGIN, "password": PASSWORD, "nonce": nonce},
            )
            assert answer.status_code == 303, answer.text
        # one cookie jar for both, as a browser has for 127.0.0.1
        assert browser.get(f"{one}/console/").status_code == 200
        assert browser.get(f"{two}/console/").status_code == 200
        assert {SESSION, "msgcenter_execution_exec2"} <= set(browser.cookies.keys())


def test_a_forged_cookie_is_a_stranger(console):
    console.cookies.set(SESSION, "a-token.forged.signature")
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
        stamped = {"cookie": f"{SESSION}={client.cookies[SESSION]}"}
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
