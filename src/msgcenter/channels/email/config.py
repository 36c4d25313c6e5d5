"""Settings of the email channel, mounted into the instance settings as ``[smtp]`` and ``[attachments]``."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class SmtpTls(enum.StrEnum):
    """How the connection to the relay is protected."""

    #: plain text (a relay on the same host or network)
    NONE = "none"
    #: plain connection upgraded with STARTTLS before anything else is sent (RFC 3207)
    STARTTLS = "starttls"
    #: TLS from the first byte, "submissions" on port 465 (RFC 8314 §3.3)
    IMPLICIT = "implicit"


class DkimKey(BaseModel):
    """One sender domain's DKIM key: the ``d=`` domain, its selector and its private key."""

    model_config = ConfigDict(extra="forbid")

    #: the signing domain (d=); a message whose From domain is this domain or one of its
    #: subdomains is signed with this key (DMARC relaxed alignment, RFC 7489 §3.1.1)
    domain: str = Field(min_length=1, pattern=r"^[A-Za-z0-9.-]+$")
    selector: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    #: PEM RSA private key whose public half is published at <selector>._domainkey.<domain>
    private_key_file: Path


class SmtpSettings(BaseModel):
    """The SMTP relay that every email goes through, and how messages are signed and addressed."""

    #: host name or address of the relay
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    #: none, starttls or implicit
    tls: SmtpTls = SmtpTls.NONE
    #: CA bundle (PEM) trusted for the relay's certificate instead of the system store
    tls_ca_file: Path | None = None
    #: AUTH login; authentication is attempted only when it is set
    username: str | None = None
    password: SecretStr = SecretStr("")
    #: seconds allowed for connecting and for each SMTP command
    timeout_seconds: float = Field(default=30.0, gt=0)
    #: connections opened in parallel at most
    pool_size: int = Field(default=8, ge=1, le=256)
    #: messages sent over one connection before it is closed and a fresh one opened
    max_messages_per_connection: int = Field(default=1000, ge=1)
    #: name sent with EHLO; empty means this machine's fully qualified name
    helo_name: str = ""
    #: domain of the VERP bounce addresses; empty means the domain of each message's sender
    bounce_domain: str = ""
    #: development: deliver every message to this one address instead (header X-Original-To keeps the real one)
    force_recipient: str | None = None
    #: DKIM signing (RFC 6376) happens when selector, domain and key file are all set
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    #: PEM RSA private key whose public half is published at <selector>._domainkey.<domain>
    dkim_private_key_file: Path | None = None
    #: more DKIM keys, one per sender domain ([[smtp.dkim_keys]]); each message is signed with
    #: the key of its From domain (or of a parent domain), else with the first key configured
    dkim_keys: list[DkimKey] = Field(default_factory=list)
    #: what publishing a template whose From domain is aligned with neither a DKIM domain
    #: nor the bounce domain does (DMARC, RFC 7489 §3.1): "warn" logs it, "refuse" refuses it
    dmarc_alignment: Literal["warn", "refuse"] = "warn"

    @model_validator(mode="after")
    def _dkim_all_or_nothing(self) -> SmtpSettings:
        given = [self.dkim_selector, self.dkim_domain, self.dkim_private_key_file]
        if any(given) and not all(given):
            raise ValueError(
                "DKIM needs dkim_selector, dkim_domain and dkim_private_key_file together"
            )
        return self


def _web_schemes() -> list[Literal["https", "http"]]:
    return ["https", "http"]


class AttachmentSettings(BaseModel):
    """Limits on attachments fetched from a URL given in an event's ``ctx``."""

    #: largest attachment accepted; reading stops as soon as it is exceeded
    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    #: seconds allowed for one whole fetch, redirects and download included
    timeout_seconds: float = Field(default=10.0, gt=0)
    #: fetch from loopback, private, link-local and other non-public addresses (off: SSRF guard)
    allow_private_networks: bool = False
    #: URL schemes that may be fetched
    allowed_schemes: list[Literal["https", "http"]] = Field(default_factory=_web_schemes)
    #: redirects followed at most, each one checked like the first URL
    max_redirects: int = Field(default=5, ge=0, le=20)
