"""Proofs: a template rendered for a seed and mailed to the seed's address (SPEC §4).

The message is rendered like a preview, built with the execution instance's
MIME code (both parts, attachments, reply-to, List-Unsubscribe, DKIM when
configured) and sent through the control instance's own ``[smtp]`` relay.
Every proof is recorded with its outcome, sent or failed and why.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.utils import make_msgid, parseaddr

from msgcenter.channels.email import (
    Attachment,
    AttachmentError,
    DkimSigner,
    SendStatus,
    SmtpPool,
    build_message,
    domain_of,
    fetch_attachment,
)
from msgcenter.control.preview import Preview, render_preview
from msgcenter.designs import Proof
from msgcenter.errors import ConfigurationError, InvalidInputError
from msgcenter.events.model import Channel, EmailFormat
from msgcenter.publications import AttachmentSpec
from msgcenter.render import Ctx
from msgcenter.settings import Settings
from msgcenter.store import control_design as store
from msgcenter.store.database import Database

SENT = "sent"
FAILED = "failed"


async def send_proof(
    db: Database, settings: Settings, template_name: str, seed_id: int, sent_by: str
) -> Proof:
    """Render ``template_name`` for seed ``seed_id``, mail it to the seed, record the proof.

    A template that cannot be rendered raises (nothing is sent nor recorded); a
    message the relay refuses or that cannot be built is recorded as failed.
    """
    preview = await asyncio.to_thread(
        render_preview, db, template_name, seed_id, max_ctx_bytes=settings.intake.max_event_bytes
    )
    if preview.spec.channel is not Channel.EMAIL:
        raise InvalidInputError(
            "proofs are sent by email",
            detail=f"template '{template_name}' is a {preview.spec.channel.label} template; preview it instead",
        )
    status, reason = await _deliver(preview, settings)

    def record() -> Proof:
        with db.write() as conn:
            found = store.get_template(conn, template_name)
            return store.add_proof(
                conn,
                found.id,
                seed_id,
                preview.seed.address,
                preview.message.subject,
                status,
                reason,
                sent_by,
                datetime.now(UTC),
            )

    return await asyncio.to_thread(record)


async def _deliver(preview: Preview, settings: Settings) -> tuple[str, str]:
    """Build and send the message; the outcome and the relay's (or the builder's) reason."""
    content = preview.spec.content
    if not content.sender:
        return FAILED, "the template has no sender address"
    try:
        files = await asyncio.gather(
            *(_fetch(spec, preview.ctx, settings) for spec in content.attachments)
        )
    except AttachmentError as exc:
        return FAILED, exc.message
    try:
        data = build_message(
            sender=content.sender,
            recipient=preview.seed.address,
            subject=preview.message.subject,
            message_id=make_msgid("proof", domain=domain_of(content.sender)),
            text=preview.message.text,
            html=preview.message.html,
            email_format=EmailFormat.UNKNOWN,
            reply_to=content.reply_to,
            attachments=files,
            list_unsubscribe=[content.list_unsubscribe] if content.list_unsubscribe else (),
        )
        signer = DkimSigner.from_settings(settings.smtp)
    except ValueError as exc:
        return FAILED, f"message not buildable: {exc}"
    except ConfigurationError as exc:
        return FAILED, exc.detail
    if signer is not None:
        data = signer.sign(data)
    pool = SmtpPool(settings.smtp)
    try:
        outcome = await pool.send(parseaddr(content.sender)[1], preview.seed.address, data)
    finally:
        await pool.close()
    return (SENT if outcome.status is SendStatus.SENT else FAILED), outcome.reason


async def _fetch(spec: AttachmentSpec, ctx: Ctx, settings: Settings) -> Attachment:
    """An attachment as the execution instance fetches it: a fixed URL or one read from ctx."""
    url = spec.url
    if not url:
        node = ctx
        for part in filter(None, (spec.ctx_url or "").split(".")):
            node = node[part]
        url = str(node).strip()
    if not url:
        raise AttachmentError(spec.ctx_url or "", f"the seed's ctx has no URL at '{spec.ctx_url}'")
    fetched = await fetch_attachment(url, settings.attachments)
    if spec.filename:
        return Attachment(spec.filename, fetched.content_type, fetched.data)
    return fetched
