"""The email channel: MIME assembly, identification, DKIM, attachments and the SMTP pool (SPEC §3.7)."""

from msgcenter.channels.email.attachments import AttachmentError, fetch_attachment
from msgcenter.channels.email.config import AttachmentSettings, SmtpSettings, SmtpTls
from msgcenter.channels.email.dkim import DkimKeyring, DkimSigner
from msgcenter.channels.email.identity import domain_of, message_id, parse_verp, verp_address
from msgcenter.channels.email.mime import Attachment, build_message
from msgcenter.channels.email.replies import SendOutcome, SendStatus
from msgcenter.channels.email.smtp import SmtpPool

__all__ = [
    "Attachment",
    "AttachmentError",
    "AttachmentSettings",
    "DkimKeyring",
    "DkimSigner",
    "SendOutcome",
    "SendStatus",
    "SmtpPool",
    "SmtpSettings",
    "SmtpTls",
    "build_message",
    "domain_of",
    "fetch_attachment",
    "message_id",
    "parse_verp",
    "verp_address",
]
