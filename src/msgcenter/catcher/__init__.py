"""The built-in SMTP catcher of ``msgcenter up``: catches sent mail so it can be read without a mail server (SPEC §2)."""

from msgcenter.catcher.server import CaughtAttachment, CaughtMessage, SmtpCatcher
from msgcenter.catcher.web import catcher_router

__all__ = ["CaughtAttachment", "CaughtMessage", "SmtpCatcher", "catcher_router"]
