"""Settings of the SMS channel, mounted into the instance settings as ``[sms]``."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, model_validator


class SmsSettings(BaseModel):
    """The SMSC account every SMS goes through (SMPP 3.4), and how it is used."""

    #: host name or address of the SMSC; unset means this instance has no SMS channel
    host: str | None = None
    port: int = Field(default=2775, ge=1, le=65535)
    #: the account's system_id and password (SMPP 3.4 §4.1.1: 15 and 8 characters at most)
    system_id: str = Field(default="", max_length=15)
    password: SecretStr = SecretStr("")
    #: system_type sent with the bind, when the SMSC asks for one
    system_type: str = Field(default="", max_length=12)
    #: transceiver binds opened on the account at once (many SMSCs allow a few per account)
    binds: int = Field(default=1, ge=1, le=32)
    #: submit_sm sent on one bind and not yet answered, at most (the SMSC's window)
    window: int = Field(default=10, ge=1, le=1000)
    #: submit_sm per second over all binds of the account (one part counts one); 0: no limit
    rate_per_second: float = Field(default=0.0, ge=0)
    #: seconds allowed for connecting, for the bind and for each response
    timeout_seconds: float = Field(default=10.0, gt=0)
    #: an enquire_link is sent after this many seconds without traffic on a bind
    enquire_link_seconds: float = Field(default=30.0, gt=0)
    #: a lost or refused bind is opened again after this delay, doubling up to the maximum
    reconnect_min_seconds: float = Field(default=1.0, gt=0)
    reconnect_max_seconds: float = Field(default=60.0, gt=0)
    #: after ESME_RTHROTTLED or ESME_RMSGQFUL the account sends nothing for this long,
    #: doubling while the SMSC keeps refusing, up to ``reconnect_max_seconds``
    throttle_backoff_seconds: float = Field(default=1.0, gt=0)
    #: seconds one message may wait (for a bind, the window, a throttled SMSC) before its
    #: attempt ends as a temporary failure, retried by the dispatcher with its backoff
    attempt_seconds: float = Field(default=60.0, gt=0)
    #: a text that needs more parts than this fails for good (each part is billed)
    max_parts: int = Field(default=10, ge=1, le=255)
    #: sender id used when the template gives none: a number (+ and digits, or a short code)
    #: or an alphanumeric name of 11 characters at most
    default_sender: str = ""
    #: type of number and numbering plan of the sender; unset means decided from the sender
    #: id: +digits international (1/1), up to 8 digits a short code (3/0), letters
    #: alphanumeric (5/0) (SMPP 3.4 §5.2.5, §5.2.6)
    source_ton: int | None = Field(default=None, ge=0, le=6)
    source_npi: int | None = Field(default=None, ge=0, le=18)
    #: ask the SMSC for delivery receipts (registered_delivery 1): they turn a sent
    #: message into delivered or failed
    delivery_receipts: bool = True
    #: error codes of an UNDELIV receipt (its "err:" field, decimal) that mean the number does
    #: not exist: it goes to quarantine. SMSC-specific; 1 is the GSM MAP "unknown subscriber".
    invalid_number_errors: list[int] = Field(default_factory=lambda: [1])
    #: a receipt whose message is not found yet is tried again for this long (its submit's
    #: outcome may not be written yet), then counted as unknown
    receipt_grace_seconds: float = Field(default=30.0, ge=0)
    #: receipts are written in one transaction at most this often (milliseconds)
    receipt_flush_ms: int = Field(default=200, ge=1)

    @model_validator(mode="after")
    def _fits_smpp(self) -> SmsSettings:
        if len(self.password.get_secret_value()) > 8:
            raise ValueError("sms.password: SMPP 3.4 allows 8 characters at most")
        if self.reconnect_max_seconds < self.reconnect_min_seconds:
            raise ValueError("sms.reconnect_max_seconds is smaller than reconnect_min_seconds")
        return self

    @property
    def enabled(self) -> bool:
        """Whether an SMSC is configured."""
        return bool(self.host)
