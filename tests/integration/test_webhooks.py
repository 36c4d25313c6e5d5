"""Delivery-status webhooks (SPEC §3.7): outcomes of real events posted, signed to the Standard
Webhooks specification, to a real receiver on loopback that verifies each signature with
``standardwebhooks.Webhook(secret).verify``; retries, disabling, replay, rotation, folders,
and refusals of bad input.

Every test runs on SQLite and PostgreSQL, with a real SMTP server on loopback and real HTTP
intake; intervals are shortened by settings.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, insert, select
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from typer.testing import CliRunner

import msgcenter.cli
from msgcenter.bounces import ReportKind
from msgcenter.store import bounces as bounce_store
from msgcenter.store import processing as processing_store
from msgcenter.store import tracking as tracking_store
from msgcenter.store import webhooks as webhook_store
from msgcenter.store.database import Database
from msgcenter.store.tables import event, event_status_change, webhook_message, webhook_subscription
from msgcenter.tracking import TrackingKind
from msgcenter.webhooks import AttemptResult, WebhookType, new_secret
from tests.conftest import (
    FAST_PROCESSING,
    RunningServer,
    ThreadedServer,
    add_operator,
    start_exec_server,
    wait_for,
)
from tests.processing import (
    ADMIN,
    all_final,
    delivery_logs,
    order_publication,
    publish,
    push_rest,
)

CTX = {"client": {"firstname": "Ann"}, "order": {"id": "1001"}}
#: webhook settings that make collection, retries and disabling fast enough for tests
FAST_WEBHOOKS = {
    "allow_private_networks": True,  # the receiver listens on 127.0.0.1
    "collect_interval_seconds": 0.05,
    "retry_base_seconds": 0.1,
    "retry_max_seconds": 0.3,
    "gap_wait_seconds": 1.0,
    "settle_seconds": 0.2,
    "timeout_seconds": 5,
}
ALL_TYPES = [
    "message.sent",
    "message.delivered",
    "message.delivery_failed",
    "message.ignored",
    "message.not_taken_into_account",
    "message.expired",
    "message.bounced",
    "message.complained",
    "message.opened",
    "message.clicked",
]
SENT = ["message.sent"]


def order_event(email: str, **fields: object) -> dict[str, object]:
    return {"type": "order_confirmation", "email": email, "ctx": CTX, **fields}


@dataclass
class Post:
    """One request the receiver got."""

    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def verifies(self, secret: str) -> Any:
        """The payload, if the signature verifies with ``secret`` (else None)."""
        try:
            return Webhook(secret).verify(self.body, self.headers)
        except WebhookVerificationError:
            return None


@dataclass
class Receiver:
    """A webhook receiver on loopback: records every post and answers the scripted statuses
    (then 204); ``always`` answers that status to every post."""

    url: str = ""
    posts: list[Post] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    always: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            status = self.always or (self.script.pop(0) if self.script else 204)
            self.posts.append(Post(dict(request.headers), body, status))
        return Response(status_code=status)

    def delivered(self, secret: str) -> dict[str, Any]:
        """The payloads of successful, verified posts, by webhook-id (the receiver's dedup)."""
        with self.lock:
            posts = list(self.posts)
        return {
            p.webhook_id: payload
            for p in posts
            if p.status < 300 and (payload := p.verifies(secret)) is not None
        }

    def of_type(self, secret: str, kind: str) -> list[dict[str, Any]]:
        return [p for p in self.delivered(secret).values() if p["type"] == kind]


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/hook", receiver.hook, methods=["POST"])])
    with ThreadedServer(app) as base:
        receiver.url = f"{base}/hook"
        yield receiver


@contextmanager
def webhook_server(db: Database, smtp_port: int, **webhooks: Any) -> Iterator[RunningServer]:
    """An execution instance with its workflows running, relaying to 127.0.0.1:``smtp_port``."""
    add_operator(db, *ADMIN)
    threaded, running = start_exec_server(
        db,
        processing=FAST_PROCESSING,
        smtp={"host": "127.0.0.1", "port": smtp_port, "timeout_seconds": 5},
        webhooks={**FAST_WEBHOOKS, **webhooks},
    )
    with threaded:
        yield running


def subscribe(
    server: RunningServer, url: str, types: list[str] | None = None, auth: Any = ADMIN, **more: Any
) -> dict[str, Any]:
    answer = httpx.post(
        f"{server.url}/api/v1/webhooks",
        json={"url": url, "types": types or ALL_TYPES, **more},
        auth=auth,
    )
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["secret"].startswith("whsec_")
    return created


@contextmanager
def subscribed(
    db: Database, smtp_port: int, types: list[str] | None = None, **webhooks: Any
) -> Iterator[tuple[Receiver, RunningServer, dict[str, Any]]]:
    """A receiver, an execution instance that routes order events, and the receiver's
    subscription to ``types`` (every type by default), as created."""
    with receiving() as receiver, webhook_server(db, smtp_port, **webhooks) as server:
        publish(server, order_publication())
        yield receiver, server, subscribe(server, receiver.url, types)


def api(server: RunningServer, method: str, path: str, **options: Any) -> httpx.Response:
    return httpx.request(
        method, f"{server.url}/api/v1/webhooks{path}", auth=options.pop("auth", ADMIN), **options
    )


def messages(server: RunningServer, subscription_id: int) -> list[dict[str, Any]]:
    answer = api(server, "GET", f"/{subscription_id}/messages")
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_outcomes_are_posted_signed_and_verify(db, smtp_server):
    smtp_server.handler.scripted["gone@example.com"] = [
        "550 5.1.1 <gone@example.com>: User unknown"
    ]
    with subscribed(db, smtp_server.port) as (receiver, server, hook):
        secret = hook["secret"]
        (sent,) = push_rest(server, order_event("ann@example.com", external_id="c-1"))
        (failed,) = push_rest(server, order_event("gone@example.com"))
        wait_for(lambda: all_final(db, [sent, failed]), message="the first events to be final")
        # the address is quarantined now: the next message to it is ignored
        (ignored,) = push_rest(server, order_event("gone@example.com"))
        (unrouted,) = push_rest(
            server, {"type": "no_such_type", "email": "ann@example.com", "ctx": {}}
        )
        wait_for(lambda: all_final(db, [ignored, unrouted]), message="the others to be final")

        wanted = {
            "message.sent": sent,
            "message.delivery_failed": failed,
            "message.ignored": ignored,
            "message.not_taken_into_account": unrouted,
        }
        wait_for(
            lambda: all(receiver.of_type(secret, kind) for kind in wanted),
            message="every outcome to be posted",
        )
        by_type = {kind: receiver.of_type(secret, kind) for kind in wanted}
        for kind, event_id in wanted.items():
            assert [p["data"]["event_id"] for p in by_type[kind]] == [event_id], kind

        (log,) = delivery_logs(db, sent)
        (posted,) = by_type["message.sent"]
        assert posted["data"] == {
            "event_id": sent,
            "event_type": "order_confirmation",
            "queue": "rt",
            "external_id": "c-1",
            "folder": None,
            "delivery_log_id": log["id"],
            "channel": "email",
            "address": "ann@example.com",
            "status": "sent",
            "reason": None,
        }
        assert datetime.fromisoformat(posted["timestamp"]) <= datetime.now(UTC)
        assert "550 5.1.1" in by_type["message.delivery_failed"][0]["data"]["reason"]
        assert "quarantine" in by_type["message.ignored"][0]["data"]["reason"]
        assert by_type["message.not_taken_into_account"][0]["data"]["address"] is None

        # every post carries the three headers, and a wrong secret does not verify
        for post in receiver.posts:
            assert post.headers["content-type"] == "application/json"
            assert post.headers["webhook-id"].startswith("msg_")
            assert post.verifies("whsec_" + "QUJD" * 8) is None
        listed = messages(server, hook["id"])
        assert {m["status"] for m in listed} == {"delivered"}
        assert {m["message_id"] for m in listed} == set(receiver.delivered(secret))


def test_opens_clicks_bounces_complaints_and_receipts_are_posted(db, smtp_server):
    with subscribed(db, smtp_server.port) as (receiver, server, hook):
        (sent,) = push_rest(server, order_event("ann@example.com"))
        wait_for(lambda: all_final(db, [sent]), message="the event to be sent")
        (log,) = delivery_logs(db, sent)
        now = datetime.now(UTC)
        with db.write() as conn:
            tracking_store.record(conn, TrackingKind.OPEN, log["id"], None, "Mail/1.0", now)
            tracking_store.record(
                conn, TrackingKind.CLICK, log["id"], "https://shop.example/o/1", "Mail/1.0", now
            )
            for kind in (ReportKind.SOFT, ReportKind.COMPLAINT, ReportKind.UNKNOWN):
                bounce_store.keep(
                    conn,
                    received=now,
                    kind=kind,
                    delivery_log_id=log["id"],
                    recipient="ann@example.com",
                    reason=f"a {kind} report",
                    size=100,
                )
            assert processing_store.record_late_deliveries(conn, [log["id"]], now) == 1
        kinds = [
            "message.sent",
            "message.opened",
            "message.clicked",
            "message.bounced",
            "message.complained",
            "message.delivered",
        ]
        secret = hook["secret"]
        wait_for(
            lambda: all(receiver.of_type(secret, k) for k in kinds), message="every outcome posted"
        )
        assert all(len(receiver.of_type(secret, k)) == 1 for k in kinds)
        (click,) = receiver.of_type(secret, "message.clicked")
        assert click["data"]["url"] == "https://shop.example/o/1"
        assert click["data"]["delivery_log_id"] == log["id"]
        (bounce,) = receiver.of_type(secret, "message.bounced")
        assert (bounce["data"]["bounce_kind"], bounce["data"]["reason"]) == (
            "soft",
            "a soft report",
        )
        (delivered,) = receiver.of_type(secret, "message.delivered")
        assert (delivered["data"]["event_id"], delivered["data"]["status"]) == (sent, "delivered")
        # an unknown report concerns nobody: 6 messages, no more
        assert len(receiver.delivered(secret)) == len(kinds)


def test_a_failing_receiver_is_retried_and_the_message_is_delivered_once(db, smtp_server):
    with subscribed(db, smtp_server.port, SENT) as (receiver, server, hook):
        receiver.script = [500, 503]
        (sent,) = push_rest(server, order_event("ann@example.com"))
        wait_for(lambda: receiver.delivered(hook["secret"]), message="a successful post")

        statuses = [p.status for p in receiver.posts]
        assert statuses == [500, 503, 204]
        # one message: the same webhook-id on every attempt, each one signed
        assert len({p.webhook_id for p in receiver.posts}) == 1
        assert all(p.verifies(hook["secret"]) for p in receiver.posts)
        assert list(receiver.delivered(hook["secret"]).values())[0]["data"]["event_id"] == sent
        wait_for(
            lambda: messages(server, hook["id"])[0]["status"] == "delivered",
            message="the message to be marked delivered",
        )
        (message,) = messages(server, hook["id"])
        assert message["attempts"] == 3 and message["delivered_at"] is not None
        assert api(server, "GET", f"/{hook['id']}").json()["failing_since"] is None


def test_a_subscription_failing_for_the_period_is_disabled_and_can_be_enabled(db, smtp_server):
    quick = {"disable_after_seconds": 0.6}
    with subscribed(db, smtp_server.port, SENT, **quick) as (receiver, server, hook):
        receiver.always = 500
        push_rest(server, order_event("ann@example.com"))

        def disabled() -> dict[str, Any] | None:
            found = api(server, "GET", f"/{hook['id']}").json()
            return None if found["active"] else found

        found = wait_for(disabled, message="the subscription to be disabled")
        assert "every post failed since" in found["disabled_reason"]
        assert found["failing_since"] is not None
        assert len(receiver.posts) >= 2
        (message,) = messages(server, hook["id"])
        assert message["status"] == "pending" and message["last_error"] == "HTTP 500"
        # a disabled subscription is not replayed: enable it first
        refused = api(server, "POST", f"/{hook['id']}/replay", json={"message_id": "msg_x"})
        assert refused.status_code == 409, refused.text

        receiver.always = None
        enabled = api(server, "PATCH", f"/{hook['id']}", json={"active": True})
        assert enabled.status_code == 200, enabled.text
        assert enabled.json()["active"] and enabled.json()["disabled_reason"] is None
        wait_for(lambda: receiver.delivered(hook["secret"]), message="the delivery once enabled")


def test_replay_of_one_message_and_of_a_range(db, smtp_server):
    with subscribed(db, smtp_server.port, SENT) as (receiver, server, hook):
        before = datetime.now(UTC) - timedelta(seconds=1)
        first, second = push_rest(
            server, [order_event("ann@example.com"), order_event("bob@example.com")]
        )
        secret = hook["secret"]
        wait_for(lambda: len(receiver.delivered(secret)) == 2, message="both messages posted")
        wait_for(
            lambda: all(m["status"] == "delivered" for m in messages(server, hook["id"])),
            message="both marked delivered",
        )
        ids = {p["data"]["event_id"]: wid for wid, p in receiver.delivered(secret).items()}
        assert set(ids) == {first, second}

        answer = api(server, "POST", f"/{hook['id']}/replay", json={"message_id": ids[first]})
        assert answer.status_code == 200 and answer.json() == {"replayed": 1}, answer.text
        wait_for(lambda: len(receiver.posts) == 3, message="the replayed message")
        assert receiver.posts[-1].webhook_id == ids[first]
        assert receiver.posts[-1].verifies(secret)["data"]["event_id"] == first

        after = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        answer = api(
            server,
            "POST",
            f"/{hook['id']}/replay",
            json={"since": before.isoformat(), "until": after},
        )
        assert answer.json() == {"replayed": 2}, answer.text
        wait_for(lambda: len(receiver.posts) == 5, message="the replayed range")
        assert sorted(p.webhook_id for p in receiver.posts[3:]) == sorted(ids.values())
        # a receiver that drops duplicates by webhook-id still has two messages
        assert len(receiver.delivered(secret)) == 2

        empty = api(server, "POST", f"/{hook['id']}/replay", json={"since": after, "until": None})
        assert empty.json() == {"replayed": 0}
        unknown = api(server, "POST", f"/{hook['id']}/replay", json={"message_id": "msg_nope"})
        assert unknown.status_code == 404
        assert unknown.headers["content-type"] == "application/problem+json"


def test_after_a_rotation_both_secrets_verify_during_the_overlap(db, smtp_server):
    with subscribed(db, smtp_server.port, SENT) as (receiver, server, hook):
        rotated = api(server, "POST", f"/{hook['id']}/secret")
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["secret"]
        assert new.startswith("whsec_") and new != hook["secret"]
        assert rotated.json()["previous_secret_until"] is not None
        assert "secret" not in api(server, "GET", f"/{hook['id']}").json()

        push_rest(server, order_event("ann@example.com"))
        wait_for(lambda: receiver.delivered(new), message="a post signed with the new secret")
        (post,) = receiver.posts
        assert len(post.headers["webhook-signature"].split(" ")) == 2
        assert post.verifies(new) and post.verifies(hook["secret"])


def test_after_a_rotation_without_overlap_only_the_new_secret_verifies(db, smtp_server):
    no_overlap = {"secret_overlap_seconds": 0}
    with subscribed(db, smtp_server.port, SENT, **no_overlap) as (receiver, server, hook):
        new = api(server, "POST", f"/{hook['id']}/secret").json()["secret"]
        push_rest(server, order_event("ann@example.com"))
        wait_for(lambda: receiver.delivered(new), message="a post signed with the new secret")
        (post,) = receiver.posts
        assert post.verifies(hook["secret"]) is None


def test_a_folder_subscription_gets_only_its_folder_events(db, smtp_server):
    with receiving() as receiver, webhook_server(db, smtp_server.port) as server:
        for folder in ("brand_a", "brand_b"):
            publish(server, order_publication(folder=folder))
        add_operator(db, "a_admin", "pw-a", "mc_push,mc_admin", folder="brand_a")
        add_operator(db, "b_pusher", "pw-b", "mc_push", folder="brand_b")
        # an operator restricted to brand_a subscribes its folder, whatever it asks
        hook_a = subscribe(server, receiver.url, ["message.sent"], auth=("a_admin", "pw-a"))
        assert hook_a["folder"] == "brand_a"
        other = api(
            server,
            "POST",
            "",
            json={"url": receiver.url, "types": ["message.sent"], "folder": "brand_b"},
            auth=("a_admin", "pw-a"),
        )
        assert other.status_code == 403, other.text
        hook_all = subscribe(server, receiver.url, ["message.sent"])
        assert hook_all["folder"] is None

        def push_as(login: str, password: str, email: str) -> int:
            answer = httpx.post(
                f"{server.url}/api/v1/events/rt",
                json=order_event(email),
                auth=(login, password),
            )
            assert answer.status_code == 201, answer.text
            return int(answer.json()["id"])

        in_a = push_as("a_admin", "pw-a", "a@example.com")
        in_b = push_as("b_pusher", "pw-b", "b@example.com")
        wait_for(
            lambda: len(receiver.delivered(hook_all["secret"])) == 2,
            message="both events posted to the every-folder subscription",
        )
        wait_for(lambda: receiver.delivered(hook_a["secret"]), message="brand_a's event")
        got_a = [p["data"] for p in receiver.delivered(hook_a["secret"]).values()]
        assert [(d["event_id"], d["folder"]) for d in got_a] == [(in_a, "brand_a")]
        got_all = receiver.delivered(hook_all["secret"]).values()
        assert {p["data"]["event_id"] for p in got_all} == {in_a, in_b}
        assert len(messages(server, hook_a["id"])) == 1

        # brand_a's operator sees its subscription only
        listed = api(server, "GET", "", auth=("a_admin", "pw-a")).json()
        assert [h["id"] for h in listed] == [hook_a["id"]]
        hidden = api(server, "GET", f"/{hook_all['id']}", auth=("a_admin", "pw-a"))
        assert hidden.status_code == 404
        refused = api(server, "GET", "", auth=("b_pusher", "pw-b"))
        assert refused.status_code == 403


def _stored(db: Database) -> tuple[int, int]:
    with db.read() as conn:
        return (
            conn.execute(select(func.count()).select_from(webhook_subscription)).scalar_one(),
            conn.execute(select(func.count()).select_from(webhook_message)).scalar_one(),
        )


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"url": "ftp://example.com/hook", "types": ["message.sent"]}, 400, "scheme 'ftp'"),
        ({"url": "not a url", "types": ["message.sent"]}, 400, "scheme"),
        ({"url": "https://user:pw@example.com/", "types": ["message.sent"]}, 400, "credentials"),
        ({"url": "https://example.com/", "types": ["message.sold"]}, 422, "/types/0"),
        ({"url": "https://example.com/", "types": []}, 422, "/types"),
        ({"url": "https://example.com/", "types": ["message.sent"], "x": 1}, 422, "/x"),
        ({"types": ["message.sent"]}, 422, "/url"),
        ({"url": "https://" + "a" * 3000, "types": ["message.sent"]}, 422, "/url"),
    ],
)
def test_bad_subscriptions_are_refused_and_nothing_is_stored(db, body, status, words):
    add_operator(db, *ADMIN)
    threaded, server = start_exec_server(db, webhooks={"allow_private_networks": True})
    with threaded:
        answer = api(server, "POST", "", json=body)
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert words in answer.json()["detail"]
        assert _stored(db) == (0, 0)


def test_private_targets_garbage_and_oversized_bodies_are_refused(db):
    add_operator(db, *ADMIN)
    threaded, server = start_exec_server(db)  # allow_private_networks off, as by default
    with threaded:
        for url in ("http://127.0.0.1:9/hook", "http://localhost/hook", "http://[::1]/hook"):
            answer = api(server, "POST", "", json={"url": url, "types": ["message.sent"]})
            assert answer.status_code == 400, answer.text
            problem = answer.json()
            assert problem["type"] == "urn:msgcenter:problem:invalid-input"
            assert "which is not a public address" in problem["detail"]
            assert "allow_private_networks" in problem["detail"]

        garbage = api(
            server, "POST", "", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert garbage.status_code == 422, garbage.text
        assert "JSON" in garbage.json()["detail"]
        empty = api(server, "POST", "", content=b"")
        assert empty.status_code == 422
        huge = orjson.dumps(
            {"url": "https://example.com/", "types": ["message.sent"], "pad": "x" * 100_000}
        )
        oversized = api(server, "POST", "", content=huge)
        assert oversized.status_code == 413, oversized.text
        assert oversized.json()["type"] == "urn:msgcenter:problem:payload-too-large"
        assert _stored(db) == (0, 0)

        # the private target is refused on change too, and the subscription left as it was
        with db.write() as conn:
            conn.execute(
                webhook_subscription.insert().values(
                    url="https://example.com/hook",
                    event_types="message.sent",
                    secret="whsec_" + "QUJD" * 8,
                    active=True,
                    created=datetime.now(UTC),
                    updated=datetime.now(UTC),
                )
            )
        (hook,) = api(server, "GET", "").json()
        changed = api(server, "PATCH", f"/{hook['id']}", json={"url": "http://10.0.0.1/"})
        assert changed.status_code == 400, changed.text
        assert api(server, "GET", f"/{hook['id']}").json()["url"] == "https://example.com/hook"
        neither = api(server, "POST", f"/{hook['id']}/replay", json={})
        assert neither.status_code == 400 and "message_id" in neither.json()["detail"]
        assert api(server, "GET", "/999").status_code == 404
        assert api(server, "DELETE", f"/{hook['id']}").status_code == 204
        assert _stored(db) == (0, 0)
        unauthenticated = httpx.get(f"{server.url}/api/v1/webhooks")
        assert unauthenticated.status_code == 401


def _collect(db: Database, gap_wait: timedelta = timedelta(hours=1)) -> int:
    with db.write() as conn:
        inserted, _more = webhook_store.collect(
            conn, datetime.now(UTC), batch=100, gap_wait=gap_wait, settle=timedelta(0)
        )
    return inserted


def _messages_stored(db: Database) -> int:
    with db.read() as conn:
        return conn.execute(select(func.count()).select_from(webhook_message)).scalar_one()


def test_the_outbox_reader_takes_each_outcome_once_and_waits_at_a_missing_id(db):
    now = datetime.now(UTC)
    with db.write() as conn:
        webhook_store.add_subscription(
            conn, None, "https://example.com/h", frozenset({WebhookType.SENT}), new_secret(), now
        )
        event_id = conn.execute(
            insert(event)
            .values(
                queue="rt",
                type="order_confirmation",
                status=2,
                email="a@example.com",
                wished_channel=0,
                email_format=0,
                ctx="{}",
                ctx_format="json",
                process_requested_on=now,
                created=now,
                last_modified=now,
            )
            .returning(event.c.id)
        ).scalar_one()
    assert _collect(db) == 0  # the cursors start at the sources' ends

    def change(change_id: int, status: int) -> dict[str, Any]:
        return {"id": change_id, "event_id": event_id, "status": status, "at": now}

    with db.write() as conn:
        # 2 is missing: a transaction still under way, as far as the reader can tell
        conn.execute(insert(event_status_change), [change(1, 1), change(3, 2), change(4, 2)])
    assert _collect(db) == 0  # 1 is read (pending_delivery: no outcome), 3 waits for 2
    with db.write() as conn:
        conn.execute(insert(event_status_change), [change(2, 2)])
    assert _collect(db) == 3  # 2 came: 2, 3 and 4 in order
    assert _collect(db) == 0  # and never again

    with db.write() as conn:
        conn.execute(insert(event_status_change), [change(6, 2)])  # 5 never comes
    assert _collect(db) == 0
    # a crash inside the reader's transaction keeps nothing: the next run does the same work
    with pytest.raises(RuntimeError), db.write() as conn:
        assert webhook_store.collect(
            conn, datetime.now(UTC), batch=100, gap_wait=timedelta(0), settle=timedelta(0)
        ) == (1, False)
        raise RuntimeError("crash")
    assert _messages_stored(db) == 3
    assert _collect(db, gap_wait=timedelta(0)) == 1  # waited long enough: 5 stays a hole
    assert _collect(db, gap_wait=timedelta(0)) == 0
    assert _messages_stored(db) == 4


def test_a_lapsed_claim_is_taken_again_failures_back_off_and_delivered_messages_are_purged(db):
    now = datetime.now(UTC)
    lease = timedelta(minutes=2)
    with db.write() as conn:
        hook = webhook_store.add_subscription(
            conn, None, "https://example.com/h", frozenset({WebhookType.SENT}), new_secret(), now
        )
        conn.execute(
            insert(webhook_message),
            [
                {
                    "subscription_id": hook.id,
                    "message_id": f"msg_{n}",
                    "type": "message.sent",
                    "payload": "{}",
                    "status": "pending",
                    "due": now,
                    "created": now,
                }
                for n in (1, 2)
            ],
        )

    def claim(at: datetime) -> list[tuple[str, int]]:
        with db.write() as conn:
            claimed = webhook_store.claim_due(conn, at, 10, lease)
        return [(a.message.message_id, a.message.attempts) for a in claimed]

    assert claim(now) == [("msg_1", 1), ("msg_2", 1)]
    assert claim(now + lease / 2) == []  # with their sender until the lease ends
    # the sender crashed before it recorded anything: after the lease, they are posted again
    later = now + lease
    assert claim(later) == [("msg_1", 2), ("msg_2", 2)]
    with db.write() as conn:
        first, second = (m.id for m in reversed(webhook_store.messages(conn, hook.id, 10)))
        results = [AttemptResult(first, hook.id, 2), AttemptResult(second, hook.id, 2, "HTTP 500")]
        disabled = webhook_store.record_results(
            conn,
            results,
            later,
            backoff=lambda attempts: timedelta(seconds=10 * attempts),
            disable_after=timedelta(0),
        )
    assert disabled == []  # a post to it succeeded: the subscription is not failing
    with db.read() as conn:
        stored = {m.message_id: m for m in webhook_store.messages(conn, hook.id, 10)}
        assert webhook_store.get_subscription(conn, hook.id, later).failing_since is None
    assert (stored["msg_1"].status, stored["msg_1"].delivered_at) == ("delivered", later)
    assert (stored["msg_2"].status, stored["msg_2"].last_error) == ("pending", "HTTP 500")
    assert stored["msg_2"].due == later + timedelta(seconds=20)

    with db.write() as conn:
        assert webhook_store.purge(conn, later, 100) == 0  # kept until past its retention
        assert webhook_store.purge(conn, later + timedelta(seconds=1), 100) == 1
    with db.read() as conn:
        assert [m.message_id for m in webhook_store.messages(conn, hook.id, 10)] == ["msg_2"]


def test_the_cli_administers_subscriptions(db, monkeypatch):
    monkeypatch.setenv("MSGCENTER_WEBHOOKS__ALLOW_PRIVATE_NETWORKS", "true")

    def run(*args: str) -> str:
        result = CliRunner().invoke(msgcenter.cli.app, ["exec", "webhooks", *args, "--db", db.url])
        assert result.exit_code == 0, result.output
        return result.output

    added = run("add", "http://127.0.0.1:9/hook", "--types", "sent,opened", "--folder", "a")
    assert "subscription 1 created" in added and "whsec_" in added
    listed = run("list")
    assert "http://127.0.0.1:9/hook" in listed and "opened,sent" in listed
    assert "whsec_" in run("rotate-secret", "1")
    assert "disabled" in run("disable", "1")
    assert "disabled by an operator" in run("list")
    assert "enabled" in run("enable", "1")
    assert "0 message(s)" in run("replay", "1", "--since", "2020-01-01T00:00:00")
    run("messages", "1")
    refused = CliRunner().invoke(
        msgcenter.cli.app,
        ["exec", "webhooks", "add", "gopher://x/", "--types", "sent", "--db", db.url],
    )
    assert refused.exit_code == 1 and "scheme 'gopher'" in refused.output
    assert "deleted" in run("remove", "1")
    assert _stored(db) == (0, 0)
