"""Delivery-status webhooks without I/O: types, URLs, secrets, signatures, backoff, and how the
outbox reader passes over missing ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from msgcenter.errors import InvalidInputError
from msgcenter.sending.attempts import retry_delay
from msgcenter.store.webhooks import Cursor, _take_contiguous
from msgcenter.webhooks import (
    Outcome,
    Subscription,
    WebhookType,
    new_message_id,
    new_secret,
    parse_types,
    parse_url,
    payload,
    signature_headers,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_types_are_parsed_by_full_or_short_name_and_unknown_ones_named():
    assert parse_types("sent, message.opened") == {WebhookType.SENT, WebhookType.OPENED}
    with pytest.raises(InvalidInputError, match="unknown webhook type 'sold'") as caught:
        parse_types(["sold"])
    assert "message.clicked" in caught.value.detail
    with pytest.raises(InvalidInputError, match="no webhook type"):
        parse_types("")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://example.com/", "scheme 'ftp'"),
        ("example.com/hook", "scheme '(none)'"),
        ("https:///hook", "names no host"),
        ("https://u:p@example.com/", "credentials"),
        ("https://example.com:99999/", "Port out of range"),
        ("https://example.com/a b", "no blanks"),
        ("https://example.com/" + "a" * 3000, "at most 2048"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url, words):
    with pytest.raises(InvalidInputError) as caught:
        parse_url(url)
    assert words in caught.value.detail


def test_a_url_gives_its_host_and_port():
    assert (parse_url("https://hooks.example.com/x").port, parse_url("http://h/").port) == (443, 80)
    assert parse_url("http://[::1]:8080/x").host == "::1"


def test_secrets_and_message_ids_have_the_standard_form():
    secret = new_secret()
    assert secret.startswith("whsec_") and len(Webhook(secret)._whsecret) == 32
    assert new_secret() != secret
    assert new_message_id().startswith("msg_") and len(new_message_id()) == 30


def test_signatures_verify_with_each_secret_in_force_and_no_other():
    old, new = new_secret(), new_secret()
    body = payload(Outcome(WebhookType.SENT, None, NOW, {"event_id": 1}))
    now = datetime.now(UTC)
    headers = signature_headers("msg_1", body, (new, old), now)
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (new, old):
        assert Webhook(secret).verify(body, headers)["data"] == {"event_id": 1}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body + b" ", headers)


def test_the_payload_has_type_timestamp_and_data():
    body = payload(Outcome(WebhookType.CLICKED, "a", NOW, {"url": "https://x"}))
    assert body == (
        b'{"type":"message.clicked","timestamp":"2026-03-01T12:00:00Z","data":{"url":"https://x"}}'
    )


def test_retry_delays_double_up_to_the_maximum():
    assert [retry_delay(n, 5, 30).total_seconds() for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 30, 30]


def test_a_subscription_wants_its_types_of_its_folder_while_active():
    def subscription(folder: str | None, active: bool = True) -> Subscription:
        return Subscription(
            1, folder, "https://x", frozenset({WebhookType.SENT}), active, None, None, NOW, NOW
        )

    sent_a = Outcome(WebhookType.SENT, "a", NOW, {})
    assert subscription("a").wants(sent_a) and subscription(None).wants(sent_a)
    assert not subscription("b").wants(sent_a)
    assert not subscription("a", active=False).wants(sent_a)
    assert not subscription("a").wants(Outcome(WebhookType.OPENED, "a", NOW, {}))


def test_the_reader_stops_at_a_missing_id_until_it_has_waited_long_enough():
    wait = timedelta(seconds=10)
    cursor = Cursor("status_change", 10, None, None)
    # 11 and 12 follow on; 13 is missing: maybe a transaction still under way
    assert _take_contiguous(cursor, [11, 12, 14, 15], NOW, wait) == 2
    assert cursor.gap_since == NOW
    cursor.position = 12
    # still missing, not for long enough: nothing past it
    assert _take_contiguous(cursor, [14, 15], NOW + timedelta(seconds=5), wait) == 0
    assert cursor.gap_since == NOW
    # 13 committed meanwhile: read in order, the wait is over
    assert _take_contiguous(cursor, [13, 14, 15], NOW + timedelta(seconds=6), wait) == 3
    assert cursor.gap_since is None


def test_a_hole_that_stays_is_passed_over_after_the_wait_and_the_next_one_waits_again():
    wait = timedelta(seconds=10)
    cursor = Cursor("status_change", 10, None, NOW)
    later = NOW + timedelta(seconds=10)
    assert _take_contiguous(cursor, [12, 13, 15], later, wait) == 2
    assert cursor.gap_since == later  # 14's own wait starts now
    cursor.position = 13
    assert _take_contiguous(cursor, [15], later + timedelta(seconds=10), wait) == 1
    assert cursor.gap_since is None
