"""Deliverability (docs/channels.md): what a real execution instance sends to a real SMTP server —
DKIM that dkimpy verifies with its oversigned headers, RFC 8058 one-click unsubscription through
the instance's own signed endpoint, RFC 3834 and Feedback-ID headers, Message-IDs unique per
database — on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dkim
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from msgcenter.store.database import Database
from msgcenter.store.instance_info import INSTALLATION_TAG
from msgcenter.store.tables import instance_info, unsubscription
from tests.conftest import RunningServer, add_operator, start_exec_server, wait_for
from tests.processing import (
    ADMIN,
    all_final,
    delivery_logs,
    event_json,
    order_publication,
    publish,
    push_rest,
    relaying_server,
)

BASE = "https://t.shop.example"
CTX = {"client": {"firstname": "Ann"}, "order": {"id": "7"}}
SIGNED_TWICE = [b"from", b"to", b"subject", b"date", b"message-id", b"content-type"]


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def dns_for(key: rsa.RSAPrivateKey):  # type: ignore[no-untyped-def]
    """dkimpy's ``dnsfunc``: the TXT record of mc._domainkey.example.com."""
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def txt(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"mc._domainkey.example.com." else None

    return txt


@contextmanager
def sending_server(
    db: Database, smtp_port: int, key_file: Path, **smtp: Any
) -> Iterator[RunningServer]:
    """An execution instance that signs with DKIM and tracks on BASE, relaying to ``smtp_port``."""
    with relaying_server(
        db,
        smtp_port,
        instance_name="exec1",
        secret_key="a long deliverability secret",
        smtp={
            "dkim_selector": "mc",
            "dkim_domain": "example.com",
            "dkim_private_key_file": str(key_file),
            **smtp,
        },
        tracking={"base_url": BASE},
    ) as running:
        yield running


def write_key(path: Path, key: rsa.RSAPrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def send(server: RunningServer, smtp_server, address: str) -> tuple[int, Any]:  # type: ignore[no-untyped-def]
    (event_id,) = push_rest(
        server, {"type": "order_confirmation", "email": address, "ctx": CTX, "email_format": 2}
    )
    wait_for(lambda: all_final(server.db, [event_id]), message="the event to be final")
    return event_id, smtp_server.handler.to(address)


def installation_tag(db: Database) -> str:
    with db.read() as conn:
        return conn.execute(
            select(instance_info.c.value).where(instance_info.c.key == INSTALLATION_TAG)
        ).scalar_one()


def test_a_sent_message_is_signed_oversigned_and_unsubscribes_in_one_click(
    db, smtp_server, key, tmp_path
):
    spec = order_publication()
    spec["content"]["list_unsubscribe"] = (
        "mailto:unsubscribe@example.com?subject={{ event.email|urlencode }}"
    )
    with sending_server(db, smtp_server.port, write_key(tmp_path / "dkim.pem", key)) as server:
        publish(server, spec)
        event_id, (received,) = send(server, smtp_server, "ann@example.com")
        (log,) = delivery_logs(db, event_id)
        message = received.message

        # DKIM verifies, and the identity headers are named once more than they occur
        signature = dkim.DKIM(received.data)
        assert signature.verify(dnsfunc=dns_for(key))
        names = signature.include_headers
        for name in SIGNED_TWICE:
            assert names.count(name) == 2, name
        assert names.count(b"list-unsubscribe") == names.count(b"list-unsubscribe-post") == 2
        assert names.count(b"reply-to") == 2  # the sample template has one
        head = received.data.split(b"\r\n\r\n", 1)[0]
        assert max(len(line) for line in head.split(b"\r\n")) <= 78
        # a header added on the way breaks it
        assert not dkim.verify(
            b"Reply-To: eve@example.net\r\n" + received.data, dnsfunc=dns_for(key)
        )

        # the new headers
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["Feedback-ID"] == "order_confirmation_email:-:rt:exec1"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        one_click, mailto = re.findall(r"<([^>]*)>", message["List-Unsubscribe"])
        assert mailto == "mailto:unsubscribe@example.com?subject=ann%40example.com"
        assert one_click.startswith(f"{BASE}/u/{log['id']}/")

        # the Message-ID carries this database's random tag, drawn once
        tag = installation_tag(db)
        assert re.fullmatch(r"[a-z2-7]{16}", tag)
        assert message["Message-ID"] == f"<dl-{log['id']}.{tag}.exec1@example.com>"
        assert log["message_id"] == message["Message-ID"]

        # the one-click endpoint, reached at this server
        path = urlsplit(one_click).path
        url = server.url + path
        log_id, good = path.split("/")[2:]
        one_click_body = {"List-Unsubscribe": "One-Click"}
        for wrong in (
            url[:-2] + ("AA" if not url.endswith("AA") else "BB"),  # another signature
            url.replace(f"/u/{log_id}/", f"/u/{int(log_id) + 1}/"),  # another delivery log
            url.replace(f"/u/{log_id}/", "/u/x/"),
        ):
            assert httpx.post(wrong, data=one_click_body).status_code == 404, wrong
            assert httpx.get(wrong).status_code == 404, wrong
        assert httpx.post(url, data={"List-Unsubscribe": "Maybe"}).status_code == 400
        page = httpx.get(url)  # a person, or a link scanner: nothing changes
        assert page.status_code == 200 and 'method="post"' in page.text
        assert unsubscriptions(db) == []

        done = httpx.post(url, data=one_click_body)
        assert done.status_code == 200, done.text
        again = httpx.post(url, files={"List-Unsubscribe": (None, "One-Click")})  # multipart
        assert again.status_code == 200, again.text
        assert unsubscriptions(db) == [("ann@example.com", 0, "order_confirmation_email", "")]

        # that template's messages to that address are ignored from now on; others are sent
        later, delivered = send(server, smtp_server, "ANN@example.com")
        assert delivered == [] and len(smtp_server.handler.to("ann@example.com")) == 1
        stored = event_json(server, later)
        assert stored["status"] == "ignored", stored
        assert "unsubscribed" in stored["history"][-1]["reason"]
        (held,) = delivery_logs(db, later)
        assert held["failure_type"] == "quarantined" and "unsubscribed" in held["failure_reason"]
        _, (other,) = send(server, smtp_server, "bob@example.com")
        assert other.message["Message-ID"].endswith(f".{tag}.exec1@example.com>")


def unsubscriptions(db: Database) -> list[tuple[str, int, str, str]]:
    with db.read() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                select(
                    unsubscription.c.address,
                    unsubscription.c.channel,
                    unsubscription.c.template,
                    unsubscription.c.folder,
                )
            )
        ]


def test_the_templates_own_https_unsubscribe_link_is_kept_and_never_tracked(
    db, smtp_server, key, tmp_path
):
    target = "https://shop.example/unsub?e={{ event.email|urlencode }}"
    spec = order_publication()
    spec["content"].update(
        tracking=True,
        list_unsubscribe=target,
        html=(
            f'<html><body><a href="{target}">unsubscribe</a> '
            '<a href="https://shop.example/orders/{{ ctx.order.id }}">order</a></body></html>'
        ),
    )
    with sending_server(db, smtp_server.port, write_key(tmp_path / "dkim.pem", key)) as server:
        publish(server, spec)
        _, (received,) = send(server, smtp_server, "ann@example.com")
        message = received.message
        rendered = "https://shop.example/unsub?e=ann%40example.com"
        # one https URI only (RFC 8058): the template's, not the instance's
        assert message["List-Unsubscribe"] == f"<{rendered}>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        html = message.get_body(("html",)).get_content()
        unsubscribe, order = re.findall(r'href="([^"]*)"', html)
        assert unsubscribe == rendered
        assert order.startswith(f"{BASE}/t/c/")
        assert dkim.verify(received.data, dnsfunc=dns_for(key))


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("http://shop.example/unsub", 400),
        ("{{ ctx.unsubscribe_url }}", 400),
        ("https://shop.example/u, https://other.example/u", 400),
        ("https://shop.example/u?e={{ event.email|urlencode }}, mailto:u@example.com", 201),
    ],
)
def test_publication_refuses_a_list_unsubscribe_that_is_not_https_or_mailto(
    exec_server, value, status
):
    add_operator(exec_server.db, *ADMIN)
    spec = order_publication()
    spec["content"]["list_unsubscribe"] = value
    answer = httpx.put(f"{exec_server.url}/api/v1/admin/publications", json=spec, auth=ADMIN)
    assert answer.status_code == status, answer.text
    if status == 400:
        assert "list_unsubscribe" in answer.text


def test_publication_refuses_a_from_domain_that_dmarc_cannot_align(db, key, tmp_path):
    add_operator(db, *ADMIN)
    key_file = write_key(tmp_path / "dkim.pem", key)
    threaded, server = start_exec_server(
        db,
        smtp={
            "bounce_domain": "bounces.example.net",
            "dmarc_alignment": "refuse",
            "dkim_selector": "mc",
            "dkim_domain": "example.com",
            "dkim_private_key_file": str(key_file),
        },
    )
    with threaded:
        url = f"{server.url}/api/v1/admin/publications"
        aligned = order_publication()  # shop@example.com, signed for example.com
        assert httpx.put(url, json=aligned, auth=ADMIN).status_code == 201
        other = order_publication(template="brand_b")
        other["content"]["sender"] = "Brand B <hello@brand-b.example>"
        answer = httpx.put(url, json=other, auth=ADMIN)
        assert answer.status_code == 400, answer.text
        assert "brand-b.example" in answer.text and "DMARC" in answer.text
