"""Proofs: a template rendered for a seed and mailed to the seed's address (SPEC §4).

The message is built with the execution instance's MIME code (both parts,
attachments, reply-to, List-Unsubscribe, DKIM when configured) and sent
through the control instance's own ``[smtp]`` relay. The design service
records every proof with the outcome this module reports: sent or failed, and why.
"""

from __future__ import annotations

from email.utils import make_msgid, parseaddr

from msgcenter.channels.email import (
    AttachmentError,
    DkimKeyring,
    SendStatus,
    SmtpPool,
    build_message,
    domain_of,
)
from msgcenter.channels.email.attachments import fetch_attachments
from msgcenter.channels.email.mime import unsubscribe_uris
from msgcenter.errors import ConfigurationError
from msgcenter.events.model import EmailFormat
from msgcenter.publications import PublishedContent
from msgcenter.render import Ctx, RenderedMessage
from msgcenter.settings import Settings

SENT = "sent"
FAILED = "failed"


async def deliver_proof(
    content: PublishedContent,
    address: str,
    message: RenderedMessage,
    ctx: Ctx,
    settings: Settings,
) -> tuple[str, str]:
    """Build and send a proof of ``message`` to ``address``; the outcome (:data:`SENT` or
    :data:`FAILED`) and the relay's (or the builder's) reason."""
    if not content.sender:
        return FAILED, "the template has no sender address"
    try:
        files = await fetch_attachments(content.attachments, ctx, settings.attachments)
    except AttachmentError as exc:
        return FAILED, exc.message
    try:
        # as the execution instance renders it, but without its own one-click URL: a proof's
        # recipient must not leave the stream by trying the button
        unsubscribe = unsubscribe_uris(message.list_unsubscribe)
        data = build_message(
            sender=content.sender,
            recipient=address,
            subject=message.subject,
            message_id=make_msgid("proof", domain=domain_of(content.sender)),
            text=message.text,
            html=message.html,
            email_format=EmailFormat.UNKNOWN,
            reply_to=content.reply_to,
            attachments=files,
            list_unsubscribe=unsubscribe,
            list_unsubscribe_post=any(uri.lower().startswith("https:") for uri in unsubscribe),
        )
        signer = DkimKeyring.from_settings(settings.smtp)
    except ValueError as exc:
        return FAILED, f"message not buildable: {exc}"
    except ConfigurationError as exc:
        return FAILED, exc.detail
    if signer is not None:
        data = signer.sign(data, domain_of(content.sender))
    pool = SmtpPool(settings.smtp)
    try:
        outcome = await pool.send(parseaddr(content.sender)[1], address, data)
    finally:
        await pool.close()
    return (SENT if outcome.status is SendStatus.SENT else FAILED), outcome.reason
