"""The SMTP catcher of ``msgcenter up``: mail sent with smtplib, read back over real HTTP."""

from __future__ import annotations

import smtplib
from html import escape

import httpx
import pytest
from fastapi import FastAPI

from msgcenter.catcher import web as catcher_web
from msgcenter.catcher.server import SmtpCatcher
from msgcenter.channels.email import Attachment, build_message
from tests.conftest import ThreadedServer, free_port

HOSTILE_SUBJECT = 'Hello <script>alert("subject")</script> & co'
HOSTILE_HTML = '<p onclick="x()">Bonjour "Anne"</p><script>alert(document.cookie)</script>'


@pytest.fixture
def catcher():
    running = SmtpCatcher("127.0.0.1", free_port(), max_messages=3)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def web(catcher):
    app = FastAPI()
    app.state.catcher = catcher
    app.include_router(catcher_web.router, prefix="/catcher")
    with ThreadedServer(app) as url, httpx.Client(base_url=f"{url}/catcher") as client:
        yield client


def send(catcher: SmtpCatcher, subject: str = "Votre commande n°1001", **fields: object) -> None:
    message = build_message(
        sender="Boutique Éclair <shop@example.com>",
        recipient="anne@example.org",
        subject=subject,
        message_id="<dl-1001@example.com>",
        **{"text": "Bonjour Anne", "html": "<p>Bonjour <b>Anne</b></p>", **fields},
    )
    with smtplib.SMTP(catcher.host, catcher.port) as client:
        client.sendmail("bounce+dl-1001-00000000@example.com", ["anne@example.org"], message)


def test_a_caught_message_reads_back_as_json(catcher, web):
    send(catcher, attachments=[Attachment("facture.pdf", "application/pdf", b"%PDF" * 10)])
    [summary] = web.get("/api/messages").json()
    assert summary["subject"] == "Votre commande n°1001"
    assert summary["from"] == "Boutique Éclair <shop@example.com>"
    assert summary["mail_from"] == "bounce+dl-1001-00000000@example.com"
    assert summary["rcpt_tos"] == ["anne@example.org"]
    detail = web.get(f"/api/messages/{summary['id']}").json()
    assert detail["text"].strip() == "Bonjour Anne"
    assert detail["html"].strip() == "<p>Bonjour <b>Anne</b></p>"
    assert ["Message-ID", "<dl-1001@example.com>"] in detail["headers"]
    assert detail["attachments"] == [
        {"filename": "facture.pdf", "content_type": "application/pdf", "size": 40}
    ]


def test_the_list_page_escapes_what_it_shows(catcher, web):
    send(catcher, subject=HOSTILE_SUBJECT)
    page = web.get("/")
    assert page.status_code == 200
    assert "<script>" not in page.text
    assert escape(HOSTILE_SUBJECT) in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none' applies
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_the_message_page_sandboxes_the_html_part(catcher, web):
    send(catcher, subject=HOSTILE_SUBJECT, html=HOSTILE_HTML, text="Bonjour <Anne>")
    [summary] = web.get("/api/messages").json()
    page = web.get(f"/messages/{summary['id']}").text
    assert "<script>" not in page
    assert f'<iframe sandbox srcdoc="{escape(HOSTILE_HTML)}"></iframe>' in page
    assert "<pre>Bonjour &lt;Anne&gt;</pre>" in page
    assert "<th>Envelope to</th><td>anne@example.org</td>" in page


def test_the_raw_message_is_plain_text(catcher, web):
    send(catcher)
    [summary] = web.get("/api/messages").json()
    raw = web.get(f"/messages/{summary['id']}/raw")
    assert raw.headers["content-type"].startswith("text/plain")
    assert b"Message-ID: <dl-1001@example.com>" in raw.content


def test_only_the_last_messages_are_kept_newest_first(catcher, web):
    for number in range(1, 6):
        send(catcher, subject=f"message {number}")
    assert [m["subject"] for m in web.get("/api/messages").json()] == [
        "message 5",
        "message 4",
        "message 3",
    ]
    assert web.get("/api/messages/1").status_code == 404
    assert web.get("/messages/1").status_code == 404


def test_a_message_that_is_not_mime_is_still_caught(catcher, web):
    with smtplib.SMTP(catcher.host, catcher.port) as client:
        client.sendmail("a@example.com", ["b@example.com"], b"just some text\r\n")
    [summary] = web.get("/api/messages").json()
    assert web.get(f"/api/messages/{summary['id']}").json()["text"].strip() == "just some text"


def test_the_empty_list_says_so(web):
    assert "No message caught yet." in web.get("/").text
