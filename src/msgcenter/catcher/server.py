"""The SMTP side of the catcher: an aiosmtpd server that keeps the last messages it receives.

Nothing is relayed: every message is accepted, parsed and kept in memory,
newest first, up to ``max_messages`` (older ones are dropped).
"""

from __future__ import annotations

import email.policy
import itertools
import logging
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from aiosmtpd.controller import Controller

#: aiosmtpd logs every command at INFO; a development catcher only needs its warnings
_SMTPD_LOGGER = "mail.log"
_PARSER = BytesParser(policy=email.policy.default)


@dataclass(frozen=True, slots=True)
class CaughtAttachment:
    """A non-body part of a caught message."""

    filename: str
    content_type: str
    size: int


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

    @classmethod
    def parse(
        cls, id: int, mail_from: str, rcpt_tos: list[str], raw: bytes, received_at: datetime
    ) -> CaughtMessage:
        """Parse ``raw``; a message the parser cannot read is still kept, shown as raw text."""
        try:
            message = _PARSER.parsebytes(raw)
            return cls._from_parsed(id, mail_from, rcpt_tos, raw, received_at, message)
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
        rcpt_tos: list[str],
        raw: bytes,
        received_at: datetime,
        message: EmailMessage,
    ) -> CaughtMessage:
        return cls(
            id=id,
            received_at=received_at,
            mail_from=mail_from,
            rcpt_tos=tuple(rcpt_tos),
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
                    len(part.get_payload(decode=True) or b""),
                )
                for part in message.iter_attachments()
            ),
        )


class SmtpCatcher:
    """An SMTP server on ``host:port`` (in a thread of its own) that keeps the last ``max_messages``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 2525, max_messages: int = 1000) -> None:
        self.host = host
        self.port = port
        self._messages: deque[CaughtMessage] = deque(maxlen=max_messages)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._controller = Controller(
            _Handler(self), hostname=host, port=port, enable_SMTPUTF8=True
        )

    def start(self) -> None:
        """Listen; returns once the server answers. Raises OSError if the port is taken."""
        logging.getLogger(_SMTPD_LOGGER).setLevel(logging.WARNING)
        self._controller.start()

    def stop(self) -> None:
        """Stop listening and end the server's thread."""
        self._controller.stop()

    @property
    def messages(self) -> list[CaughtMessage]:
        """The caught messages, newest first."""
        with self._lock:
            return list(reversed(self._messages))

    def get(self, message_id: int) -> CaughtMessage | None:
        """The caught message with this id, if it is still kept."""
        with self._lock:
            return next((m for m in self._messages if m.id == message_id), None)

    def catch(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> CaughtMessage:
        """Keep one message (called by the SMTP handler for each DATA)."""
        message = CaughtMessage.parse(next(self._ids), mail_from, rcpt_tos, raw, datetime.now(UTC))
        with self._lock:
            self._messages.append(message)
        return message


class _Handler:
    """aiosmtpd handler: every message is accepted and caught."""

    def __init__(self, catcher: SmtpCatcher) -> None:
        self._catcher = catcher

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        self._catcher.catch(envelope.mail_from, list(envelope.rcpt_tos), raw)
        return "250 2.0.0 Message caught"


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    try:
        return str(part.get_content())
    except (LookupError, ValueError):  # unknown charset, undecodable payload
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else None
