"""Tracking links (SPEC §3.7): rewriting of a tracked email's HTML, and the signatures that guard it."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from structlog.testing import capture_logs

from msgcenter.settings import Settings
from msgcenter.tracking import LinkSigner, TrackingKind, is_loopback_host, safe_base_url
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


def test_unsubscribe_links_are_never_tracked():
    html = (
        '<a href="https://shop.example/unsub?e=ann%40example.com">unsubscribe</a> '
        f'<a href="{SIGNER.unsubscribe_url(42)}">one click</a> '
        '<a href="https://shop.example/o">order</a>'
    )
    tracked = SIGNER.instrument(
        html, 42, untracked=["https://shop.example/unsub?e=ann%40example.com"]
    )
    unsubscribe, one_click, order = links(tracked)
    assert unsubscribe == "https://shop.example/unsub?e=ann%40example.com"
    assert one_click == SIGNER.unsubscribe_url(42)
    assert order.startswith("https://t.shop.example/t/c/42/")


def test_the_one_click_url_is_signed_for_its_delivery_log_only():
    url = SIGNER.unsubscribe_url(42)
    assert url.startswith("https://t.shop.example/u/42/")
    signature = url.rsplit("/", 1)[1]
    assert SIGNER.verify_unsubscribe(42, signature)
    assert not SIGNER.verify_unsubscribe(43, signature)
    assert not LinkSigner("another secret", "https://t.shop.example").verify_unsubscribe(
        42, signature
    )
    # an open or click signature is no unsubscribe signature, and the other way round
    assert not SIGNER.verify_unsubscribe(42, SIGNER.sign(TrackingKind.OPEN, 42))
    assert not SIGNER.verify(TrackingKind.OPEN, 42, signature)


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://t.example.com", True),
        ("http://127.0.0.1:8080", True),
        ("http://[::1]:8080", True),
        ("http://localhost:8080/mc", True),
        ("http://t.example.com", False),
        ("http://10.0.0.5:8080", False),
        ("http://0.0.0.0:8080", False),
        ("ftp://t.example.com", False),
    ],
)
def test_links_point_at_https_or_at_loopback(url, safe):
    assert safe_base_url(url) is safe


def test_loopback_hosts():
    assert is_loopback_host("127.0.0.2") and is_loopback_host("::1") and is_loopback_host("[::1]")
    assert not is_loopback_host("") and not is_loopback_host("relay.example.com")
    assert not is_loopback_host("0.0.0.0")


@pytest.mark.parametrize(
    ("settings", "insecure"),
    [
        ({"server": {"host": "10.0.0.5"}}, True),
        ({"server": {"host": "127.0.0.1"}}, False),
        (
            {"server": {"host": "10.0.0.5"}, "tracking": {"base_url": "https://t.example.com"}},
            False,
        ),
    ],
)
def test_tracking_over_plain_http_outside_loopback_is_refused_at_start(settings, insecure):
    with capture_logs() as logs:
        build_senders(Settings(**settings))
    assert any(e.get("action") == "email.tracking_insecure" for e in logs) is insecure


@pytest.mark.parametrize(
    ("smtp", "warned"),
    [
        ({"host": "relay.example.com"}, True),
        ({"host": "relay.example.com", "tls": "starttls"}, False),
        ({"host": "10.1.2.3", "port": 465, "tls": "implicit"}, False),
        ({"host": "127.0.0.1"}, False),
        ({"host": "localhost"}, False),
    ],
)
def test_a_plain_text_relay_off_this_machine_is_warned_about_at_start(smtp, warned):
    with capture_logs() as logs:
        build_senders(Settings(smtp=smtp))
    plain = [e for e in logs if e.get("action") == "email.relay_plaintext"]
    assert bool(plain) is warned
    if warned:
        assert plain[0]["host"] == "relay.example.com"


def test_web_addresses_of_a_text_part_are_tracked_and_their_punctuation_kept_out():
    signer = LinkSigner("secret", "https://t.example")
    mirror = signer.mirror_url(5)
    text = (
        "See https://shop.example/o/1. Or (https://shop.example/help)!\n"
        "mailto:care@example.com stays, so does https://u.example/stop and "
        f"{mirror}, and www.example.com without a scheme."
    )
    tracked = signer.instrument_text(text, 5, untracked=["https://u.example/stop"])
    first = signer.click_url(5, "https://shop.example/o/1")
    second = signer.click_url(5, "https://shop.example/help")
    assert tracked == (
        f"See {first}. Or ({second})!\n"
        "mailto:care@example.com stays, so does https://u.example/stop and "
        f"{mirror}, and www.example.com without a scheme."
    )


def test_the_mirror_url_is_signed_for_its_delivery_log_only():
    signer = LinkSigner("secret", "https://t.example/")
    url = signer.mirror_url(42)
    assert url.startswith("https://t.example/m/42/")
    signature = url.rsplit("/", 1)[1]
    assert signer.verify_mirror(42, signature)
    assert not signer.verify_mirror(43, signature)
    assert not signer.verify_unsubscribe(42, signature)  # one page's signature is no other's
    assert not LinkSigner("other", "https://t.example").verify_mirror(42, signature)
