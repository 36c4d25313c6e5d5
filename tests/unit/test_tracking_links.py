"""Tracking links (SPEC §3.7): rewriting of a tracked email's HTML, and the signatures that guard it."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from structlog.testing import capture_logs

from msgcenter.settings import Settings
from msgcenter.tracking import LinkSigner, TrackingKind
from msgcenter.workflows.worker import build_senders

SIGNER = LinkSigner("a secret", "https://t.shop.example/")


def links(html: str) -> list[str]:
    return [unescape(u) for u in re.findall(r"""href=["']([^"']*)["']""", html, re.I)]


def test_web_links_are_rewritten_to_signed_redirects_and_others_kept():
    html = (
        '<html><body><a href="https://shop.example/o?id=7&amp;lang=fr">order</a> '
        "<A class='btn' HREF='http://shop.example/help'>help</A> "
        '<a href="mailto:care@example.com">mail</a> <a href="#top">top</a> '
        '<a name="x">no href</a></body></html>'
    )

    tracked = SIGNER.instrument(html, 42)

    order, helps, mail, top = links(tracked)
    assert (mail, top) == ("mailto:care@example.com", "#top")
    for url, target in (
        (order, "https://shop.example/o?id=7&lang=fr"),
        (helps, "http://shop.example/help"),
    ):
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("https", "t.shop.example")
        kind, log_id, signature = parts.path.split("/")[2:]
        assert (kind, log_id) == ("c", "42")
        assert parse_qs(parts.query)["u"] == [target]
        assert SIGNER.verify(TrackingKind.CLICK, 42, signature, target)
    assert "class='btn'" in tracked and ">order</a>" in tracked


def test_the_open_pixel_goes_before_the_last_body_end_or_at_the_end():
    tracked = SIGNER.instrument("<html><body><p>hi</p></BODY></html>", 7)
    pixel = SIGNER.open_url(7)
    assert tracked.index(pixel) < tracked.index("</BODY>")
    assert tracked.endswith("</BODY></html>")
    fragment = SIGNER.instrument("<p>no body element</p>", 7)
    assert fragment.startswith("<p>no body element</p><img") and pixel in fragment


@pytest.mark.parametrize(
    ("kind", "log_id", "target"),
    [
        (TrackingKind.CLICK, 42, "https://evil.example/"),  # another target
        (TrackingKind.CLICK, 43, "https://shop.example/"),  # another delivery log
        (TrackingKind.OPEN, 42, ""),  # a click signature used as an open
    ],
)
def test_a_signature_holds_for_its_own_url_only(kind, log_id, target):
    signature = SIGNER.sign(TrackingKind.CLICK, 42, "https://shop.example/")
    assert SIGNER.verify(TrackingKind.CLICK, 42, signature, "https://shop.example/")
    assert not SIGNER.verify(kind, log_id, signature, target)


def test_another_secret_signs_differently_and_garbage_never_verifies():
    other = LinkSigner("another secret", "https://t.shop.example")
    signature = SIGNER.sign(TrackingKind.OPEN, 1)
    assert not other.verify(TrackingKind.OPEN, 1, signature)
    for garbage in ("", "x" * 22, signature[:-1], signature + "A", "é" * 22):
        assert not SIGNER.verify(TrackingKind.OPEN, 1, garbage)


@pytest.mark.parametrize(
    ("server", "warned"),
    [
        ({"host": "0.0.0.0"}, "http://0.0.0.0:8080"),
        ({"host": "::", "port": 9000}, "http://[::]:9000"),
        ({"host": "127.0.0.1"}, None),
    ],
)
def test_tracked_links_to_a_wildcard_address_are_warned_about_at_start(server, warned):
    settings = Settings(server=server)
    with capture_logs() as logs:
        build_senders(settings)
    unreachable = [e for e in logs if e.get("action") == "email.tracking_unreachable"]
    assert [e["base_url"] for e in unreachable] == ([warned] if warned else [])
