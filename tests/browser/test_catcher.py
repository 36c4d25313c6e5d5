"""The SMTP catcher in a browser: mail appears in the open list as it arrives (htmx polling under
the page's Content-Security-Policy), is searched, read in its sandboxed frame, and deleted."""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from playwright.sync_api import expect

from msgcenter.catcher import web as catcher_web
from msgcenter.catcher.server import SmtpCatcher
from msgcenter.channels.email import build_message
from msgcenter.web.landing import add_landing_routes
from tests.conftest import ThreadedServer, free_port

HOSTILE_HTML = "<p>Hi</p><script>document.title = 'pwned'</script><img src=x onerror=alert(1)>"


@pytest.fixture
def catcher(tmp_path: Path) -> Iterator[SmtpCatcher]:
    running = SmtpCatcher("127.0.0.1", free_port(), directory=tmp_path)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def catcher_url(catcher: SmtpCatcher) -> Iterator[str]:
    """The catcher's pages, served as ``msgcenter up`` serves them (htmx from the package)."""
    app = FastAPI(docs_url=None, redoc_url=None)
    add_landing_routes(app)
    app.state.catcher = catcher
    app.include_router(catcher_web.router, prefix="/catcher")
    with ThreadedServer(app) as url:
        yield f"{url}/catcher/"


def send(catcher: SmtpCatcher, subject: str, to: str, html: str = "<p>Hello</p>") -> None:
    message = build_message(
        sender="Shop <shop@example.com>",
        recipient=to,
        subject=subject,
        message_id=f"<{abs(hash(subject))}@example.com>",
        text="Hello",
        html=html,
    )
    with smtplib.SMTP(catcher.host, catcher.port) as client:
        client.sendmail("bounce@example.com", [to], message)


def test_mail_arrives_live_is_searched_read_and_deleted(journey, catcher, catcher_url):
    page = journey.page
    journey.go(catcher_url)
    expect(page.get_by_text("No message caught yet.")).to_be_visible()
    rows = page.locator("#messages tr[data-id]")

    # the open page shows new mail by itself, newest first, highlighted as it arrives
    send(catcher, "Order 1001 confirmed", "ann@example.com")
    expect(rows).to_have_count(1)
    send(catcher, "Password reset", "bob@example.com", html="<p>Hi</p>")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("Password reset")
    expect(rows.first).to_have_class("new")
    journey.shot("mail arrived")

    # search as one types; the address bar follows
    page.get_by_role("searchbox").fill("ANN@")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Order 1001 confirmed")
    expect(page).to_have_url(re.compile(r"/catcher/\?q=ANN%40$"))
    page.get_by_role("searchbox").fill("")
    expect(rows).to_have_count(2)

    page.get_by_role("link", name="Password reset").click()
    expect(page.frame_locator("iframe").locator("p")).to_have_text("Hi")
    journey.shot("a message")

    # delete it (after confirming), then everything
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(catcher_url)
    expect(rows).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete all").click()
    expect(page.get_by_text("No message caught yet.")).to_be_visible()
    assert catcher.summaries() == []


def test_the_html_part_runs_no_script(browser, catcher, catcher_url):
    send(catcher, "Password reset", "bob@example.com", html=HOSTILE_HTML)
    (message,) = catcher.summaries()
    # a context of its own: the browser reports the scripts it blocked, which a journey
    # would count as errors of the page
    context = browser.new_context()
    try:
        page = context.new_page()
        said: list[str] = []
        page.on("console", lambda line: said.append(line.text))
        page.on("dialog", lambda dialog: said.append(f"dialog {dialog.message}"))
        page.goto(f"{catcher_url}messages/{message.id}")
        expect(page.frame_locator("iframe").locator("p")).to_have_text("Hi")
        expect(page.frame_locator("iframe").locator("img")).to_have_count(1)
        assert page.title() == "Password reset · msgcenter catcher"
        assert page.frames[1].evaluate("document.title") == ""  # the e-mail's script never ran
        assert any("sandboxed" in line and "allow-scripts" in line for line in said), said
        assert not [line for line in said if line.startswith("dialog")]
    finally:
        context.close()
