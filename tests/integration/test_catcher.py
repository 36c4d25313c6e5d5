"""The SMTP catcher of ``msgcenter up``: mail sent with smtplib and aiosmtplib, read back over real
HTTP; kept in its data directory across restarts, bounded; searched, refreshed, deleted."""

from __future__ import annotations

import asyncio
import smtplib
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path

import aiosmtplib
import httpx
import pytest
from fastapi import FastAPI
from lxml import html as lxml_html

from msgcenter.catcher import web as catcher_web
from msgcenter.catcher.mailbox import FILE_NAME
from msgcenter.catcher.server import SmtpCatcher
from msgcenter.channels.email import Attachment, build_message
from tests.conftest import ThreadedServer, free_port

HOSTILE_SUBJECT = 'Hello <script>alert("subject")</script> & co'
HOSTILE_NAME = '"<img src=x onerror=alert(1)>" <evil@example.com>'
HOSTILE_TO = '"<svg onload=alert(2)>" <anne@example.org>'
HOSTILE_HTML = '<p onclick="x()">Bonjour "Anne"</p><script>alert(document.cookie)</script>'
HTMX = "/console/static/vendor/htmx/htmx.min.js"


@pytest.fixture
def catcher() -> Iterator[SmtpCatcher]:
    running = SmtpCatcher("127.0.0.1", free_port(), max_messages=3)
    running.start()
    yield running
    running.stop()


def serve(catcher: SmtpCatcher) -> ThreadedServer:
    app = FastAPI()
    app.state.catcher = catcher
    app.include_router(catcher_web.router, prefix="/catcher")
    return ThreadedServer(app)


@pytest.fixture
def web(catcher: SmtpCatcher) -> Iterator[httpx.Client]:
    with serve(catcher) as url, httpx.Client(base_url=f"{url}/catcher") as client:
        yield client


def send(
    catcher: SmtpCatcher,
    subject: str = "Votre commande n°1001",
    *,
    sender: str = "Boutique Éclair <shop@example.com>",
    to: str = "anne@example.org",
    **fields: object,
) -> None:
    message = build_message(
        sender=sender,
        recipient=to,
        subject=subject,
        message_id="<dl-1001@example.com>",
        **{"text": "Bonjour Anne", "html": "<p>Bonjour <b>Anne</b></p>", **fields},
    )
    with smtplib.SMTP(catcher.host, catcher.port) as client:
        client.sendmail("bounce+dl-1001-00000000@example.com", [parseaddr(to)[1]], message)


def subjects(web: httpx.Client, **params: str) -> list[str]:
    return [m["subject"] for m in web.get("/api/messages", params=params).json()]


def document(response: httpx.Response) -> lxml_html.HtmlElement:
    assert response.status_code == 200, response.text
    return lxml_html.fromstring(response.text)


def assert_no_script_but_htmx(page: lxml_html.HtmlElement) -> None:
    scripts = page.xpath("//script")
    assert [s.get("src") for s in scripts] == [HTMX]
    assert all(not (s.text or "").strip() for s in scripts)
    handlers = [a for e in page.iter() for a in getattr(e, "attrib", {}) if a.startswith("on")]
    assert handlers == []


# -- reading -------------------------------------------------------------------------------


def test_a_caught_message_reads_back_as_json(catcher, web):
    send(catcher, attachments=[Attachment("facture.pdf", "application/pdf", b"%PDF" * 10)])
    [summary] = web.get("/api/messages").json()
    assert summary["subject"] == "Votre commande n°1001"
    assert summary["from"] == "Boutique Éclair <shop@example.com>"
    assert summary["mail_from"] == "bounce+dl-1001-00000000@example.com"
    assert summary["rcpt_tos"] == ["anne@example.org"]
    assert summary["kind"] == "email"
    detail = web.get(f"/api/messages/{summary['id']}").json()
    assert detail["text"].strip() == "Bonjour Anne"
    assert detail["html"].strip() == "<p>Bonjour <b>Anne</b></p>"
    assert ["Message-ID", "<dl-1001@example.com>"] in detail["headers"]
    assert detail["attachments"] == [
        {"filename": "facture.pdf", "content_type": "application/pdf", "size": 40}
    ]


def test_an_attachment_downloads_and_is_never_rendered(catcher, web):
    send(catcher, attachments=[Attachment("<i>x.html", "text/html", b"<script>1</script>")])
    [summary] = web.get("/api/messages").json()
    page = document(web.get(f"/messages/{summary['id']}"))
    [link] = page.xpath("//a[contains(@href, '/attachments/')]")
    assert link.text == "<i>x.html"
    download = web.get(link.get("href"))
    assert download.content == b"<script>1</script>"
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-disposition"] == (
        "attachment; filename=\"_i_x.html\"; filename*=UTF-8''%3Ci%3Ex.html"
    )
    assert "sandbox" in download.headers["content-security-policy"]
    assert web.get(f"/messages/{summary['id']}/attachments/1").status_code == 404


def test_the_raw_message_is_plain_text(catcher, web):
    send(catcher)
    [summary] = web.get("/api/messages").json()
    raw = web.get(f"/messages/{summary['id']}/raw")
    assert raw.headers["content-type"].startswith("text/plain")
    assert raw.headers["x-content-type-options"] == "nosniff"
    assert b"Message-ID: <dl-1001@example.com>" in raw.content


def test_a_message_that_is_not_mime_is_still_caught(catcher, web):
    with smtplib.SMTP(catcher.host, catcher.port) as client:
        client.sendmail("a@example.com", ["b@example.com"], b"just some text\r\n")
    [summary] = web.get("/api/messages").json()
    assert web.get(f"/api/messages/{summary['id']}").json()["text"].strip() == "just some text"


def test_mail_sent_with_aiosmtplib_is_caught(catcher, web):
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", "async"
    message.set_content("hello")
    # in a thread of its own: a test run may already have an event loop in this one
    with ThreadPoolExecutor(1) as pool:
        pool.submit(
            asyncio.run, aiosmtplib.send(message, hostname=catcher.host, port=catcher.port)
        ).result()
    assert subjects(web) == ["async"]


def test_the_empty_list_says_so(web):
    assert "No message caught yet." in web.get("/").text


# -- escaping ------------------------------------------------------------------------------


def test_the_list_page_escapes_what_it_shows(catcher, web):
    send(catcher, subject=HOSTILE_SUBJECT, sender=HOSTILE_NAME, to=HOSTILE_TO)
    response = web.get("/")
    assert "<script>alert" not in response.text
    assert "<img" not in response.text and "<svg" not in response.text
    page = document(response)
    assert_no_script_but_htmx(page)
    [row] = page.xpath("//div[@id='messages']//tbody/tr")
    cells = [cell.text_content() for cell in row.xpath("td")]
    assert cells[1] == '"<img src=x onerror=alert(1)>" <evil@example.com>'
    assert cells[2] == '"<svg onload=alert(2)>" <anne@example.org>'
    assert cells[3] == HOSTILE_SUBJECT


def test_the_message_page_sandboxes_the_html_part(catcher, web):
    send(catcher, subject=HOSTILE_SUBJECT, html=HOSTILE_HTML, text="Bonjour <Anne>")
    [summary] = web.get("/api/messages").json()
    response = web.get(f"/messages/{summary['id']}")
    assert "<script>alert" not in response.text
    page = document(response)
    assert_no_script_but_htmx(page)
    [frame] = page.xpath("//iframe")
    assert frame.get("sandbox") == ""  # every restriction: no scripts, forms, same origin
    assert frame.get("srcdoc").strip() == HOSTILE_HTML
    assert page.xpath("//h1")[-1].text_content() == HOSTILE_SUBJECT
    assert "<pre>Bonjour &lt;Anne&gt;" in response.text
    assert "<th>Envelope to</th><td>anne@example.org</td>" in response.text


def test_the_pages_allow_no_inline_script(catcher, web):
    send(catcher)
    [summary] = web.get("/api/messages").json()
    for path in ("/", "/list", f"/messages/{summary['id']}", "/messages/999"):
        policy = web.get(path).headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["default-src"] == "'none'"
        assert directives["script-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'"
    page = document(web.get("/"))
    config = page.xpath("//meta[@name='htmx-config']/@content")[0]
    assert '"allowEval": false' in config and '"includeIndicatorStyles": false' in config


# -- keeping -------------------------------------------------------------------------------


def test_only_the_last_messages_are_kept_newest_first(catcher, web):
    for number in range(1, 6):
        send(catcher, subject=f"message {number}")
    assert subjects(web) == ["message 5", "message 4", "message 3"]
    assert web.get("/api/messages/1").status_code == 404
    assert web.get("/messages/1").status_code == 404


def test_the_bytes_kept_are_bounded_too(tmp_path):
    catcher = SmtpCatcher("127.0.0.1", free_port(), directory=tmp_path, max_bytes=3_000)
    catcher.start()
    try:
        for number in range(1, 5):
            send(catcher, subject=f"message {number}", text="x" * 800)
        kept = catcher.summaries()
        assert [m.subject for m in kept] == ["message 4", "message 3"]
        assert sum(m.size for m in kept) <= 3_000
        # one message larger than the bound is kept alone: the newest always is
        send(catcher, subject="big", text="y" * 5_000)
        assert [m.subject for m in catcher.summaries()] == ["big"]
    finally:
        catcher.stop()


def test_caught_mail_survives_a_restart_in_order_and_bounded(tmp_path):
    first = SmtpCatcher("127.0.0.1", free_port(), directory=tmp_path)
    first.start()
    for number in range(1, 5):
        send(first, subject=f"message {number}")
    before = first.summaries()
    first.stop()
    assert (tmp_path / FILE_NAME).is_file()

    again = SmtpCatcher("127.0.0.1", free_port(), directory=tmp_path)
    again.start()
    try:
        assert again.summaries() == before
        assert again.get(before[0].id).text.strip() == "Bonjour Anne"
        send(again, subject="after the restart")
        newest = again.summaries()[0]
        assert (newest.subject, newest.id) == ("after the restart", before[0].id + 1)
    finally:
        again.stop()

    # a lower bound applies at once, the oldest dropped first
    smaller = SmtpCatcher("127.0.0.1", free_port(), max_messages=2, directory=tmp_path)
    try:
        assert [m.subject for m in smaller.summaries()] == ["after the restart", "message 4"]
    finally:
        smaller.mailbox.close()


def test_an_unreadable_mailbox_is_moved_aside(tmp_path):
    (tmp_path / FILE_NAME).write_bytes(b"this is not a database" * 100)
    catcher = SmtpCatcher("127.0.0.1", free_port(), directory=tmp_path)
    try:
        assert catcher.summaries() == []
        [aside] = tmp_path.glob(f"{FILE_NAME}.unreadable-*")
        assert aside.read_bytes().startswith(b"this is not a database")
    finally:
        catcher.mailbox.close()
    with sqlite3.connect(tmp_path / FILE_NAME) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)


# -- searching -----------------------------------------------------------------------------


@pytest.fixture
def three(catcher: SmtpCatcher) -> SmtpCatcher:
    send(catcher, "Votre commande n°1001", to="anne@example.org")
    send(catcher, "Mot de passe oublié", sender="Sécurité <security@example.com>", to="bob@x.org")
    send(catcher, "Commande expédiée", to="Cléo <cleo@example.org>")
    return catcher


def test_search_by_address_or_subject_ignoring_case(three, web):
    assert subjects(web, q="COMMANDE") == ["Commande expédiée", "Votre commande n°1001"]
    assert subjects(web, q="bob@x.org") == ["Mot de passe oublié"]
    assert subjects(web, q="sécurité") == ["Mot de passe oublié"]  # the From display name
    assert subjects(web, q="bounce+dl-1001") == subjects(web)  # the envelope sender
    assert subjects(web, q="commande cléo") == ["Commande expédiée"]  # every word
    assert subjects(web, q="100%") == []
    assert subjects(web, limit="1") == ["Commande expédiée"]


def test_the_list_page_searches_too(three, web):
    page = document(web.get("/", params={"q": "anne"}))
    rows = page.xpath("//div[@id='messages']//tbody/tr")
    assert [r.xpath("td")[3].text_content() for r in rows] == ["Votre commande n°1001"]
    assert page.xpath("//input[@name='q']/@value") == ["anne"]
    nothing = document(web.get("/", params={"q": "<nobody>"}))
    assert "No message matches “<nobody>”." in nothing.text_content()


# -- refreshing ----------------------------------------------------------------------------


def test_the_list_refreshes_itself_only_when_it_changed(catcher, web):
    send(catcher, "first")
    page = document(web.get("/"))
    [messages] = page.xpath("//div[@id='messages']")
    assert messages.get("hx-trigger") == "every 2s" and messages.get("hx-swap") == "outerHTML"
    poll = messages.get("hx-get")
    assert "/catcher/list?" in poll and "v=" in poll
    # nothing new: nothing to swap
    assert web.get(poll).status_code == 204
    send(catcher, "second")
    fresh = web.get(poll)
    assert fresh.status_code == 200
    fragment = lxml_html.fromstring(fresh.text)
    assert fragment.get("id") == "messages"
    rows = fragment.xpath("//tbody/tr")
    assert [r.xpath("td")[3].text_content() for r in rows] == ["second", "first"]
    assert [r.get("class") for r in rows] == ["new", None]  # what arrived since, highlighted
    assert web.get(fragment.get("hx-get")).status_code == 204


def test_typing_in_the_search_box_updates_the_list_and_the_address(three, web):
    page = document(web.get("/"))
    [box] = page.xpath("//input[@name='q']")
    assert "input changed delay:300ms" in box.get("hx-trigger")
    assert box.get("hx-target") == "#messages"
    answer = web.get(box.get("hx-get"), params={"q": "bob"}, headers={"HX-Trigger-Name": "q"})
    fragment = lxml_html.fromstring(answer.text)
    assert len(fragment.xpath("//tbody/tr")) == 1
    assert answer.headers["hx-push-url"].endswith("/catcher/?q=bob")
    assert "q=bob" in fragment.get("hx-get")  # and the polling keeps the search


# -- deleting ------------------------------------------------------------------------------


def test_delete_one_or_all_from_the_pages(three, web):
    first, second, third = web.get("/api/messages").json()
    by_htmx = web.post(f"/messages/{first['id']}/delete", headers={"HX-Request": "true"})
    assert by_htmx.status_code == 200 and by_htmx.headers["hx-redirect"].endswith("/catcher/")
    origin = str(web.base_url).removesuffix("/catcher/").removesuffix("/catcher")
    by_form = web.post(
        f"/messages/{second['id']}/delete", params={"q": "x"}, headers={"Origin": origin}
    )
    assert by_form.status_code == 303
    assert by_form.headers["location"].endswith("/catcher/?q=x")
    assert [m["id"] for m in web.get("/api/messages").json()] == [third["id"]]
    send(three, "another")
    everything = web.post("/delete-all", headers={"Sec-Fetch-Site": "same-origin"})
    assert everything.status_code == 303
    assert web.get("/api/messages").json() == []


def test_delete_over_the_json_api(three, web):
    first, *_ = web.get("/api/messages").json()
    assert web.delete(f"/api/messages/{first['id']}").status_code == 204
    assert web.delete(f"/api/messages/{first['id']}").status_code == 404
    assert web.delete("/api/messages").json() == {"deleted": 2}
    assert web.get("/api/messages").json() == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_a_cross_site_post_deletes_nothing(three, web, headers):
    [newest, *_] = web.get("/api/messages").json()
    for path in (f"/messages/{newest['id']}/delete", "/delete-all"):
        refused = web.post(path, headers=headers)
        assert refused.status_code == 403
        assert "nothing was deleted" in refused.text
    assert len(web.get("/api/messages").json()) == 3


def test_the_catcher_in_a_data_directory_over_real_http(tmp_path):
    catcher = SmtpCatcher("127.0.0.1", free_port(), directory=tmp_path)
    catcher.start()
    try:
        send(catcher, "kept")
        with serve(catcher) as url:
            page = httpx.get(f"{url}/catcher/")
        assert str(Path(tmp_path / FILE_NAME)) in page.text
    finally:
        catcher.stop()
