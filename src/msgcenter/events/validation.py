"""Turn raw fields (from SOAP attributes or a JSON object) into a validated :class:`NewEvent`.

One validator serves both adapters so that SOAP and REST accept and refuse the
same events with the same reasons (SPEC §3.2 "Intake rules").
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from msgcenter.errors import InvalidEventError
from msgcenter.events.model import (
    CHANNEL_LABELS,
    Channel,
    CtxFormat,
    EmailFormat,
    NewEvent,
)

TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
#: what a number can be written with (digits, spaces, punctuation), before it is parsed
DIALLED = re.compile(r"\+?[0-9 ().\-/]*[0-9][0-9 ().\-/]*")
#: longer than any number written with spaces and punctuation (E.164 has 15 digits at most)
MAX_PHONE = 64
#: the everyday address (ASCII dot-atom local part, LDH domain; RFC 5321 §4.1.2, §4.5.3.1
#: lengths): accepted without email_validator, which costs ~50 µs per call on the intake
#: hot path. Anything else (quoted local parts, internationalised addresses, errors) goes
#: through email_validator for its verdict and its precise message.
PLAIN_ADDRESS = re.compile(
    r"(?=.{6,254}$)"
    r"(?P<local>[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,64}(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?P<tld>[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?))"
)
#: special-use names (RFC 6761) email_validator refuses; left to it so the verdict is the same
SPECIAL_USE_TLDS = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test"})
#: the ctx an event without one gets, as stored (exclusive C14N of an empty <ctx>, or {})
EMPTY_CTX = {CtxFormat.XML: "<ctx></ctx>", CtxFormat.JSON: "{}"}
#: the longest value accepted in a free-text field
MAX_TEXT = 255
MAX_TOKEN = 4096

#: free-text fields: stored as given (trimmed), searchable
TEXT_FIELDS = ("external_id", "origin", "language", "country", "correlation_id", "mobile_app_uuid")
#: every field the validator understands; anything else goes to ``extra``
KNOWN_FIELDS = frozenset(
    {
        "type",
        "email",
        "mobile_phone",
        "registration_token",
        "wished_channel",
        "email_format",
        "scheduled",
        *TEXT_FIELDS,
    }
)


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages ("array", not "list")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def validate_event(
    fields: dict[str, Any],
    ctx: str | None,
    ctx_format: CtxFormat,
    *,
    idempotency_key: str | None = None,
) -> NewEvent:
    """Check one event's fields and return it ready to store, or raise :class:`InvalidEventError`."""
    _refuse_nul(fields)
    event_type = _text(fields, "type", required=True)
    if not TYPE_NAME.fullmatch(event_type):
        raise InvalidEventError(
            "type", f"{event_type!r} is not a valid event type name (letters, digits, _ . : -)"
        )
    if ctx is None:
        # the model product's minimal event has none: templates then see every path as empty
        ctx = EMPTY_CTX[ctx_format]
    channel = _channel(fields.get("wished_channel"))
    event = NewEvent(
        type=event_type,
        ctx=ctx,
        ctx_format=ctx_format,
        wished_channel=channel,
        email_format=_email_format(fields.get("email_format")),
        scheduled=_timestamp(fields.get("scheduled")),
        extra={k: v for k, v in fields.items() if k not in KNOWN_FIELDS},
        idempotency_key=idempotency_key,
    )
    for name in TEXT_FIELDS:
        setattr(event, name, _text(fields, name))
    event.email = _email(fields.get("email"), required=channel is Channel.EMAIL)
    event.mobile_phone = _phone(
        fields.get("mobile_phone"), required=channel is Channel.SMS, country=event.country
    )
    event.registration_token = _text(
        fields,
        "registration_token",
        required=channel in (Channel.IOS, Channel.ANDROID),
        max_length=MAX_TOKEN,
    )
    return event


def _refuse_nul(fields: dict[str, Any]) -> None:
    """A NUL character is in no legitimate value (PostgreSQL cannot store it, SQLite would)."""
    for name, value in fields.items():
        if "\x00" in name:
            raise InvalidEventError(name.replace("\x00", "\\x00"), "a NUL character in a name")
        if holds_nul(value):
            raise InvalidEventError(name, "contains a NUL character")


def holds_nul(value: Any) -> bool:
    """Whether a parsed JSON value holds a NUL character in any string or key."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(holds_nul(item) for item in value)
    return False


def _text(
    fields: dict[str, Any], name: str, *, required: bool = False, max_length: int = MAX_TEXT
) -> Any:
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise InvalidEventError(name, "missing")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidEventError(name, f"must be a string, not {json_type(value)}")
    value = str(value).strip()
    if len(value) > max_length:
        raise InvalidEventError(name, f"longer than {max_length} characters")
    return value


def _channel(value: Any) -> Channel:
    if value is None or value == "":
        return Channel.EMAIL
    if isinstance(value, bool):
        raise InvalidEventError("wished_channel", "must be a channel code or label, not a boolean")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        try:
            return Channel(int(value))
        except ValueError:
            raise InvalidEventError(
                "wished_channel",
                f"unknown channel code {value} (0 email, 1 sms, 41 ios, 42 android)",
            ) from None
    if isinstance(value, str) and value.strip().lower() in CHANNEL_LABELS:
        return CHANNEL_LABELS[value.strip().lower()]
    raise InvalidEventError(
        "wished_channel", f"unknown channel {value!r} (email, sms, mobile, ios, android or a code)"
    )


def _email_format(value: Any) -> EmailFormat:
    if value is None or value == "":
        return EmailFormat.UNKNOWN
    try:
        # int() would silently truncate 1.5 to 1 (and accept True as 1)
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return EmailFormat(int(value))
    except (TypeError, ValueError):
        raise InvalidEventError(
            "email_format", f"{value!r} is out of range (0 unknown, 1 text, 2 HTML)"
        ) from None


def _timestamp(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidEventError("scheduled", "must be an ISO 8601 timestamp string")
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidEventError(
            "scheduled", f"{value!r} is not an ISO 8601 timestamp (e.g. 2026-12-24T08:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InvalidEventError(
            "scheduled", f"{value!r} is outside years 1 to 9999 once in UTC"
        ) from None


def _email(value: Any, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise InvalidEventError("email", "missing: required for the email channel")
        return None
    if not isinstance(value, str):
        raise InvalidEventError("email", f"must be a string, not {json_type(value)}")
    if len(value) > MAX_TEXT:
        raise InvalidEventError("email", f"longer than {MAX_TEXT} characters")
    address = value.strip()
    found = PLAIN_ADDRESS.fullmatch(address)
    if found is not None and found["tld"].lower() not in SPECIAL_USE_TLDS:
        return f"{found['local']}@{found['domain'].lower()}"
    try:
        checked = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEventError("email", f"{value!r} is not a valid address: {exc}") from None
    return checked.normalized


def _phone(value: Any, *, required: bool, country: str | None = None) -> str | None:
    """The number in E.164 (``+33612345678``); one without ``+`` is read as a national number
    of the event's ``country`` when that is a two-letter region code (ISO 3166-1)."""
    if value is None or value == "":
        if required:
            raise InvalidEventError("mobile_phone", "missing: required for the SMS channel")
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise InvalidEventError("mobile_phone", "must be a string")
    text = str(value).strip()
    if len(text) > MAX_PHONE:
        raise InvalidEventError("mobile_phone", f"longer than {MAX_PHONE} characters")
    region = country.strip().upper() if country else ""
    if not DIALLED.fullmatch(text):
        raise InvalidEventError(
            "mobile_phone", f"{text!r} is not a phone number (E.164: +33612345678)"
        )
    # the region a national number is read in: the event's country, an ISO 3166-1 code
    if not text.startswith("+") and region not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidEventError(
            "mobile_phone",
            f"{text!r} has no country code: write it in E.164 (+33612345678), or give the "
            "event a two-letter country (FR) to read it as a national number",
        )
    try:
        number = phonenumbers.parse(text, region or None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidEventError(
            "mobile_phone",
            f"{text!r} is not a phone number (E.164: +33612345678): {str(exc).split(') ', 1)[-1]}",
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidEventError(
            "mobile_phone",
            f"{text!r} is not a phone number: no number with country code "
            f"+{number.country_code} has this form (E.164: +33612345678)",
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
