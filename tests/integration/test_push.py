"""The push channel over real protocols on loopback: APNs over HTTP/2 with TLS (hypercorn and a
trustme certificate) and FCM HTTP v1 with its OAuth 2.0 token endpoint, both played by the
push catcher (msgcenter.catcher.push), which checks the provider JWT (ES256, iss, kid), the
apns-* headers, the JWT bearer grant (RS256, aud, scope) and the access tokens it gave.

The end-to-end tests go through an execution instance (REST intake, routing, dispatcher,
push sender) on both stores.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from sqlalchemy import select

from msgcenter.catcher.push import CatcherApp, PushCatcher
from msgcenter.channels.push.apns import ApnsClient
from msgcenter.channels.push.config import PushSettings
from msgcenter.channels.push.fcm import FcmClient
from msgcenter.channels.push.outcomes import PushStatus
from msgcenter.channels.push.payload import PushContent, apns_payload, fcm_message
from msgcenter.deliveries import ClaimedMessage
from msgcenter.events.model import Channel, Queue
from msgcenter.publications import Publication, PublicationSpec
from msgcenter.render import RenderedMessage, ctx_from_data
from msgcenter.sending.attempts import Attempt, AttemptKind
from msgcenter.sending.push import PushSender
from msgcenter.store.database import Database
from msgcenter.store.tables import quarantine
from tests.conftest import (
    FAST_PROCESSING,
    FakeClock,
    RunningServer,
    add_operator,
    free_port,
    start_exec_server,
    wait_for,
)
from tests.processing import ADMIN, all_final, delivery_logs, publish, push_rest, statuses

APP = "shop-app"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A throwaway CA (trustme) and a certificate for 127.0.0.1: (ca, cert chain, key)."""
    folder = tmp_path_factory.mktemp("push-tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(folder / "ca.pem")
    cert.cert_chain_pems[0].write_to_path(folder / "cert.pem")
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(folder / "cert.pem", append=True)
    cert.private_key_pem.write_to_path(folder / "key.pem")
    return folder / "ca.pem", folder / "cert.pem", folder / "key.pem"


@pytest.fixture
def catcher(tls: tuple[Path, Path, Path]) -> Iterator[PushCatcher]:
    """APNs and FCM on one HTTP/2 server with TLS."""
    _ca, cert, key = tls
    server = PushCatcher(
        [CatcherApp.generate(APP, "Shop", topic="com.example.shop", project_id="shop-project")],
        certfile=cert,
        keyfile=key,
    )
    server.start()
    yield server
    server.stop()


def push_settings(catcher: PushCatcher, ca: Path, **changes: Any) -> dict[str, Any]:
    return {**catcher.push_settings(), "ca_file": str(ca), **changes}


def push_server(db: Database, push: dict[str, Any]) -> tuple[Any, RunningServer]:
    add_operator(db, *ADMIN)
    return start_exec_server(db, processing=FAST_PROCESSING, push=push)


def push_publication(channel: int, **content: Any) -> dict[str, Any]:
    return {
        "template": f"order_push_{channel}",
        "event_type": "order_confirmation",
        "channel": channel,
        "version": 1,
        "content": {
            "push_title": "Order {{ ctx.order.id }}",
            "push_body": "Thanks {{ ctx.client.firstname }}, it is on its way",
            "push_data": {"order": "{{ ctx.order.id }}", "screen": "orders"},
            "push_sound": "default",
            "push_badge": "{{ ctx.unread }}",
            "push_collapse_id": "order-{{ ctx.order.id }}",
            **content,
        },
    }


def push_event(channel: str, token: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "order_confirmation",
        "wished_channel": channel,
        "registration_token": token,
        "mobile_app_uuid": APP,
        "ctx": {"order": {"id": "A-1"}, "client": {"firstname": "Ann"}, "unread": 2},
        **fields,
    }


def quarantined(db: Database) -> dict[str, int]:
    with db.read() as conn:
        rows = conn.execute(
            select(quarantine.c.address, quarantine.c.channel).where(quarantine.c.active)
        )
        return {address: channel for address, channel in rows}


def final_statuses(db: Database, ids: list[int]) -> dict[int, str]:
    wait_for(lambda: all_final(db, ids), message="final statuses")
    return statuses(db, ids)


# -- APNs ------------------------------------------------------------------------------------


def test_apns_end_to_end_sent_dead_token_and_retry_after(
    db: Database, catcher: PushCatcher, tls: tuple[Path, Path, Path]
) -> None:
    catcher.fail("dead", 400, "BadDeviceToken")
    catcher.fail("busy", 429, "TooManyRequests", retry_after=2)
    threaded, server = push_server(db, push_settings(catcher, tls[0]))
    with threaded:
        publish(server, push_publication(41))
        started = time.monotonic()
        ok, dead, busy = push_rest(
            server, [push_event("ios", "a1b2"), push_event("ios", "dead"), push_event("41", "busy")]
        )
        assert final_statuses(db, [ok, dead]) == {ok: "sent", dead: "delivery_failed"}

        sent = next(n for n in catcher.notifications if n.token == "a1b2")
        assert (sent.channel, sent.app, sent.title, sent.body) == (
            "ios",
            APP,
            "Order A-1",
            "Thanks Ann, it is on its way",
        )
        assert sent.http_version == "2"
        assert sent.data == {"order": "A-1", "screen": "orders"}
        assert sent.payload["aps"] == {
            "alert": {"title": "Order A-1", "body": "Thanks Ann, it is on its way"},
            "sound": "default",
            "badge": 2,
        }
        assert sent.headers["apns-topic"] == "com.example.shop"
        assert sent.headers["apns-push-type"] == "alert"
        assert sent.headers["apns-priority"] == "10"
        assert sent.headers["apns-collapse-id"] == "order-A-1"
        log = delivery_logs(db, ok)[0]
        assert int(sent.headers["apns-expiration"]) == int(_utc(log["valid_until"]).timestamp())
        assert log["message_id"]  # the apns-id

        failed = delivery_logs(db, dead)[0]
        assert failed["failure_type"] == "user_unknown"
        assert "BadDeviceToken" in failed["failure_reason"]
        assert quarantined(db) == {"dead": int(Channel.IOS)}

        # 429: retried, not before the Retry-After of 2 s (the backoff alone is 0.2 s)
        assert final_statuses(db, [busy]) == {busy: "sent"}
        assert time.monotonic() - started >= 1.8
        retried = delivery_logs(db, busy)[0]
        assert retried["attempts"] >= 2

        # a quarantined token's next event is ignored without a send attempt
        before = len(catcher.notifications)
        (again,) = push_rest(server, push_event("ios", "dead"))
        assert final_statuses(db, [again]) == {again: "ignored"}
        assert len(catcher.notifications) == before


def test_apns_streams_share_one_http2_connection(
    catcher: PushCatcher, tls: tuple[Path, Path, Path]
) -> None:
    settings = PushSettings.model_validate(push_settings(catcher, tls[0]))
    sender = PushSender(settings, Channel.IOS)
    client = sender._clients[APP]  # the app's client, as the sender uses it
    assert isinstance(client, ApnsClient)
    payload = apns_payload(PushContent(title="t", body="b"))

    async def send_all() -> list[Any]:
        try:
            return await asyncio.gather(
                *(client.send(f"d{i}", payload, priority=5, expiration=0) for i in range(40))
            )
        finally:
            await sender.close()

    outcomes = asyncio.run(send_all())
    assert {o.status for o in outcomes} == {PushStatus.SENT}
    caught = catcher.notifications
    assert len(caught) == 40
    assert {n.http_version for n in caught} == {"2"}
    assert len({n.peer for n in caught}) == 1  # one connection, many streams
    assert {n.headers["apns-priority"] for n in caught} == {"5"}


def test_apns_refused_provider_token_is_renewed_once_then_temporary(
    catcher: PushCatcher, tls: tuple[Path, Path, Path]
) -> None:
    """A token signed with a key that is not the app's: APNs answers InvalidProviderToken, the
    client renews the token once, and still refused the message waits (temporary)."""
    settings = push_settings(catcher, tls[0])
    apns = settings["apps"][0]["apns"]
    apns["key"] = CatcherApp.generate().apns_key_pem  # same key id, another key
    credentials = PushSettings.model_validate(settings).apps[0].apns
    assert credentials is not None
    verify = ssl.create_default_context(cafile=tls[0])
    client = ApnsClient(credentials, timeout=5, refresh_seconds=2400, verify=verify)
    first = client.token.get()

    async def send() -> Any:
        try:
            return await client.send("d1", b'{"aps":{"alert":"x"}}', priority=10, expiration=0)
        finally:
            await client.close()

    outcome = asyncio.run(send())
    assert outcome.status is PushStatus.TEMPORARY
    assert "InvalidProviderToken" in outcome.reason
    assert client.token.get() != first  # renewed
    assert catcher.notifications == []


def test_apns_unreachable_is_temporary_and_marks_the_relay() -> None:
    app = CatcherApp.generate(APP)
    down = PushCatcher([app], port=free_port())  # never started
    settings = PushSettings.model_validate(down.push_settings())
    sender = PushSender(settings, Channel.IOS)
    message = ClaimedMessage(
        1,
        1,
        Queue.RT,
        Channel.IOS,
        "d",
        0,
        datetime.now(UTC) + timedelta(hours=1),
        {},
        "{}",
        "json",
    )
    publication = Publication.draft(PublicationSpec.model_validate(push_publication(41)))

    async def run() -> tuple[Attempt, bool]:
        try:
            attempt = await sender.send(
                message, publication, RenderedMessage(push_body="b"), ctx_from_data({})
            )
            return attempt, await sender.probe()
        finally:
            await sender.close()

    attempt, answered = asyncio.run(run())
    assert attempt.kind is AttemptKind.TEMPORARY and "APNs not reachable" in attempt.reason
    assert sender.health.outage is not None  # the relay is marked unreachable
    assert not answered


# -- FCM -------------------------------------------------------------------------------------


@pytest.fixture
def plain_catcher() -> Iterator[PushCatcher]:
    """APNs and FCM over plain HTTP (HTTP/2 by prior knowledge), as the embedded mode runs it."""
    server = PushCatcher([CatcherApp.generate(APP, "Shop", project_id="shop-project")])
    server.start()
    yield server
    server.stop()


def test_fcm_end_to_end_sent_renewed_token_and_unregistered(
    db: Database, plain_catcher: PushCatcher
) -> None:
    catcher = plain_catcher
    catcher.fail("gone", 404, "UNREGISTERED")
    threaded, server = push_server(db, catcher.push_settings())
    with threaded:
        publish(server, push_publication(42))
        ok, gone = push_rest(server, [push_event("android", "tok-1"), push_event("42", "gone")])
        assert final_statuses(db, [ok, gone]) == {ok: "sent", gone: "delivery_failed"}
        sent = catcher.notifications[0]
        assert (sent.channel, sent.token, sent.title, sent.data) == (
            "android",
            "tok-1",
            "Order A-1",
            {"order": "A-1", "screen": "orders"},
        )
        assert sent.http_version == "2"
        android = sent.payload["android"]
        assert android["priority"] == "high"
        assert android["collapse_key"] == "order-A-1"
        assert android["notification"] == {"sound": "default", "notification_count": 2}
        assert 0 < int(android["ttl"].rstrip("s")) <= 3600
        assert delivery_logs(db, ok)[0]["message_id"].startswith("projects/shop-project/messages/")
        assert "UNREGISTERED" in delivery_logs(db, gone)[0]["failure_reason"]
        assert quarantined(db) == {"gone": int(Channel.ANDROID)}

        # the access token expires at the service: 401, renewed once, the message sent
        catcher.expire_access_tokens()
        (later,) = push_rest(server, push_event("android", "tok-2"))
        assert final_statuses(db, [later]) == {later: "sent"}
        assert catcher.notifications[0].token == "tok-2"


def test_fcm_access_token_is_cached_until_near_expiry(plain_catcher: PushCatcher) -> None:
    settings = PushSettings.model_validate(plain_catcher.push_settings())
    # the client's clock starts in the past so that each assertion it signs is still valid now
    clock = FakeClock(time.time() - 3500)
    fcm = settings.apps[0].fcm
    assert fcm is not None
    client = FcmClient(fcm, timeout=5, clock=clock)
    message = fcm_message(PushContent(body="b"), "t", high_priority=False, ttl_seconds=60)

    async def run() -> list[str]:
        try:
            tokens = [await client.token.get()]
            assert (await client.send(message)).status is PushStatus.SENT
            clock.advance(3000)  # within the hour, before the renewal margin
            tokens.append(await client.token.get())
            clock.advance(400)  # less than 5 minutes left
            tokens.append(await client.token.get())
            return tokens
        finally:
            await client.close()

    first, cached, renewed = asyncio.run(run())
    assert first == cached != renewed


def test_fcm_refused_grant_is_temporary(plain_catcher: PushCatcher) -> None:
    """A service account the token endpoint does not know (another key): the grant is refused,
    the message waits."""
    settings = plain_catcher.push_settings()
    other = CatcherApp.generate(APP, project_id="shop-project")
    settings["apps"][0]["fcm"]["service_account"] = json.dumps(
        {**other.service_account(plain_catcher.token_uri), "client_email": "x@y.z"}
    )
    fcm = PushSettings.model_validate(settings).apps[0].fcm
    assert fcm is not None
    client = FcmClient(fcm, timeout=5)

    async def run() -> Any:
        try:
            return await client.send({"token": "t", "notification": {"body": "b"}})
        finally:
            await client.close()

    outcome = asyncio.run(run())
    assert outcome.status is PushStatus.TEMPORARY
    assert "access token refused" in outcome.reason
    assert plain_catcher.notifications == []


# -- bad input -------------------------------------------------------------------------------


def test_bad_push_input_fails_clearly(db: Database, plain_catcher: PushCatcher) -> None:
    catcher = plain_catcher
    threaded, server = push_server(db, catcher.push_settings())
    with threaded:
        publish(server, push_publication(41, push_data={"blob": "{{ ctx.blob }}"}))
        publish(server, push_publication(42, push_data={"blob": "{{ ctx.blob }}"}))
        big = {"order": {"id": "A-1"}, "client": {"firstname": "Ann"}, "blob": "x" * 5000}
        ios_big, android_big, unknown, bad_badge = push_rest(
            server,
            [
                push_event("ios", "t1", ctx=big),
                push_event("android", "t2", ctx=big),
                push_event("ios", "t3", mobile_app_uuid="no-such-app"),
                push_event("android", "t4", ctx={"unread": "many"}),
            ],
        )
        done = final_statuses(db, [ios_big, android_big, unknown, bad_badge])
        assert set(done.values()) == {"delivery_failed"}
        reasons = {i: delivery_logs(db, i)[0]["failure_reason"] for i in done}
        assert "over Apple's limit of 4096" in reasons[ios_big]
        assert "over Google's limit of 4000" in reasons[android_big]
        assert "unknown mobileApp uuid 'no-such-app'" in reasons[unknown]
        assert "push_badge renders 'many', not a whole number" in reasons[bad_badge]
        assert catcher.notifications == []  # nothing half-sent
        assert quarantined(db) == {}

        # intake refuses a push event without a device token
        answer = httpx.post(
            f"{server.url}/api/v1/events/rt",
            json={**push_event("ios", "x"), "registration_token": None},
            auth=ADMIN,
        )
        assert answer.status_code == 422
        assert "registration_token" in answer.text

        # publication refuses a push template that shows nothing
        refused = httpx.put(
            f"{server.url}/api/v1/admin/publications",
            json=push_publication(41, push_title="", push_body=""),
            auth=ADMIN,
        )
        assert refused.status_code in (400, 422), refused.text
        assert "push_title or a push_body" in refused.text


def test_no_default_app_and_no_uuid_fails_clearly(db: Database, plain_catcher: PushCatcher) -> None:
    second = CatcherApp.generate("other-app")
    catcher = PushCatcher([*plain_catcher.apps, second])
    settings = {**catcher.push_settings(), "default_app": ""}
    threaded, server = push_server(db, settings)
    with threaded:
        publish(server, push_publication(42))
        (nameless,) = push_rest(server, push_event("android", "t", mobile_app_uuid=None))
        assert final_statuses(db, [nameless]) == {nameless: "delivery_failed"}
        reason = delivery_logs(db, nameless)[0]["failure_reason"]
        assert "no mobileApp uuid and no push.default_app" in reason


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
