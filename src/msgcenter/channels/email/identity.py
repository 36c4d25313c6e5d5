"""How a sent email names its delivery log: the Message-ID, and the VERP bounce address (SPEC §3.7).

An asynchronous bounce (a DSN, RFC 3464) comes back to the envelope sender, so
the envelope sender carries the delivery log id: ``bounce+dl-1234-1a2b3c4d@domain``
("variable envelope return path"). The last part is an HMAC of the id, so a
forged or mistyped bounce address matches nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

_VERP_PREFIX = "bounce+dl-"
#: hex digits of the HMAC kept in the address (32 bits: a forger needs ~2 billion tries per message)
_TAG_LENGTH = 8
_VERP = re.compile(rf"bounce\+dl-(\d{{1,19}})-([0-9a-f]{{{_TAG_LENGTH}}})@[^@\s]+", re.IGNORECASE)
#: characters allowed in a dot-atom (RFC 5322 §3.2.3) besides letters and digits, minus the dot
_ATOM = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
#: characters a Feedback-ID part may not keep
_FEEDBACK_PART = re.compile(r"[^A-Za-z0-9._-]+")


def message_id(
    delivery_log_id: int, domain: str, *, instance: str = "", installation: str = ""
) -> str:
    """``<dl-1234.installation.instance@domain>`` (the empty parts left out).

    ``installation`` is a random tag drawn once per database (see
    :func:`installation_tag`): delivery log ids start again at 1 in another
    database or after a reset, and a Message-ID must be unique forever (RFC 5322
    §3.6.4), or receivers take a new message for a duplicate and drop it. The same
    delivery log of one database always gets the same Message-ID, so a retried send
    is recognisably the same message.
    """
    left = f"dl-{delivery_log_id}"
    if installation:
        left += "." + (_ATOM.sub("-", installation) or "x")
    if instance:
        left += "." + (_ATOM.sub("-", instance) or "x")
    return f"<{left}@{domain}>"


def feedback_id(template: str, folder: str | None, queue: str, sender_id: str) -> str:
    """``Feedback-ID: <template>:<folder>:<queue>:<sender id>``, the stream a mailbox provider's
    feedback loop reports spam complaints for (Gmail's format: identifiers, then the sender's).

    Each part keeps letters, digits, ``.``, ``_`` and ``-``: a colon separates the parts.
    """

    def part(value: str) -> str:
        return _FEEDBACK_PART.sub("-", value) or "-"

    return ":".join((part(template), part(folder or "-"), part(str(queue)), part(sender_id)))


def installation_tag() -> str:
    """A new random installation tag: 16 base32 characters (80 bits), lower-case."""
    return base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()


def verp_address(delivery_log_id: int, bounce_domain: str, secret: str | bytes) -> str:
    """The envelope sender that routes a bounce of this delivery log back to it."""
    return f"{_VERP_PREFIX}{delivery_log_id}-{_tag(delivery_log_id, secret)}@{bounce_domain}"


def parse_verp(address: str, secret: str | bytes) -> int | None:
    """The delivery log id that ``address`` encodes, or None if it is not one of ours or is forged.

    Case does not matter: some relays lower-case local parts.
    """
    match = _VERP.fullmatch(address.strip().strip("<>"))
    if match is None:
        return None
    delivery_log_id = int(match[1])
    if not hmac.compare_digest(match[2].lower(), _tag(delivery_log_id, secret)):
        return None
    return delivery_log_id


def domain_of(address: str) -> str:
    """The domain of ``local@domain`` (or of ``Name <local@domain>``), lower-cased."""
    return address.rsplit("@", 1)[-1].rstrip(">").strip().lower()


def _tag(delivery_log_id: int, secret: str | bytes) -> str:
    if not secret:
        raise ValueError("VERP addresses need a non-empty secret")
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    digest = hmac.new(key, f"dl-{delivery_log_id}".encode("ascii"), hashlib.sha256)
    return digest.hexdigest()[:_TAG_LENGTH]
