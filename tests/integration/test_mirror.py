"""Mirror pages and tracked text links (SPEC §3.7), through a real execution instance on SQLite
and PostgreSQL: a tracked email sent to a real SMTP server carries a signed mirror-page URL
that shows the message again, and the web addresses of its text part are tracked too."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete, select

from msgcenter.store.tables import delivery_log, event, tracking_log
from tests.conftest import RunningServer, wait_for
from tests.processing import all_final, order_publication, publish, push_rest
from tests.tracking import TRACKING_BASE, tracked_publication, tracking_server

HTML = (
    "<html><body><p>Hello {{ ctx.client.firstname }}</p>"
    '<p><a href="{{ mirror_url }}">view it in your browser</a></p>'
    '<a href="https://shop.example/orders/{{ ctx.order.id }}">order</a>'
    "<script>alert(1)</script></body></html>"
)
TEXT = (
    "Hello {{ ctx.client.firstname }},\n"
    "follow your order at https://shop.example/orders/{{ ctx.order.id }}.\n"
    "Seen badly? {{ mirror_url }}\n"
)
CTX = {"client": {"firstname": "Ann"}, "order": {"id": "7"}}


def send(server: RunningServer, smtp_server, spec) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """Publish ``spec``, send one event to ann@example.com; its HTML and text parts."""
    publish(server, spec)
    (event_id,) = push_rest(
        server, {"type": "order_confirmation", "email": "ann@example.com", "ctx": CTX}
    )
    wait_for(lambda: all_final(server.db, [event_id]), message="the event to be sent")
    (received,) = smtp_server.handler.to("ann@example.com")
    message = received.message
    return (
        message.get_body(("html",)).get_content(),
        message.get_body(("plain",)).get_content().replace("\r\n", "\n"),
    )


def served(server: RunningServer, url: str) -> str:
    """``url`` (on TRACKING_BASE) as ``server`` serves it."""
    assert url.startswith(TRACKING_BASE + "/"), url
    parts = urlsplit(url)
    return f"{server.url}{parts.path}" + (f"?{parts.query}" if parts.query else "")


def test_a_tracked_email_shows_its_mirror_page_and_tracks_its_text_links(db, smtp_server):
    with tracking_server(db, smtp_server.port) as server:
        html, text = send(server, smtp_server, mirrored_publication())

        (mirror,) = re.findall(r'href="([^"]*/m/[^"]*)"', html)
        assert re.fullmatch(re.escape(TRACKING_BASE) + r"/m/\d+/[\w-]+", mirror), mirror
        assert text.endswith(f"Seen badly? {mirror}")  # the mirror link is never click-tracked

        # the text part's web address goes through the click tracker; its full stop stays out
        (click,) = re.findall(r"follow your order at (\S+)", text)
        assert click.startswith(TRACKING_BASE + "/t/c/") and click.endswith(".")
        followed = httpx.get(served(server, click.rstrip(".")))
        assert followed.status_code == 302
        assert followed.headers["location"] == "https://shop.example/orders/7"
        with db.read() as conn:
            assert conn.execute(select(tracking_log.c.kind, tracking_log.c.url)).all() == [
                ("click", "https://shop.example/orders/7")
            ]

        page = httpx.get(served(server, mirror))
        assert page.status_code == 200, page.text
        assert "<p>Hello Ann</p>" in page.text
        assert 'href="https://shop.example/orders/7"' in page.text
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src" not in policy
        assert page.headers["cache-control"] == "private, no-store"


def test_altered_mirror_links_and_purged_messages_answer_404(db, smtp_server):
    with tracking_server(db, smtp_server.port) as server:
        html, _ = send(server, smtp_server, mirrored_publication())
        (mirror,) = re.findall(r'href="([^"]*/m/[^"]*)"', html)
        path = urlsplit(mirror).path
        _, _, log_id, signature = path.split("/")
        altered = [
            f"/m/{int(log_id) + 1}/{signature}",
            f"/m/{log_id}/{signature[:-1]}A" if not signature.endswith("A") else f"/m/{log_id}/B",
            f"/m/{log_id}/",
            f"/m/x{log_id}/{signature}",
            f"/m/{'9' * 40}/{signature}",
        ]
        for url in altered:
            answer = httpx.get(server.url + url)
            assert answer.status_code == 404, (url, answer.text)
            assert "Hello" not in answer.text

        assert httpx.get(server.url + path).status_code == 200
        with db.write() as conn:
            conn.execute(delete(event))
        gone = httpx.get(server.url + path)
        assert gone.status_code == 404 and "no longer kept" in gone.text
        with db.read() as conn:
            assert conn.execute(select(delivery_log.c.id)).all()  # only its event went


def test_untracked_templates_have_no_mirror_url(db, smtp_server):
    spec = order_publication()
    spec["content"].update(html=HTML, text=TEXT)
    with tracking_server(db, smtp_server.port) as server:
        html, text = send(server, smtp_server, spec)
    assert '<a href="">view it in your browser</a>' in html
    assert text.rstrip(" ").endswith("Seen badly?")
    assert "follow your order at https://shop.example/orders/7.\n" in text


def mirrored_publication() -> dict[str, object]:
    """The tracked sample publication, showing its mirror URL in both parts."""
    spec = tracked_publication()
    spec["content"].update(html=HTML, text=TEXT)
    return spec
