"""Push notifications without a network: payloads and their limits, push content in templates,
the provider token's renewal (an injected clock), how answers map to outcomes, the settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import orjson
import pytest
from pydantic import SecretStr, ValidationError

from msgcenter.catcher.push import CatcherApp
from msgcenter.channels.push.apns import ProviderToken, apns_outcome
from msgcenter.channels.push.config import FcmCredentials, PushSettings
from msgcenter.channels.push.fcm import FcmClient, fcm_outcome
from msgcenter.channels.push.outcomes import PushStatus, retry_after
from msgcenter.channels.push.payload import (
    APNS_MAX_BYTES,
    PayloadError,
    PushContent,
    apns_payload,
    fcm_message,
    push_content,
)
from msgcenter.deliveries import ClaimedMessage, DeliveryStatus, Outcome
from msgcenter.errors import ConfigurationError
from msgcenter.events.model import Channel, Queue
from msgcenter.publications import Publication, PublicationSpec, compile_publication
from msgcenter.render import RenderedMessage, TemplateSyntaxProblem
from msgcenter.sending.attempts import Attempt, AttemptKind, outcome_of
from tests.conftest import FakeClock

CONTENT = PushContent(
    title="Order A-1", body="On its way", sound="default", badge=3, data={"order": "A-1"}
)


def test_apns_payload_puts_the_alert_in_aps_and_the_data_beside_it() -> None:
    payload = orjson.loads(apns_payload(CONTENT))
    assert payload == {
        "aps": {
            "alert": {"title": "Order A-1", "body": "On its way"},
            "sound": "default",
            "badge": 3,
        },
        "order": "A-1",
    }
    assert orjson.loads(apns_payload(PushContent(body="b"))) == {"aps": {"alert": {"body": "b"}}}


def test_apns_payload_of_4096_bytes_passes_and_one_more_fails() -> None:
    empty = len(apns_payload(PushContent(body="x"))) - 1
    exact = PushContent(body="x" * (APNS_MAX_BYTES - empty))
    assert len(apns_payload(exact)) == APNS_MAX_BYTES
    with pytest.raises(PayloadError, match="4097 bytes, over Apple's limit of 4096"):
        apns_payload(PushContent(body="x" * (APNS_MAX_BYTES - empty + 1)))
    # bytes, not characters
    with pytest.raises(PayloadError, match="over Apple's limit"):
        apns_payload(PushContent(body="é" * 2100))
    with pytest.raises(PayloadError, match="collapse id"):
        apns_payload(PushContent(body="b", collapse_id="c" * 65))


def test_fcm_message_carries_notification_data_and_android_options() -> None:
    message = fcm_message(
        PushContent(title="t", body="b", sound="ping", badge=2, collapse_id="c", data={"k": "v"}),
        "device",
        high_priority=False,
        ttl_seconds=90,
    )
    assert message == {
        "token": "device",
        "notification": {"title": "t", "body": "b"},
        "data": {"k": "v"},
        "android": {
            "priority": "normal",
            "ttl": "90s",
            "collapse_key": "c",
            "notification": {"sound": "ping", "notification_count": 2},
        },
    }
    assert fcm_message(PushContent(body="b"), "d", high_priority=True, ttl_seconds=-5)[
        "android"
    ] == {"priority": "high", "ttl": "0s"}
    with pytest.raises(PayloadError, match="over Google's limit of 4000"):
        fcm_message(
            PushContent(body="b", data={"k": "x" * 4000}), "d", high_priority=True, ttl_seconds=1
        )


def test_push_content_reads_the_badge_and_refuses_an_empty_notification() -> None:
    rendered = RenderedMessage(
        push_title=" T ", push_body="B", push_badge=" 7 ", push_data={"a": "1"}
    )
    assert push_content(rendered) == PushContent(title="T", body="B", badge=7, data={"a": "1"})
    assert push_content(RenderedMessage(push_body="B")).badge is None
    with pytest.raises(PayloadError, match="'seven', not a whole number"):
        push_content(RenderedMessage(push_body="B", push_badge="seven"))
    with pytest.raises(PayloadError, match="below 0"):
        push_content(RenderedMessage(push_body="B", push_badge="-1"))
    with pytest.raises(PayloadError, match="both render empty"):
        push_content(RenderedMessage(push_title=" ", push_body=""))


def spec(channel: int, **content: str | dict[str, str]) -> PublicationSpec:
    return PublicationSpec.model_validate(
        {"template": "t", "event_type": "e", "channel": channel, "version": 1, "content": content}
    )


def test_push_parts_are_rendered_and_personalised() -> None:
    compiled = compile_publication(
        Publication.draft(
            spec(
                41,
                push_title="Hi {{ ctx.name }}",
                push_data={"order": "{{ ctx.order }}", "empty": ""},
                push_sound="{{ ctx.sound }}",
                push_badge="{{ ctx.n + 1 }}",
                push_collapse_id="o-{{ ctx.order }}",
            )
        )
    )
    message = compiled.render({"id": 1}, {"name": "<Ann>", "order": "A&1", "sound": "bell", "n": 1})
    assert message.push_title == "Hi <Ann>"  # push parts are not HTML-escaped
    assert message.push_data == {"order": "A&1"}  # an empty value is left out
    assert (message.push_sound, message.push_badge, message.push_collapse_id) == (
        "bell",
        "2",
        "o-A&1",
    )
    # a template without push data renders none (and pays nothing for it)
    assert (
        compile_publication(Publication.draft(spec(42, push_body="b")))
        .render({"id": 1}, {})
        .push_data
        == {}
    )


def test_a_push_data_value_that_does_not_compile_is_located() -> None:
    with pytest.raises(TemplateSyntaxProblem) as caught:
        compile_publication(
            Publication.draft(spec(41, push_body="b", push_data={"k": "{{ 1 + }}"}))
        )
    assert caught.value.part == "push_data.k"


def test_publication_refuses_a_push_template_with_nothing_to_show() -> None:
    for channel in (41, 42):
        with pytest.raises(TemplateSyntaxProblem) as caught:
            compile_publication(Publication.draft(spec(channel, subject="only email parts")))
        assert caught.value.part == "push_body"
        assert "needs a push_title or a push_body" in caught.value.reason
        compile_publication(Publication.draft(spec(channel, push_title="title only")))
    compile_publication(Publication.draft(spec(0, subject="s")))  # email: no push parts needed


@pytest.mark.parametrize("key", ["aps", "from", "google.x", "gcm_k", "1st", "a b", "x" * 65])
def test_push_data_keys_apns_or_fcm_keep_are_refused(key: str) -> None:
    with pytest.raises(ValidationError, match="push_data key"):
        spec(42, push_body="b", push_data={key: "v"})


def test_provider_token_is_renewed_after_the_refresh_period() -> None:
    app = CatcherApp.generate()
    clock = FakeClock(1_700_000_000.0)
    token = ProviderToken(
        app.team_id,
        app.key_id,
        app.apns_key_pem.encode(),
        refresh_seconds=2400,
        clock=clock,
    )
    first = token.get()
    claims = jwt.decode(first, app.apns_public_key(), algorithms=["ES256"])
    assert claims == {"iss": app.team_id, "iat": 1_700_000_000}
    assert jwt.get_unverified_header(first) == {"alg": "ES256", "kid": app.key_id, "typ": "JWT"}
    clock.advance(2399)
    assert token.get() == first  # reused: Apple refuses renewals more often than every 20 min
    clock.advance(1)
    second = token.get()
    assert second != first
    assert jwt.decode(second, app.apns_public_key(), algorithms=["ES256"])["iat"] == 1_700_002_400
    # a refused token is renewed once, however many requests saw it refused
    clock.advance(5)
    third = token.renew(second)
    assert third != second and token.renew(second) == third


def test_provider_token_wants_an_ec_p256_key() -> None:
    with pytest.raises(ConfigurationError) as caught:
        ProviderToken("T", "K", CatcherApp.generate().fcm_key_pem.encode())
    assert "EC P-256" in caught.value.detail
    with pytest.raises(ConfigurationError) as caught:
        ProviderToken("T", "K", b"not a key")
    assert "not a PEM private key" in caught.value.detail


def test_fcm_client_wants_an_rsa_key_when_it_is_made() -> None:
    """A service account whose key is no RSA key is refused at start, not at each send."""
    app = CatcherApp.generate()
    for key in (app.apns_key_pem, "not a key"):
        account = {**app.service_account("http://127.0.0.1:1/token"), "private_key": key}
        credentials = FcmCredentials(service_account=SecretStr(orjson.dumps(account).decode()))
        with pytest.raises(ConfigurationError) as caught:
            FcmClient(credentials, timeout=1)
        assert "private_key is no RSA key" in caught.value.detail


@pytest.mark.parametrize(
    ("status", "reason", "kind", "quarantine"),
    [
        (400, "BadDeviceToken", PushStatus.PERMANENT, True),
        (410, "Unregistered", PushStatus.PERMANENT, True),
        (400, "DeviceTokenNotForTopic", PushStatus.PERMANENT, False),
        (413, "PayloadTooLarge", PushStatus.PERMANENT, False),
        (403, "InvalidProviderToken", PushStatus.TEMPORARY, False),
        (429, "TooManyRequests", PushStatus.TEMPORARY, False),
        (500, "InternalServerError", PushStatus.TEMPORARY, False),
        (503, "ServiceUnavailable", PushStatus.TEMPORARY, False),
    ],
)
def test_apns_answers_map_to_outcomes(
    status: int, reason: str, kind: PushStatus, quarantine: bool
) -> None:
    outcome = apns_outcome(status, reason, "30")
    assert (outcome.status, outcome.quarantine) == (kind, quarantine)
    assert reason in outcome.reason
    assert outcome.retry_after == (30.0 if kind is PushStatus.TEMPORARY and status != 403 else None)


@pytest.mark.parametrize(
    ("status", "grpc", "code", "kind", "quarantine"),
    [
        (404, "NOT_FOUND", "UNREGISTERED", PushStatus.PERMANENT, True),
        (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", PushStatus.PERMANENT, False),
        (403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", PushStatus.PERMANENT, False),
        (404, "NOT_FOUND", "", PushStatus.PERMANENT, False),  # a wrong project, not a dead token
        (401, "UNAUTHENTICATED", "", PushStatus.TEMPORARY, False),
        (429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", PushStatus.TEMPORARY, False),
        (503, "UNAVAILABLE", "UNAVAILABLE", PushStatus.TEMPORARY, False),
    ],
)
def test_fcm_answers_map_to_outcomes(
    status: int, grpc: str, code: str, kind: PushStatus, quarantine: bool
) -> None:
    outcome = fcm_outcome(status, grpc, code, "said", "12")
    assert (outcome.status, outcome.quarantine) == (kind, quarantine)
    assert outcome.retry_after == (12.0 if kind is PushStatus.TEMPORARY and status != 401 else None)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert retry_after("120") == 120.0
    assert retry_after("Wed, 01 Jan 2025 12:01:30 GMT", now) == 90.0
    assert retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0.0
    assert retry_after("soon") is None
    assert retry_after(None) is None


def claimed(valid_for: timedelta) -> ClaimedMessage:
    return ClaimedMessage(
        1,
        1,
        Queue.RT,
        Channel.IOS,
        "tok",
        0,
        datetime.now(UTC) + valid_for,
        {"id": 9},
        "{}",
        "json",
    )


def test_a_temporary_failure_waits_at_least_its_retry_after() -> None:
    now = datetime.now(UTC)

    def retried(valid_for: timedelta, reason: str, retry_after: float, base: float) -> Outcome:
        attempt = Attempt(AttemptKind.TEMPORARY, reason, retry_after=retry_after)
        return outcome_of(claimed(valid_for), attempt, now, base=base, maximum=10)

    waited = retried(timedelta(hours=1), "429", 120, base=1)
    assert waited.status is DeliveryStatus.PENDING and waited.due == now + timedelta(seconds=120)
    backoff = retried(timedelta(hours=1), "503", 0.5, base=5)
    assert backoff.due == now + timedelta(seconds=5)  # the backoff is longer: it wins
    expired = retried(timedelta(seconds=60), "429", 600, base=1)
    assert expired.status is DeliveryStatus.EXPIRED  # asked to wait past the validity period


def test_push_settings_pick_the_app_and_refuse_inconsistencies() -> None:
    pem = CatcherApp.generate().apns_key_pem
    apns = {"team_id": "T1", "key_id": "K1", "key": pem, "topic": "com.example"}
    one = PushSettings.model_validate({"apps": [{"uuid": "a", "apns": apns}]})
    assert one.app(None) is one.app("a") is one.apps[0]  # the only app is the default
    assert one.app("b") is None
    two = PushSettings.model_validate(
        {"apps": [{"uuid": "a", "apns": apns}, {"uuid": "b"}], "default_app": "b"}
    )
    assert two.app(None) is two.apps[1]
    assert PushSettings.model_validate({"apps": [{"uuid": "a"}, {"uuid": "b"}]}).app(None) is None
    with pytest.raises(ValidationError, match="more than once"):
        PushSettings.model_validate({"apps": [{"uuid": "a"}, {"uuid": "a"}]})
    with pytest.raises(ValidationError, match="none of the apps"):
        PushSettings.model_validate({"apps": [{"uuid": "a"}], "default_app": "z"})
    with pytest.raises(ValidationError, match="exactly one of them"):
        PushSettings.model_validate(
            {"apps": [{"uuid": "a", "apns": {**apns, "key_file": "/k.p8"}}]}
        )
    with pytest.raises(ValidationError, match="exactly one of them"):
        PushSettings.model_validate({"apps": [{"uuid": "a", "fcm": {"project_id": "p"}}]})
    with pytest.raises(ValidationError):
        PushSettings.model_validate({"token_refresh_minutes": 61})
    # the inline key is a secret: it never shows in the settings' text
    assert pem not in repr(one)
