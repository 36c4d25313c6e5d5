"""Open and click tracking of emails (SPEC §3.7): signed links, an open pixel.

When a template has tracking on, every ``http(s)`` link of the HTML part, and
every web address written in the text part, is rewritten to
``<base>/t/c/<delivery log>/<signature>?u=<target>``, an open pixel
``<base>/t/o/<delivery log>/<signature>`` is added before ``</body>``, and the
template may show ``{{ mirror_url }}``, the signed address of the mirror page
``<base>/m/<delivery log>/<signature>`` (the message as it was sent, in a browser). Unsubscribe links are never tracked: a mailbox provider that sees the
List-Unsubscribe URL behind a redirect, or a recipient whose opt-out is counted
as a click, is what RFC 8058 and the 2024 sender requirements warn against. The
same signer writes the one-click unsubscribe URL ``<base>/u/<delivery log>/<signature>``
(RFC 8058). The signature is an HMAC of the delivery log id and the target
under the instance's secret key, so a link whose target or id was changed
(or that this instance never wrote) verifies false and never redirects.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Collection
from dataclasses import dataclass
from html import escape, unescape
from typing import Any
from urllib.parse import quote, urlsplit

#: ``<a … href="…">`` (either quote) — the value is group "url"
LINK = re.compile(
    r"""(?P<head><a\b[^>]*?\bhref\s*=\s*)(?P<quote>["'])(?P<url>.*?)(?P=quote)""",
    re.IGNORECASE | re.DOTALL,
)
BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
#: a web address in plain text: up to a space, a quote or an angle bracket
TEXT_LINK = re.compile(r"""https?://[^\s<>"']+""", re.IGNORECASE)
#: punctuation that ends a sentence rather than the address written before it
TEXT_LINK_TRAILER = ".,;:!?)]}"
#: bytes of HMAC kept in a signature (128 bits)
SIGNATURE_BYTES = 16


#: where the one-click unsubscribe endpoint answers, under the tracking base URL
UNSUBSCRIBE_PATH = "/u/"
#: where the mirror page answers, under the tracking base URL
MIRROR_PATH = "/m/"


def is_loopback_host(host: str | None) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine."""
    if not host:
        return False
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def safe_base_url(base_url: str) -> bool:
    """Whether links may point at ``base_url``: https, or http on loopback (development),
    where nothing a recipient's client sends — the unsubscribe POST included — crosses a
    network in clear text."""
    parts = urlsplit(base_url)
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname))


@dataclass(frozen=True, slots=True)
class SentMessage:
    """What one sent message was rendered from: shown again by its mirror page."""

    publication_id: int
    #: the fields a template sees as ``event``
    event: dict[str, Any]
    ctx: str
    ctx_format: str


def log_id_of(text: str) -> int | None:
    """The delivery log id written in one of this module's URLs (tracking, mirror page,
    unsubscribe), or None when ``text`` is not one (not ASCII digits, or too long for a
    64-bit id)."""
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    return int(text)


class TrackingKind(enum.StrEnum):
    """What a tracking log records."""

    OPEN = "open"
    CLICK = "click"


class LinkSigner:
    """Writes and verifies the tracking URLs of one execution instance."""

    def __init__(self, secret: str, base_url: str) -> None:
        self._key = hashlib.sha256(b"msgcenter tracking\0" + secret.encode()).digest()
        self._base = base_url.rstrip("/")

    def click_url(self, delivery_log_id: int, target: str) -> str:
        """The tracked URL that redirects to ``target``."""
        signature = self.sign(TrackingKind.CLICK, delivery_log_id, target)
        return f"{self._base}/t/c/{delivery_log_id}/{signature}?u={quote(target, safe='')}"

    def open_url(self, delivery_log_id: int) -> str:
        """The URL of the open pixel."""
        return f"{self._base}/t/o/{delivery_log_id}/{self.sign(TrackingKind.OPEN, delivery_log_id)}"

    def unsubscribe_url(self, delivery_log_id: int) -> str:
        """The one-click unsubscribe URL of a delivery log (RFC 8058)."""
        signature = self.sign_unsubscribe(delivery_log_id)
        return f"{self._base}{UNSUBSCRIBE_PATH}{delivery_log_id}/{signature}"

    def sign_unsubscribe(self, delivery_log_id: int) -> str:
        """The signature of one unsubscribe URL (never valid as a tracking signature)."""
        return self._sign_page("unsubscribe", delivery_log_id)

    def verify_unsubscribe(self, delivery_log_id: int, signature: str) -> bool:
        """Whether ``signature`` is this instance's for the unsubscribe URL (in constant time)."""
        expected = self.sign_unsubscribe(delivery_log_id).encode()
        return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))

    def mirror_url(self, delivery_log_id: int) -> str:
        """The mirror page's URL of a delivery log: its message as it was sent."""
        signature = self._sign_page("mirror", delivery_log_id)
        return f"{self._base}{MIRROR_PATH}{delivery_log_id}/{signature}"

    def verify_mirror(self, delivery_log_id: int, signature: str) -> bool:
        """Whether ``signature`` is this instance's for the mirror page (in constant time)."""
        expected = self._sign_page("mirror", delivery_log_id).encode()
        return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))

    def _sign_page(self, page: str, delivery_log_id: int) -> str:
        digest = hmac.new(self._key, f"{page}\0{delivery_log_id}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:SIGNATURE_BYTES]).rstrip(b"=").decode()

    def sign(self, kind: TrackingKind, delivery_log_id: int, target: str = "") -> str:
        """The signature of one tracking URL (urlsafe base64, no padding)."""
        digest = hmac.new(
            self._key, f"{kind}\0{delivery_log_id}\0{target}".encode(), hashlib.sha256
        ).digest()
        return base64.urlsafe_b64encode(digest[:SIGNATURE_BYTES]).rstrip(b"=").decode()

    def verify(
        self, kind: TrackingKind, delivery_log_id: int, signature: str, target: str = ""
    ) -> bool:
        """Whether ``signature`` is this instance's for the URL (in constant time)."""
        expected = self.sign(kind, delivery_log_id, target).encode()
        return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))

    def instrument(
        self, html: str, delivery_log_id: int, *, untracked: Collection[str] = ()
    ) -> str:
        """``html`` with its web links tracked and an open pixel added; links to ``untracked``
        targets (the message's List-Unsubscribe URLs) and to this instance's unsubscribe and
        mirror pages stay as written."""
        own_pages = (self._base + UNSUBSCRIBE_PATH, self._base + MIRROR_PATH)

        def track(link: re.Match[str]) -> str:
            target = unescape(link["url"]).strip()
            if not target.lower().startswith(("http://", "https://")):
                return link[0]  # mailto:, tel:, anchors and the like stay as written
            if target in untracked or target.startswith(own_pages):
                return link[0]
            tracked = escape(self.click_url(delivery_log_id, target), quote=True)
            return f"{link['head']}{link['quote']}{tracked}{link['quote']}"

        tracked_html = LINK.sub(track, html)
        pixel = (
            f'<img src="{escape(self.open_url(delivery_log_id))}" width="1" height="1" alt="" '
            'style="display:block;border:0">'
        )
        ends = list(BODY_END.finditer(tracked_html))
        if not ends:
            return tracked_html + pixel
        at = ends[-1].start()
        return tracked_html[:at] + pixel + tracked_html[at:]

    def instrument_text(
        self, text: str, delivery_log_id: int, *, untracked: Collection[str] = ()
    ) -> str:
        """``text`` with the web addresses written in it tracked, but for ``untracked`` ones,
        this instance's unsubscribe and mirror pages; a sentence's closing punctuation after
        an address stays outside it."""
        kept = (self._base + UNSUBSCRIBE_PATH, self._base + MIRROR_PATH)

        def track(link: re.Match[str]) -> str:
            written = link[0]
            target = written.rstrip(TEXT_LINK_TRAILER)
            if target in untracked or target.startswith(kept):
                return written
            return self.click_url(delivery_log_id, target) + written[len(target) :]

        return TEXT_LINK.sub(track, text)
