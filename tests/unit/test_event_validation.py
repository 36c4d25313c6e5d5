"""validate_event: one validator for SOAP and REST, field by field (SPEC §3.1, §3.2 intake rules)."""

from datetime import UTC, datetime

import pytest

from msgcenter.errors import InvalidEventError
from msgcenter.events.model import Channel, CtxFormat, EmailFormat
from msgcenter.events.validation import json_type, validate_event

#: marks a field to leave out of the event
MISSING = object()


def fields(**overrides):
    """A valid email event's fields, with ``overrides`` (``MISSING`` removes a field)."""
    base = {"type": "order_confirmation", "email": "ann@example.com"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not MISSING}


def check(ctx="{}", **overrides):
    """Validate an event built from :func:`fields`."""
    return validate_event(fields(**overrides), ctx, CtxFormat.JSON)


def refused(field, fragment, ctx="{}", **overrides):
    """Assert the event is refused on ``field`` with a reason containing ``fragment``."""
    with pytest.raises(InvalidEventError) as caught:
        check(ctx, **overrides)
    assert caught.value.field == field
    assert fragment in caught.value.reason, caught.value.reason
    assert caught.value.position is None
    return caught.value


# -- a good event ------------------------------------------------------------------------


def test_minimal_event_gets_the_defaults():
    event = check()
    assert event.type == "order_confirmation"
    assert event.email == "ann@example.com"
    assert event.ctx == "{}"
    assert event.ctx_format is CtxFormat.JSON
    assert event.wished_channel is Channel.EMAIL
    assert event.email_format is EmailFormat.UNKNOWN
    assert event.scheduled is None
    assert event.extra == {}
    assert event.idempotency_key is None
    assert (event.mobile_phone, event.registration_token, event.external_id) == (None, None, None)


def test_every_field_is_carried_over():
    event = validate_event(
        {
            "type": "parcel.shipped:v2",
            "email": "  ann@example.com ",
            "mobile_phone": "+33 6 12 34 56 78",
            "registration_token": "tok-123",
            "mobile_app_uuid": "app-uuid",
            "wished_channel": "sms",
            "email_format": "2",
            "external_id": " cust-42 ",
            "origin": "shop",
            "language": "fr",
            "country": "FR",
            "correlation_id": "corr-1",
            "scheduled": "2030-01-02T03:04:05+02:00",
        },
        "<ctx/>",
        CtxFormat.XML,
        idempotency_key="key-1",
    )
    assert event.type == "parcel.shipped:v2"
    assert event.email == "ann@example.com"
    assert event.mobile_phone == "+33612345678"  # normalised to E.164
    assert event.registration_token == "tok-123"
    assert event.mobile_app_uuid == "app-uuid"
    assert event.wished_channel is Channel.SMS
    assert event.email_format is EmailFormat.HTML
    assert event.external_id == "cust-42"
    assert (event.origin, event.language, event.country) == ("shop", "fr", "FR")
    assert event.correlation_id == "corr-1"
    assert event.scheduled == datetime(2030, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert (event.ctx, event.ctx_format) == ("<ctx/>", CtxFormat.XML)
    assert event.idempotency_key == "key-1"
    assert event.extra == {}


def test_unknown_fields_are_kept_in_extra():
    event = check(campaign="spring", priority=3, nested={"a": [1, 2]})
    assert event.extra == {"campaign": "spring", "priority": 3, "nested": {"a": [1, 2]}}


def test_numbers_in_text_fields_become_strings():
    assert check(external_id=42).external_id == "42"
    # a number without + is read in the event's country (FR), then written in E.164
    assert (
        check(
            wished_channel="sms", email=MISSING, mobile_phone=33612345678, country="FR"
        ).mobile_phone
        == "+33612345678"
    )


def test_email_domain_is_normalised():
    assert check(email="Ann@Example.COM").email == "Ann@example.com"


@pytest.mark.parametrize(
    "name", ["order_confirmation", "_private", "a.b:c-d", "X" * 64, "passwordReset2"]
)
def test_valid_type_names(name):
    assert check(type=name).type == name


@pytest.mark.parametrize(
    ("value", "channel"),
    [
        (None, Channel.EMAIL),
        ("", Channel.EMAIL),
        (0, Channel.EMAIL),
        ("0", Channel.EMAIL),
        ("email", Channel.EMAIL),
        ("EMAIL", Channel.EMAIL),
        (1, Channel.SMS),
        ("sms", Channel.SMS),
        ("mobile", Channel.SMS),
        (41, Channel.IOS),
        ("ios", Channel.IOS),
        (" 42 ", Channel.ANDROID),
        (" Android ", Channel.ANDROID),
    ],
)
def test_wished_channel_codes_and_labels(value, channel):
    event = check(
        wished_channel=value, mobile_phone="+33612345678", registration_token="device-token"
    )
    assert event.wished_channel is channel


@pytest.mark.parametrize(
    ("value", "email_format"),
    [
        (None, EmailFormat.UNKNOWN),
        (0, EmailFormat.UNKNOWN),
        (1, EmailFormat.TEXT),
        ("1", EmailFormat.TEXT),
        (2, EmailFormat.HTML),
        (2.0, EmailFormat.HTML),
    ],
)
def test_email_format_codes(value, email_format):
    assert check(email_format=value).email_format is email_format


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-12-24T08:00:00Z", datetime(2026, 12, 24, 8, 0, tzinfo=UTC)),
        ("2026-12-24T09:30:00+01:30", datetime(2026, 12, 24, 8, 0, tzinfo=UTC)),
        ("2026-12-24T03:00:00-05:00", datetime(2026, 12, 24, 8, 0, tzinfo=UTC)),
        ("2026-12-24T08:00:00", datetime(2026, 12, 24, 8, 0, tzinfo=UTC)),
        (" 2026-12-24 08:00:00.250 ", datetime(2026, 12, 24, 8, 0, 0, 250_000, tzinfo=UTC)),
    ],
    ids=["zulu", "plus-offset", "minus-offset", "no-zone-is-utc", "space-and-fraction"],
)
def test_scheduled_is_stored_in_utc(text, utc):
    scheduled = check(scheduled=text).scheduled
    assert scheduled == utc
    assert scheduled.utcoffset().total_seconds() == 0


def test_sms_needs_no_email():
    event = check(wished_channel="sms", email=MISSING, mobile_phone="+33612345678")
    assert (event.email, event.mobile_phone) == (None, "+33612345678")


@pytest.mark.parametrize("channel", ["ios", "android"])
def test_push_needs_a_registration_token_not_an_email(channel):
    event = check(wished_channel=channel, email=MISSING, registration_token="tok")
    assert (event.email, event.registration_token) == (None, "tok")


# -- refused events ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"type": MISSING}, "type", "missing"),
        ({"type": ""}, "type", "missing"),
        ({"type": 42}, "type", "'42' is not a valid event type name"),
        ({"type": ["a"]}, "type", "must be a string, not array"),
        ({"type": {"a": 1}}, "type", "must be a string, not object"),
        ({"type": True}, "type", "must be a string, not boolean"),
        ({"type": "order confirmation"}, "type", "not a valid event type name"),
        ({"type": "9lives"}, "type", "not a valid event type name"),
        ({"type": "x" * 65}, "type", "not a valid event type name"),
        ({"email": MISSING}, "email", "missing: required for the email channel"),
        ({"email": "", "wished_channel": "email"}, "email", "missing"),
        ({"email": "not-an-address"}, "email", "'not-an-address' is not a valid address"),
        ({"email": "ann@"}, "email", "is not a valid address"),
        ({"email": 42}, "email", "must be a string, not number"),
        ({"email": "a" * 250 + "@example.com"}, "email", "longer than 255"),
        ({"wished_channel": "fax"}, "wished_channel", "unknown channel 'fax'"),
        ({"wished_channel": 7}, "wished_channel", "unknown channel code 7"),
        ({"wished_channel": "99"}, "wished_channel", "unknown channel code 99"),
        ({"wished_channel": True}, "wished_channel", "not a boolean"),
        ({"wished_channel": 1.5}, "wished_channel", "unknown channel 1.5"),
        ({"email_format": 3}, "email_format", "3 is out of range"),
        ({"email_format": -1}, "email_format", "out of range"),
        ({"email_format": True}, "email_format", "out of range"),
        ({"email_format": "html"}, "email_format", "out of range"),
        ({"email_format": 1.5}, "email_format", "out of range"),
        ({"scheduled": "tomorrow"}, "scheduled", "'tomorrow' is not an ISO 8601 timestamp"),
        ({"scheduled": "2026-13-01T00:00:00Z"}, "scheduled", "not an ISO 8601 timestamp"),
        ({"scheduled": 1_700_000_000}, "scheduled", "must be an ISO 8601 timestamp string"),
        ({"wished_channel": "sms", "email": MISSING}, "mobile_phone", "required for the SMS"),
        ({"wished_channel": 1, "mobile_phone": "call me"}, "mobile_phone", "not a phone number"),
        ({"mobile_phone": ["+33"]}, "mobile_phone", "must be a string"),
        ({"wished_channel": "ios", "email": MISSING}, "registration_token", "missing"),
        ({"wished_channel": 42, "email": MISSING}, "registration_token", "missing"),
        ({"registration_token": "t" * 4097}, "registration_token", "longer than 4096"),
        ({"origin": "o" * 256}, "origin", "longer than 255"),
        ({"external_id": {"id": 1}}, "external_id", "must be a string, not object"),
        ({"country": ["FR"]}, "country", "must be a string, not array"),
    ],
)
def test_refused_field(overrides, field, fragment):
    error = refused(field, fragment, **overrides)
    assert error.detail == f"invalid '{field}': {error.reason}"


def test_an_event_without_ctx_has_an_empty_one():
    # the model product's minimal event is <rtEvent type="…" email="…"/>
    assert validate_event(fields(), None, CtxFormat.XML).ctx == "<ctx></ctx>"
    assert validate_event(fields(), None, CtxFormat.JSON).ctx == "{}"


def test_position_is_added_by_at_position():
    error = refused("email", "missing", email=MISSING).at_position(3)
    assert (error.field, error.position) == ("email", 3)
    assert error.detail == "event 3: invalid 'email': missing: required for the email channel"


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "null"),
        (True, "boolean"),
        (3, "number"),
        (2.5, "number"),
        ("x", "string"),
        ([1], "array"),
        ({"a": 1}, "object"),
    ],
)
def test_json_type_names_for_messages(value, name):
    assert json_type(value) == name


@pytest.mark.parametrize(
    ("number", "country", "expected"),
    [
        ("+33 6 12 34 56 78", None, "+33612345678"),
        ("+33 (0)6 12-34-56-78", None, "+33612345678"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("06 12 34 56 78", " fr ", "+33612345678"),
        ("07700 900123", "GB", None),  # Ofcom's drama range: no real number
        ("020 7946 0018", "GB", "+442079460018"),
        ("+44 20 7946 0018", "DE", "+442079460018"),  # the + wins over the country
    ],
)
def test_phone_numbers_are_normalised_to_e164(number, country, expected):
    if expected is None:
        refused(
            "mobile_phone",
            "is not a phone number",
            wished_channel="sms",
            mobile_phone=number,
            country=country,
        )
    else:
        assert check(mobile_phone=number, country=country).mobile_phone == expected


@pytest.mark.parametrize(
    ("number", "country", "fragment"),
    [
        ("0612345678", None, "has no country code"),
        ("0612345678", "France", "has no country code"),
        ("0612345678", "ZZ", "has no country code"),
        ("+33 6 12", None, "is not a phone number"),
        ("+1 555 123 4567", None, "no number with country code +1 has this form"),
        ("not a number", "FR", "is not a phone number"),
        ("+" + "1" * 70, None, "longer than 64 characters"),
    ],
)
def test_phone_numbers_that_are_not_are_refused(number, country, fragment):
    refused("mobile_phone", fragment, wished_channel="sms", mobile_phone=number, country=country)
