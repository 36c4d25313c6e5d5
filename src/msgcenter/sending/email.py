"""The email connector: build the MIME message, sign it, send it through the SMTP pool (SPEC §3.7).

What it adds for deliverability (Gmail's and Yahoo's 2024 sender requirements,
RFC 8058, RFC 3834) is described in ``docs/channels.md``, "Deliverability".
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from urllib.parse import urlsplit

import structlog

from msgcenter.channels.email.attachments import AttachmentError, fetch_attachments
from msgcenter.channels.email.config import AttachmentSettings, SmtpSettings, SmtpTls
from msgcenter.channels.email.dkim import DkimKeyring
from msgcenter.channels.email.identity import (
    domain_of,
    feedback_id,
    message_id,
    verp_address,
)
from msgcenter.channels.email.identity import installation_tag as new_installation_tag
from msgcenter.channels.email.mime import build_message, unsubscribe_uris
from msgcenter.channels.email.replies import SendStatus
from msgcenter.channels.email.smtp import SmtpPool
from msgcenter.channels.health import RelayHealth
from msgcenter.deliveries import ClaimedMessage, FailureType
from msgcenter.events.model import EmailFormat
from msgcenter.publications import Publication
from msgcenter.render import Ctx, RenderedMessage
from msgcenter.sending.attempts import Attempt, AttemptKind
from msgcenter.store import instance_info
from msgcenter.store.database import Database
from msgcenter.tracking import LinkSigner, is_loopback_host, safe_base_url

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
        db: Database | None = None,
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
        #: where the random part of Message-IDs is kept (drawn once per database), and that
        #: part, read at :meth:`start`
        self._db = db
        self._installation = ""
        if urlsplit(tracking_base_url).hostname in WILDCARD_HOSTS:
            log.warning(
                "tracked links would point at a wildcard address nobody can reach: "
                "set tracking.base_url",
                action="email.tracking_unreachable",
                base_url=tracking_base_url,
            )
        # Links, the open pixel and the one-click URL only point at https (or loopback):
        # otherwise tracked templates are sent untracked and get no one-click URL of ours.
        self._links_safe = safe_base_url(tracking_base_url)
        if not self._links_safe:
            log.warning(
                "tracking.base_url is not https: tracked templates are sent with their links "
                "untracked, and without this instance's one-click unsubscribe URL",
                action="email.tracking_insecure",
                base_url=tracking_base_url,
            )
        if smtp.tls is SmtpTls.NONE and not is_loopback_host(smtp.host):
            log.warning(
                "the relay is not on this machine and smtp.tls is none: messages and any "
                "SMTP password cross the network in clear text",
                action="email.relay_plaintext",
                host=smtp.host,
                port=smtp.port,
            )
        self._tracking = LinkSigner(self._secret, tracking_base_url)
        self._pool = SmtpPool(smtp)
        self._dkim = DkimKeyring.from_settings(smtp)

    async def start(self) -> None:
        """Read this database's random Message-ID part (drawn by the first worker that asks)."""
        if self._db is not None:
            self._installation = await asyncio.to_thread(self._installation_tag, self._db)

    @staticmethod
    def _installation_tag(db: Database) -> str:
        with db.write() as conn:
            return instance_info.installation_tag(conn, new_installation_tag(), datetime.now(UTC))

    async def send(
        self, message: ClaimedMessage, publication: Publication, rendered: RenderedMessage, ctx: Ctx
    ) -> Attempt:
        """Build and send one email; every failure comes back as an :class:`Attempt`."""
        content = publication.content
        if not content.sender:
            return Attempt(AttemptKind.PERMANENT, "the published template has no sender address")
        domain = domain_of(content.sender)
        identifier = message_id(
            message.delivery_log_id,
            domain,
            instance=self._instance,
            installation=self._installation,
        )
        try:
            files = await fetch_attachments(content.attachments, ctx, self._attachments)
        except AttachmentError as exc:
            kind = AttemptKind.TEMPORARY if exc.temporary else AttemptKind.PERMANENT
            return Attempt(kind, exc.message, failure_type=FailureType.ATTACHMENT)
        try:
            unsubscribe = self._unsubscribe(message, rendered)
            web_unsubscribe = [uri for uri in unsubscribe if uri.lower().startswith("https:")]
            data = build_message(
                sender=content.sender,
                recipient=message.address,
                subject=rendered.subject,
                message_id=identifier,
                text=(
                    self._tracking.instrument_text(
                        rendered.text, message.delivery_log_id, untracked=web_unsubscribe
                    )
                    if content.tracking and rendered.text and self._links_safe
                    else rendered.text
                ),
                html=(
                    self._tracking.instrument(
                        rendered.html, message.delivery_log_id, untracked=web_unsubscribe
                    )
                    if content.tracking and rendered.html and self._links_safe
                    else rendered.html
                ),
                email_format=EmailFormat(message.event["email_format"]),
                reply_to=content.reply_to,
                attachments=files,
                list_unsubscribe=unsubscribe,
                # RFC 8058 §3.1: one-click needs the https URI that takes the POST
                list_unsubscribe_post=bool(web_unsubscribe),
                feedback_id=feedback_id(
                    publication.template, publication.folder, message.queue, self._instance
                ),
            )
        except ValueError as exc:
            return Attempt(AttemptKind.PERMANENT, f"message not buildable: {exc}")
        if self._dkim is not None:
            data = self._dkim.sign(data, domain)
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

    def _unsubscribe(self, message: ClaimedMessage, rendered: RenderedMessage) -> list[str]:
        """The List-Unsubscribe URIs: the template's, rendered for this recipient, with this
        instance's signed one-click URL first when the template gives no https one."""
        try:
            uris = unsubscribe_uris(rendered.list_unsubscribe)
        except ValueError as exc:
            # refused at publication since; an older publication's message still leaves
            log.warning(
                "unusable List-Unsubscribe URIs left out",
                action="email.list_unsubscribe_dropped",
                delivery_log=message.delivery_log_id,
                reason=str(exc),
            )
            uris = unsubscribe_uris(rendered.list_unsubscribe, strict=False)
        has_web = any(uri.lower().startswith("https:") for uri in uris)
        if not uris or has_web or not self._links_safe:
            return uris
        return [self._tracking.unsubscribe_url(message.delivery_log_id), *uris]

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
