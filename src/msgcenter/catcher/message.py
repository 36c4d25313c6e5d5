"""What the catcher keeps of a message: the envelope, the raw bytes, and what is parsed from them.

A caught item has a ``kind``: ``email`` today; SMS and push notifications may be
caught beside mail later, with the same summary (sender, recipients, subject or
first words) and their own raw form.
"""

from __future__ import annotations

import email.policy
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.parser import BytesParser

EMAIL = "email"
_PARSER = BytesParser(policy=email.policy.default)


@dataclass(frozen=True, slots=True)
class CaughtAttachment:
    """A non-body part of a caught message."""

    filename: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class CaughtSummary:
    """A caught message as the list shows it."""

    id: int
    received_at: datetime
    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    #: the From header
    sender: str
    #: the To header
    to: str
    size: int
    kind: str = EMAIL


@dataclass(frozen=True, slots=True)
class CaughtMessage:
    """A message the catcher received: the envelope, the raw bytes, and what was parsed from them."""

    id: int
    received_at: datetime
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    subject: str
    sender: str
    to: str
    #: every header, decoded (RFC 2047), in message order
    headers: tuple[tuple[str, str], ...]
    text: str | None
    html: str | None
    attachments: tuple[CaughtAttachment, ...]
    kind: str = EMAIL

    @property
    def summary(self) -> CaughtSummary:
        """The message as the list shows it."""
        return CaughtSummary(
            self.id,
            self.received_at,
            self.mail_from,
            self.rcpt_tos,
            self.subject,
            self.sender,
            self.to,
            len(self.raw),
            self.kind,
        )

    @classmethod
    def parse(
        cls,
        id: int,
        mail_from: str,
        rcpt_tos: list[str] | tuple[str, ...],
        raw: bytes,
        received_at: datetime,
    ) -> CaughtMessage:
        """Parse ``raw``; a message the parser cannot read is still kept, shown as raw text."""
        try:
            message = _PARSER.parsebytes(raw)
            return cls._from_parsed(id, mail_from, tuple(rcpt_tos), raw, received_at, message)
        except Exception:  # any parser failure: a catcher shows what it got rather than drop it
            text = raw.decode("utf-8", "replace")
            return cls(
                id,
                received_at,
                mail_from,
                tuple(rcpt_tos),
                raw,
                "(unparsable message)",
                "",
                "",
                (),
                text,
                None,
                (),
            )

    @classmethod
    def _from_parsed(
        cls,
        id: int,
        mail_from: str,
        rcpt_tos: tuple[str, ...],
        raw: bytes,
        received_at: datetime,
        message: EmailMessage,
    ) -> CaughtMessage:
        return cls(
            id=id,
            received_at=received_at,
            mail_from=mail_from,
            rcpt_tos=rcpt_tos,
            raw=raw,
            subject=str(message.get("subject", "")),
            sender=str(message.get("from", "")),
            to=str(message.get("to", "")),
            headers=tuple((name, str(value)) for name, value in message.items()),
            text=_body(message, "plain"),
            html=_body(message, "html"),
            attachments=tuple(
                CaughtAttachment(
                    part.get_filename() or "(unnamed)",
                    part.get_content_type(),
                    len(_payload(part)),
                )
                for part in message.iter_attachments()
            ),
        )

    def attachment_content(self, index: int) -> bytes | None:
        """The decoded content of attachment ``index`` (0-based), if there is one."""
        try:
            parts = list(_PARSER.parsebytes(self.raw).iter_attachments())
        except Exception:  # as in parse(): the raw message is what it is
            return None
        return _payload(parts[index]) if 0 <= index < len(parts) else None


def _payload(part: EmailMessage) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    try:
        return str(part.get_content())
    except (LookupError, ValueError):  # unknown charset, undecodable payload
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else None
