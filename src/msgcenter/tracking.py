"""Open and click tracking of emails (SPEC §3.7): signed links, an open pixel.

When a template has tracking on, every ``http(s)`` link of the HTML part is
rewritten to ``<base>/t/c/<delivery log>/<signature>?u=<target>`` and an
open pixel ``<base>/t/o/<delivery log>/<signature>`` is added before
``</body>``. Unsubscribe links are never tracked: a mailbox provider that sees the
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
from html import escape, unescape
from urllib.parse import quote, urlsplit

#: ``<a … href="…">`` (either quote) — the value is group "url"
LINK = re.compile(
    r"""(?P<head><a\b[^>]*?\bhref\s*=\s*)(?P<quote>["'])(?P<url>.*?)(?P=quote)""",
    re.IGNORECASE | re.DOTALL,
)
BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
#: bytes of HMAC kept in a signature (128 bits)
SIGNATURE_BYTES = 16


#: where the one-click unsubscribe endpoint answers, under the tracking base URL
UNSUBSCRIBE_PATH = "/u/"


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
        digest = hmac.new(
            self._key, f"unsubscribe\0{delivery_log_id}".encode(), hashlib.sha256
        ).digest()
        return base64.urlsafe_b64encode(digest[:SIGNATURE_BYTES]).rstrip(b"=").decode()

    def verify_unsubscribe(self, delivery_log_id: int, signature: str) -> bool:
        """Whether ``signature`` is this instance's for the unsubscribe URL (in constant time)."""
        expected = self.sign_unsubscribe(delivery_log_id).encode()
        return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))

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
        targets (the message's List-Unsubscribe URLs) and to this instance's unsubscribe
        endpoint stay as written."""
        own_unsubscribe = self._base + UNSUBSCRIBE_PATH

        def track(link: re.Match[str]) -> str:
            target = unescape(link["url"]).strip()
            if not target.lower().startswith(("http://", "https://")):
                return link[0]  # mailto:, tel:, anchors and the like stay as written
            if target in untracked or target.startswith(own_unsubscribe):
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
