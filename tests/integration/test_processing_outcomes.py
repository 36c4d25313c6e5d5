"""What becomes of a message: retries, permanent failures and quarantine, an absent relay,
expiry, scheduling, real-time before batch, and late status changes (SPEC §3.3, §3.4, §3.7, §3.8).

Every test runs on SQLite and PostgreSQL with a real SMTP server on loopback and
real HTTP intake; the relay's replies are scripted per recipient.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, insert, select, update

from msgcenter.settings import ProcessingSettings
from msgcenter.store import workflows as workflow_store
from msgcenter.store.tables import (
    delivery,
    delivery_log,
    event,
    event_status_change,
    quarantine,
    workflow,
)
from msgcenter.workflows import status as status_workflow
from msgcenter.workflows.status import UpdateEventStatus
from tests.conftest import wait_for
from tests.processing import (
    all_final,
    delivery_logs,
    event_json,
    order_publication,
    processing_server,
    publish,
    push_rest,
    statuses,
)
from tests.smtp import SmtpServer

CTX = {"client": {"firstname": "Ann"}, "order": {"id": "1001"}}


def order_event(email: str, **fields: object) -> dict[str, object]:
    return {"type": "order_confirmation", "email": email, "ctx": CTX, **fields}


def timeline(server, event_id: int) -> list[str]:  # type: ignore[no-untyped-def]
    """The statuses of an event's history, checking that its timestamps never go backwards."""
    history = event_json(server, event_id)["history"]
    stamps = [datetime.fromisoformat(step["at"]) for step in history]
    assert stamps == sorted(stamps), history
    return [step["status"] for step in history]


def test_temporary_refusal_then_acceptance_is_sent_after_a_retry(db, smtp_server):
    smtp_server.handler.scripted["busy@example.com"] = [
        "450 4.2.1 mailbox busy, try later",
        "250 OK",
    ]
    with processing_server(db, smtp_server.port) as server:
        publish(server, order_publication())
        (event_id,) = push_rest(server, order_event("busy@example.com"))
        wait_for(lambda: all_final(db, [event_id]), message="the event to be final")

        assert event_json(server, event_id)["status"] == "sent"
        assert timeline(server, event_id) == ["pending", "pending_delivery", "sent"]
        (log,) = delivery_logs(db, event_id)
        assert log["status"] == 1 and log["attempts"] == 2
        assert log["sent_at"] is not None and log["failure_type"] is None
        assert len(smtp_server.handler.to("busy@example.com")) == 1


def test_user_unknown_fails_quarantines_and_the_next_event_is_ignored_without_a_connection(
    db, smtp_server
):
    smtp_server.handler.scripted["gone@example.com"] = [
        "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown"
    ]
    with processing_server(db, smtp_server.port) as server:
        publish(server, order_publication())
        (first,) = push_rest(server, order_event("gone@example.com"))
        wait_for(lambda: all_final(db, [first]), message="the first event to be final")

        stored = event_json(server, first)
        assert stored["status"] == "delivery_failed"
        assert timeline(server, first) == ["pending", "pending_delivery", "delivery_failed"]
        assert "550 5.1.1" in stored["history"][-1]["reason"]
        (log,) = delivery_logs(db, first)
        assert (log["status"], log["failure_type"], log["attempts"]) == (2, "user_unknown", 1)
        with db.read() as conn:
            held = (
                conn.execute(select(quarantine).where(quarantine.c.address == "gone@example.com"))
                .mappings()
                .all()
            )
        assert [(q["active"], q["failure_type"], q["delivery_log_id"]) for q in held] == [
            (True, "user_unknown", log["id"])
        ]
        assert smtp_server.handler.received == []

        # A fresh relay on the same port: the pooled connection to the old one is gone, so
        # any attempt to send the next event would have to open a session on this one.
        smtp_server.stop()
        relay = SmtpServer(port=smtp_server.port).start()
        try:
            sessions_before = relay.handler.sessions
            (second,) = push_rest(server, order_event("gone@example.com"))
            wait_for(lambda: all_final(db, [second]), message="the second event to be final")
            assert event_json(server, second)["status"] == "ignored"
            assert timeline(server, second) == ["pending", "pending_delivery", "ignored"]
            assert "quarantine" in event_json(server, second)["history"][-1]["reason"]
            (ignored_log,) = delivery_logs(db, second)
            assert (
                ignored_log["status"],
                ignored_log["failure_type"],
                ignored_log["attempts"],
            ) == (3, "quarantined", 0)
            assert relay.handler.sessions == sessions_before
            assert relay.handler.received == []

            # the same relay does see a session for an address that is not quarantined
            (control,) = push_rest(server, order_event("fine@example.com"))
            wait_for(lambda: all_final(db, [control]), message="the control event to be final")
            assert statuses(db, [control]) == {control: "sent"}
            assert relay.handler.sessions == sessions_before + 1
            assert len(relay.handler.to("fine@example.com")) == 1
        finally:
            relay.stop()


def test_events_wait_while_the_relay_is_down_and_are_all_sent_when_it_returns(db, smtp_server):
    port = smtp_server.port
    with processing_server(db, port) as server:
        publish(server, order_publication())
        (warm,) = push_rest(server, order_event("before@example.com"))
        wait_for(lambda: all_final(db, [warm]), message="the first event to be sent")
        smtp_server.stop()  # the pool now holds a connection to a relay that is gone

        addresses = [f"down{i}@example.com" for i in range(5)]
        ids = push_rest(server, [order_event(a) for a in addresses])

        def retried() -> bool:
            logs = [log for event_id in ids for log in delivery_logs(db, event_id)]
            return len(logs) == len(ids) and all(log["attempts"] >= 2 for log in logs)

        wait_for(retried, message="every message to have failed at least twice")
        assert set(statuses(db, ids).values()) == {"pending_delivery"}
        for event_id in ids:
            (log,) = delivery_logs(db, event_id)
            assert log["status"] in (0, 4), log  # waiting for its next attempt, or being attempted
            assert log["failure_type"] == "soft"
            assert f"127.0.0.1:{port}" in log["failure_reason"]

        relay = SmtpServer(port=port).start()
        try:
            wait_for(
                lambda: all_final(db, ids), message="every event to be final once the relay is back"
            )
            assert set(statuses(db, ids).values()) == {"sent"}
            for event_id, address in zip(ids, addresses, strict=True):
                assert len(relay.handler.to(address)) == 1, address
                assert timeline(server, event_id) == ["pending", "pending_delivery", "sent"]
                (log,) = delivery_logs(db, event_id)
                assert log["status"] == 1 and log["attempts"] >= 3
            assert len(relay.handler.received) == len(ids)
        finally:
            relay.stop()


def test_messages_expire_after_the_validity_period(db, smtp_server):
    smtp_server.handler.scripted["full@example.com"] = ["452 4.2.2 mailbox full"]
    # retried every 0.2 to 0.5 s: a period of 3 s leaves room for several attempts even when
    # a loaded machine delays the first one
    with processing_server(
        db, smtp_server.port, rt_validity_seconds=3, batch_validity_seconds=3
    ) as server:
        publish(server, order_publication())
        (rt_id,) = push_rest(server, order_event("full@example.com"))
        (batch_id,) = push_rest(server, order_event("full@example.com"), queue="batch")
        wait_for(lambda: all_final(db, [rt_id, batch_id]), message="both events to be final")

        for event_id in (rt_id, batch_id):
            assert event_json(server, event_id)["status"] == "expired"
            assert timeline(server, event_id) == ["pending", "pending_delivery", "expired"]
            (log,) = delivery_logs(db, event_id)
            assert (log["status"], log["failure_type"]) == (5, "expired")
            assert log["attempts"] >= 2
            # the last reply is named when the last attempt decided it, not when the period
            # ran out while the message waited for its next attempt
            assert log["failure_reason"].startswith("validity period ended after ")
            assert log["created"] + timedelta(seconds=3) == log["valid_until"]
        assert smtp_server.handler.received == []


def test_scheduled_events_are_untouched_until_due(db, smtp_server):
    with processing_server(db, smtp_server.port) as server:
        publish(server, order_publication())
        due = datetime.now(UTC) + timedelta(seconds=6)
        scheduled = [
            push_rest(server, order_event("later-rt@example.com", scheduled=due.isoformat()))[0],
            push_rest(
                server,
                order_event("later-batch@example.com", scheduled=due.isoformat()),
                queue="batch",
            )[0],
        ]
        (now_id,) = push_rest(server, order_event("now@example.com"))
        wait_for(lambda: all_final(db, [now_id]), message="the unscheduled event to be sent")

        # the workflows ran after the scheduled events were stored, and left them alone
        assert datetime.now(UTC) < due
        for event_id in scheduled:
            stored = event_json(server, event_id)
            assert (stored["status"], stored["error_count"]) == ("pending", 0)
            assert datetime.fromisoformat(stored["process_requested_on"]) == due
            assert timeline(server, event_id) == ["pending"]
            assert delivery_logs(db, event_id) == []
        assert [r.rcpt_tos for r in smtp_server.handler.received] == [["now@example.com"]]

        wait_for(
            lambda: all_final(db, scheduled), message="the scheduled events to be sent once due"
        )
        assert set(statuses(db, scheduled).values()) == {"sent"}
        for event_id in scheduled:
            assert timeline(server, event_id) == ["pending", "pending_delivery", "sent"]
            (log,) = delivery_logs(db, event_id)
            assert log["created"] >= due
        assert len(smtp_server.handler.received) == 3


def test_real_time_events_are_all_sent_before_the_batch_queue_drains(db, smtp_server):
    # A one-second claim lease, far shorter than the batch takes to drain: messages that
    # wait in the dispatcher must keep their claims, or they are claimed again and sent twice.
    with processing_server(db, smtp_server.port, claim_lease_seconds=1) as server:
        publish(server, order_publication())
        small = {"client": {"firstname": "B"}, "order": {"id": "1"}}
        batch_ids = push_rest(
            server,
            [
                {"type": "order_confirmation", "email": f"batch{i}@example.com", "ctx": small}
                for i in range(1_000)
            ],
            queue="batch",
        )
        wait_for(
            lambda: len(smtp_server.handler.received) >= 20, message="the batch to start leaving"
        )
        rt_ids = push_rest(server, [order_event(f"rt{i}@example.com") for i in range(50)])
        assert len(batch_ids) == 1_000 and len(rt_ids) == 50
        ids = batch_ids + rt_ids
        wait_for(
            lambda: all_final(db, ids),
            timeout=90,
            interval=0.2,
            message="all 1,050 events to be final",
        )

        assert set(statuses(db, ids).values()) == {"sent"}
        with smtp_server.handler.lock:
            order = [r.rcpt_tos[0] for r in smtp_server.handler.received]
        expected = [f"batch{i}@example.com" for i in range(1_000)] + [
            f"rt{i}@example.com" for i in range(50)
        ]
        assert sorted(order) == sorted(expected), "every message exactly once"
        last_rt = max(i for i, address in enumerate(order) if address.startswith("rt"))
        last_batch = max(i for i, address in enumerate(order) if address.startswith("batch"))
        assert last_rt < last_batch, (
            f"last real-time message at {last_rt}, last batch message at {last_batch}"
        )


def test_late_delivery_log_changes_are_copied_onto_events(db, smtp_server):
    with processing_server(db, smtp_server.port) as server:
        publish(server, order_publication())
        bounced, kept = push_rest(
            server, [order_event("bounces@example.com"), order_event("stays@example.com")]
        )
        wait_for(lambda: all_final(db, [bounced, kept]), message="both events to be sent")
        assert set(statuses(db, [bounced, kept]).values()) == {"sent"}

        # an asynchronous bounce, hours later, turns the sent message into a failed one
        (log,) = delivery_logs(db, bounced)
        with db.write() as conn:
            conn.execute(
                update(delivery_log)
                .where(delivery_log.c.id == log["id"])
                .values(
                    status=2,
                    failure_type="user_unknown",
                    failure_reason="bounce: 550 5.1.1 user unknown",
                    last_modified=datetime.now(UTC),
                )
            )
        wait_for(
            lambda: statuses(db, [bounced])[bounced] == "delivery_failed",
            message="the bounce to reach the event",
        )

        stored = event_json(server, bounced)
        assert timeline(server, bounced) == [
            "pending",
            "pending_delivery",
            "sent",
            "delivery_failed",
        ]
        assert stored["history"][-1]["reason"] == "bounce: 550 5.1.1 user unknown"
        assert statuses(db, [kept]) == {kept: "sent"}
        assert timeline(server, kept) == ["pending", "pending_delivery", "sent"]
        # further passes of updateEventStatus add nothing: touch the other log, wait until a
        # pass has gone past it, and the bounced event's timeline is as it was
        touched = datetime.now(UTC)
        with db.write() as conn:
            conn.execute(
                update(delivery_log)
                .where(delivery_log.c.event_id == kept)
                .values(last_modified=touched)
            )
        since_epoch = int((touched - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
        wait_for(
            lambda: (status_watermark(db) or 0) >= since_epoch,
            message="a pass of updateEventStatus past the later change",
        )
        assert timeline(server, bounced) == [
            "pending",
            "pending_delivery",
            "sent",
            "delivery_failed",
        ]


def _seed_sent_events(db, count: int, at: datetime) -> tuple[list[int], list[int]]:  # type: ignore[no-untyped-def]
    """``count`` sent events, each with its sent delivery log last modified around ``at``."""
    common = {"queue": "rt", "type": "order_confirmation", "wished_channel": 0, "email_format": 0}
    with db.write() as conn:
        event_ids = [
            row[0]
            for row in conn.execute(
                insert(event).returning(event.c.id, sort_by_parameter_order=True),
                [
                    {
                        **common,
                        "status": 2,
                        "email": f"bulk{i}@example.com",
                        "ctx": "{}",
                        "ctx_format": "json",
                        "process_requested_on": at,
                        "created": at,
                        "last_modified": at,
                    }
                    for i in range(count)
                ],
            )
        ]
        log_ids = [
            row[0]
            for row in conn.execute(
                insert(delivery_log).returning(delivery_log.c.id, sort_by_parameter_order=True),
                [
                    {
                        "delivery_id": 1,
                        "event_id": event_id,
                        "publication_id": 1,
                        "queue": "rt",
                        "channel": 0,
                        "address": f"bulk{i}@example.com",
                        "status": 1,
                        "attempts": 1,
                        "due": at,
                        "valid_until": at + timedelta(hours=1),
                        "created": at,
                        "last_modified": at + timedelta(microseconds=i),
                    }
                    for i, event_id in enumerate(event_ids)
                ],
            )
        ]
        conn.execute(
            update(event)
            .where(event.c.id == bindparam("b_id"))
            .values(delivery_log_id=bindparam("b_log")),
            [{"b_id": e, "b_log": log} for e, log in zip(event_ids, log_ids, strict=True)],
        )
        workflow_store.ensure(conn, [UpdateEventStatus.name], at)
    return event_ids, log_ids


def test_update_event_status_keeps_up_when_more_logs_than_a_page_change_within_its_overlap(db):
    # Busy instances change thousands of delivery logs within the re-scan overlap; a late
    # bounce after them must still reach its event.
    seeded = status_workflow.PAGE + 100
    event_ids, log_ids = _seed_sent_events(db, seeded, datetime.now(UTC) - timedelta(seconds=5))
    workflow = UpdateEventStatus(db, ProcessingSettings())
    for _ in range(10):  # the runner calls it again at once while it reports more to do
        if not workflow.copy():
            break

    with db.write() as conn:
        conn.execute(
            update(delivery_log)
            .where(delivery_log.c.id == log_ids[-1])
            .values(
                status=2,
                failure_reason="bounce: 550 5.1.1 user unknown",
                last_modified=datetime.now(UTC),
            )
        )
    for _ in range(10):
        if not workflow.copy():
            break

    assert statuses(db, [event_ids[-1], event_ids[0]]) == {
        event_ids[-1]: "delivery_failed",
        event_ids[0]: "sent",
    }
    with db.read() as conn:
        steps = conn.execute(
            select(event_status_change.c.status, event_status_change.c.reason).where(
                event_status_change.c.event_id == event_ids[-1]
            )
        ).all()
    assert steps == [(4, "bounce: 550 5.1.1 user unknown")]


def status_watermark(db) -> int | None:  # type: ignore[no-untyped-def]
    """Where updateEventStatus stands (microseconds since the epoch), from the workflow table."""
    with db.read() as conn:
        return conn.execute(
            select(workflow.c.watermark).where(workflow.c.name == "updateEventStatus")
        ).scalar_one_or_none()


POISON = "poison@example.com"


@contextmanager
def poisoned_delivery_logs(db):  # type: ignore[no-untyped-def]
    """A fault injected in the real database: storing a delivery log for POISON raises."""
    if db.dialect == "sqlite":
        create = [
            "CREATE TRIGGER poison BEFORE INSERT ON delivery_log "
            f"WHEN NEW.address = '{POISON}' BEGIN SELECT RAISE(ABORT, 'poisoned address'); END"
        ]
        drop = ["DROP TRIGGER poison"]
    else:
        create = [
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.address = '{POISON}' THEN RAISE EXCEPTION 'poisoned address'; END IF; "
            "RETURN NEW; END $$",
            "CREATE TRIGGER poison BEFORE INSERT ON delivery_log "
            "FOR EACH ROW EXECUTE FUNCTION poison()",
        ]
        drop = ["DROP TRIGGER poison ON delivery_log", "DROP FUNCTION poison()"]
    with db.write() as conn:
        for statement in create:
            conn.exec_driver_sql(statement)
    try:
        yield
    finally:
        with db.write() as conn:
            for statement in drop:
                conn.exec_driver_sql(statement)


def test_an_event_that_cannot_be_processed_fails_alone_and_expires_after_its_tries(db, smtp_server):
    with (
        poisoned_delivery_logs(db),
        processing_server(db, smtp_server.port, max_event_tries=3) as server,
    ):
        publish(server, order_publication())
        first, poison, last = push_rest(
            server,
            [
                order_event("first@example.com"),
                order_event(POISON),
                order_event("last@example.com"),
            ],
        )
        wait_for(lambda: all_final(db, [first, poison, last]), message="all three to be final")

        assert statuses(db, [first, poison, last]) == {
            first: "sent",
            poison: "expired",
            last: "sent",
        }
        stored = event_json(server, poison)
        assert stored["error_count"] == 3
        assert [(s["status"], s["reason"].split(":")[0]) for s in stored["history"][1:]] == [
            ("pending", "processing failed 1 time, tried again later"),
            ("pending", "processing failed 2 times, tried again later"),
            ("expired", "processing failed 3 times"),
        ]
        assert all("poisoned address" in s["reason"] for s in stored["history"][1:])
        assert event_json(server, first)["error_count"] == 0
        # the claim that failed had created this month's delivery, and rolled it back: the
        # messages sent afterwards belong to a delivery that exists
        with db.read() as conn:
            deliveries = {row[0] for row in conn.execute(select(delivery.c.id))}
        for event_id in (first, last):
            (log,) = delivery_logs(db, event_id)
            assert log["delivery_id"] in deliveries
        assert sorted(m.rcpt_tos[0] for m in smtp_server.handler.received) == [
            "first@example.com",
            "last@example.com",
        ]
