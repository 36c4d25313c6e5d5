"""The email connector: build the MIME message, sign it, send it through the SMTP pool (SPEC §3.7)."""

from __future__ import annotations

from urllib.parse import urlsplit

import structlog

from msgcenter.channels.email.attachments import AttachmentError, fetch_attachments
from msgcenter.channels.email.config import AttachmentSettings, SmtpSettings
from msgcenter.channels.email.dkim import DkimSigner
from msgcenter.channels.email.identity import domain_of, message_id, verp_address
from msgcenter.channels.email.mime import build_message
from msgcenter.channels.email.replies import SendStatus
from msgcenter.channels.email.smtp import SmtpPool
from msgcenter.channels.health import RelayHealth
from msgcenter.deliveries import ClaimedMessage, FailureType
from msgcenter.events.model import EmailFormat
from msgcenter.publications import Publication
from msgcenter.render import Ctx, RenderedMessage
from msgcenter.sending.attempts import Attempt, AttemptKind
from msgcenter.tracking import LinkSigner

log = structlog.get_logger(__name__)

#: used when ``secret_key`` is empty (development); bounce addresses are then forgeable
DEVELOPMENT_SECRET = "msgcenter-development-secret"
#: listen-on-every-interface addresses: a server's, never a place to send a recipient
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})


class EmailSender:
    """Sends rendered messages as email through one relay."""

    def __init__(
        self,
        smtp: SmtpSettings,
        attachments: AttachmentSettings,
        secret: str,
        *,
        instance: str,
        tracking_base_url: str,
    ) -> None:
        if not secret:
            log.warning(
                "secret_key is empty: bounce addresses use a development key",
                action="email.development_secret",
            )
        self._smtp = smtp
        self._attachments = attachments
        self._secret = secret or DEVELOPMENT_SECRET
        self._instance = instance
        if urlsplit(tracking_base_url).hostname in WILDCARD_HOSTS:
            log.warning(
                "tracked links would point at a wildcard address nobody can reach: "
                "set tracking.base_url",
                action="email.tracking_unreachable",
                base_url=tracking_base_url,
            )
        self._tracking = LinkSigner(self._secret, tracking_base_url)
        self._pool = SmtpPool(smtp)
        self._dkim = DkimSigner.from_settings(smtp)

    async def send(
        self, message: ClaimedMessage, publication: Publication, rendered: RenderedMessage, ctx: Ctx
    ) -> Attempt:
        """Build and send one email; every failure comes back as an :class:`Attempt`."""
        content = publication.content
        if not content.sender:
            return Attempt(AttemptKind.PERMANENT, "the published template has no sender address")
        domain = domain_of(content.sender)
        identifier = message_id(message.delivery_log_id, domain, instance=self._instance)
        try:
            files = await fetch_attachments(content.attachments, ctx, self._attachments)
        except AttachmentError as exc:
            kind = AttemptKind.TEMPORARY if exc.temporary else AttemptKind.PERMANENT
            return Attempt(kind, exc.message, failure_type=FailureType.ATTACHMENT)
        try:
            data = build_message(
                sender=content.sender,
                recipient=message.address,
                subject=rendered.subject,
                message_id=identifier,
                text=rendered.text,
                html=(
                    self._tracking.instrument(rendered.html, message.delivery_log_id)
                    if content.tracking and rendered.html
                    else rendered.html
                ),
                email_format=EmailFormat(message.event["email_format"]),
                reply_to=content.reply_to,
                attachments=files,
                list_unsubscribe=[content.list_unsubscribe] if content.list_unsubscribe else (),
            )
        except ValueError as exc:
            return Attempt(AttemptKind.PERMANENT, f"message not buildable: {exc}")
        if self._dkim is not None:
            data = self._dkim.sign(data)
        envelope_from = verp_address(
            message.delivery_log_id, self._smtp.bounce_domain or domain, self._secret
        )
        outcome = await self._pool.send(envelope_from, message.address, data)
        if outcome.status is SendStatus.SENT:
            return Attempt(AttemptKind.SENT, outcome.reason, message_id=identifier)
        if outcome.status is SendStatus.TEMPORARY:
            return Attempt(AttemptKind.TEMPORARY, outcome.reason, failure_type=FailureType.SOFT)
        return Attempt(
            AttemptKind.PERMANENT,
            outcome.reason,
            message_id=identifier,
            failure_type=FailureType.USER_UNKNOWN if outcome.user_unknown else FailureType.HARD,
            quarantine=outcome.user_unknown,
        )

    @property
    def health(self) -> RelayHealth:
        """Whether the relay can be reached."""
        return self._pool.health

    async def probe(self) -> bool:
        """Open a session with the relay (kept for the next message); whether it answered."""
        return await self._pool.probe()

    async def close(self) -> None:
        """Close the relay connections."""
        await self._pool.close()
