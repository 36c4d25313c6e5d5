"""The SMTP side of the catcher: an aiosmtpd server that keeps the last messages it receives.

Nothing is relayed: every message is accepted, parsed and kept in a
:class:`~msgcenter.catcher.mailbox.Mailbox`: a file in ``directory`` (so caught
mail survives a restart), or memory without one. At most ``max_messages``
messages and ``max_bytes`` of them are kept, the oldest dropped first.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from msgcenter.catcher.mailbox import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_MESSAGES,
    FILE_NAME,
    Mailbox,
)
from msgcenter.catcher.message import CaughtAttachment, CaughtMessage, CaughtSummary

__all__ = ["CaughtAttachment", "CaughtMessage", "CaughtSummary", "SmtpCatcher"]

#: aiosmtpd logs every command at INFO; a development catcher only needs its warnings
_SMTPD_LOGGER = "mail.log"


class SmtpCatcher:
    """An SMTP server on ``host:port`` (in a thread of its own) that keeps what it receives."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 2525,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        *,
        directory: Path | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.host = host
        self.port = port
        self.mailbox = Mailbox(
            directory / FILE_NAME if directory is not None else None,
            max_messages=max_messages,
            max_bytes=max_bytes,
        )
        self._controller = Controller(
            _Handler(self), hostname=host, port=port, enable_SMTPUTF8=True
        )

    def start(self) -> None:
        """Listen; returns once the server answers. Raises OSError if the port is taken."""
        logging.getLogger(_SMTPD_LOGGER).setLevel(logging.WARNING)
        self._controller.start()

    def stop(self) -> None:
        """Stop listening, end the server's thread, and close the mailbox."""
        try:
            self._controller.stop()
        finally:
            self.mailbox.close()

    @property
    def messages(self) -> list[CaughtMessage]:
        """Every caught message, parsed, newest first."""
        found = (self.mailbox.get(s.id) for s in self.mailbox.summaries())
        return [message for message in found if message is not None]

    def summaries(self, query: str = "", limit: int | None = None) -> list[CaughtSummary]:
        """The caught messages, newest first, those matching ``query`` (see
        :meth:`Mailbox.summaries <msgcenter.catcher.mailbox.Mailbox.summaries>`)."""
        return self.mailbox.summaries(query, limit)

    def get(self, message_id: int) -> CaughtMessage | None:
        """The caught message with this id, if it is still kept."""
        return self.mailbox.get(message_id)

    def catch(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> CaughtSummary:
        """Keep one message (called by the SMTP handler for each DATA)."""
        parsed = CaughtMessage.parse(0, mail_from, rcpt_tos, raw, datetime.now(UTC))
        message_id = self.mailbox.add(parsed)
        return replace(parsed, id=message_id).summary


class _Handler:
    """aiosmtpd handler: every message is accepted and caught."""

    def __init__(self, catcher: SmtpCatcher) -> None:
        self._catcher = catcher

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        self._catcher.catch(envelope.mail_from, list(envelope.rcpt_tos), raw)
        return "250 2.0.0 Message caught"
