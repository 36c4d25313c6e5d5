"""Archiving (SPEC §4, issue items 5-7): a control instance pulls what an execution instance sent.

Every test runs on SQLite and PostgreSQL with real servers on loopback: the
execution instance with its workflows sending to a real SMTP server, the
control instance with the execution instance registered and initialized
through its API. Archives run through ``POST /api/v1/archives/{name}/run``.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from starlette.responses import Response

from msgcenter.archives import TRACKING_FIELDS, checked_event_page
from msgcenter.control.credentials import cipher
from msgcenter.store import archive as archive_store
from msgcenter.store import control_instances
from msgcenter.store import reports as report_store
from msgcenter.store.archive import iso_week
from msgcenter.store.database import Database
from msgcenter.store.tables import (
    archive_state,
    archived_delivery,
    archived_delivery_log,
    archived_event,
    archived_quarantine,
    archived_tracking_log,
    delivery_log,
    event,
    quarantine,
    report_hour,
    tracking_log,
)
from tests.archiving import (
    archive_status,
    archived_count,
    fill_final_events,
    pause,
    pooled_database,
    register,
    run_archive,
)
from tests.conftest import ThreadedServer, add_operator, start_exec_server, wait_for
from tests.control import CONTROL_ADMIN, control_cli, control_server, control_settings
from tests.processing import (
    ADMIN,
    all_final,
    order_publication,
    processing_server,
    publish,
    push_rest,
)
from tests.tracking import local, tracked_publication, tracked_urls, tracking_server

UNKNOWN_USER = "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown"


def order(email: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "order_confirmation",
        "email": email,
        "ctx": {"client": {"firstname": "Ann"}, "order": {"id": "7"}},
        **fields,
    }


def push_mixed_events(server, smtp_server) -> list[int]:  # type: ignore[no-untyped-def]
    """Sent, delivery_failed (and quarantined), ignored (quarantined) and not_taken_into_account events, all final."""
    smtp_server.handler.scripted["gone@example.com"] = [UNKNOWN_USER]
    publish(server, order_publication())
    ids = push_rest(server, [order(f"ann{i}@example.com") for i in range(5)])
    (failed,) = push_rest(server, order("gone@example.com"))
    wait_for(lambda: all_final(server.db, [failed]), message="the failed event to be final")
    ids += [failed, *push_rest(server, order("gone@example.com"))]  # now quarantined: ignored
    ids += push_rest(server, [{"type": "no_such_type", "email": "bob@example.com", "ctx": {}}] * 2)
    wait_for(lambda: all_final(server.db, ids), message="every event to be final")
    return ids


def execution_rows(db: Database) -> tuple[dict[int, int], dict[int, tuple[int, str | None]]]:
    """Event id -> status, and delivery log id -> (status, failure type), on an execution instance."""
    with db.read() as conn:
        events = dict(conn.execute(select(event.c.id, event.c.status)).all())
        logs = {
            r[0]: (r[1], r[2])
            for r in conn.execute(
                select(delivery_log.c.id, delivery_log.c.status, delivery_log.c.failure_type)
            )
        }
    return events, logs


def archived_rows(db: Database) -> tuple[dict[int, int], dict[int, tuple[int, str | None]]]:
    """The same, as archived on a control instance."""
    with db.read() as conn:
        events = dict(
            conn.execute(select(archived_event.c.event_id, archived_event.c.status)).all()
        )
        logs = {
            r[0]: (r[1], r[2])
            for r in conn.execute(
                select(
                    archived_delivery_log.c.delivery_log_id,
                    archived_delivery_log.c.status,
                    archived_delivery_log.c.failure_type,
                )
            )
        }
    return events, logs


def registration(method: str, db: Database) -> dict[str, Any]:
    return {"method": method, "database_url": db.url if method == "database" else None}


@pytest.mark.parametrize("method", ["web", "database"])
def test_archive_holds_what_the_execution_instance_sent_and_a_second_run_adds_nothing(
    db, control_db, smtp_server, method
):
    with processing_server(db, smtp_server.port) as server:
        ids = push_mixed_events(server, smtp_server)
        with control_server(control_db, archive_page_size=3) as control:
            register(control, "exec1", server.url, *ADMIN, **registration(method, db))
            first = run_archive(control, "exec1")
            assert first.status_code == 200, first.text
            run = first.json()
            assert (run["outcome"], run["method"], run["error"]) == ("complete", method, None)
            # 9 events in pages of 3: the third page is full, so a fourth (empty) one is asked for
            assert run["events"] == run["new_events"] == len(ids) == 9
            assert run["pages"] == 4 and run["delivery_logs"] == 7 and run["quarantine"] == 1

            events, logs = execution_rows(db)
            assert sorted(events.values()) == [2, 2, 2, 2, 2, 3, 4, 5, 5]
            assert archived_rows(control_db) == (events, logs)
            with control_db.read() as conn:
                templates = dict(
                    conn.execute(select(archived_event.c.event_id, archived_event.c.template)).all()
                )
                weeks = conn.execute(
                    select(archived_delivery.c.template, archived_delivery.c.iso_week)
                ).all()
                held = conn.execute(
                    select(
                        archived_quarantine.c.address,
                        archived_quarantine.c.active,
                        archived_quarantine.c.failure_type,
                    )
                ).all()
            assert {t for e, t in templates.items() if events[e] != 5} == {
                "order_confirmation_email"
            }
            assert {t for e, t in templates.items() if events[e] == 5} == {None}
            assert weeks == [("order_confirmation_email", iso_week(datetime.now(UTC)))]
            assert held == [("gone@example.com", True, "user_unknown")]

            status = archive_status(control, "exec1")
            with db.read() as conn:
                newest = conn.execute(select(func.max(event.c.last_modified))).scalar_one()
            assert datetime.fromisoformat(status["watermark_at"]) == newest
            assert status["last_error"] is None and status["last_success"] is not None
            assert status["archived_events"] == 9 and not status["running"]
            assert 0 <= status["lag_seconds"] < 120
            assert status["workflow"] == "mcSynch_exec1"
            assert status["tracking_at"] is None and run["tracking_logs"] == 0

            again = run_archive(control, "exec1").json()
            assert again["outcome"] == "complete" and again["new_events"] == 0
            assert archived_rows(control_db) == (events, logs)
            assert archived_count(control_db) == 9
            assert archive_status(control, "exec1")["archived_events"] == 9


@pytest.mark.parametrize("method", ["web", "database"])
def test_logs_are_grouped_by_iso_week_of_their_last_change_and_late_changes_are_archived_again(
    db, control_db, smtp_server, method
):
    with processing_server(db, smtp_server.port) as server:
        publish(server, order_publication())
        ids = push_rest(server, [order(f"ann{i}@example.com") for i in range(4)])
        wait_for(lambda: all_final(db, ids), message="every event to be sent")
        two_weeks_ago = datetime.now(UTC) - timedelta(days=14)
        with db.write() as conn:
            conn.execute(
                update(delivery_log)
                .where(delivery_log.c.event_id.in_(ids[:2]))
                .values(last_modified=two_weeks_ago)
            )
        with control_server(control_db) as control:
            register(control, "exec1", server.url, *ADMIN, **registration(method, db))
            assert run_archive(control, "exec1").json()["new_events"] == 4
            with control_db.read() as conn:
                weeks = dict(
                    conn.execute(select(archived_delivery.c.id, archived_delivery.c.iso_week)).all()
                )
                grouped = dict(
                    conn.execute(
                        select(
                            archived_delivery_log.c.event_id,
                            archived_delivery_log.c.archived_delivery_id,
                        )
                    ).all()
                )
            assert sorted(weeks.values()) == sorted(
                [iso_week(two_weeks_ago), iso_week(datetime.now(UTC))]
            )
            assert {e: weeks[d] for e, d in grouped.items()} == {
                ids[0]: iso_week(two_weeks_ago),
                ids[1]: iso_week(two_weeks_ago),
                ids[2]: iso_week(datetime.now(UTC)),
                ids[3]: iso_week(datetime.now(UTC)),
            }

            # An asynchronous bounce hours later: the sent log fails, updateEventStatus follows.
            bounced = ids[0]
            with db.write() as conn:
                conn.execute(
                    update(delivery_log)
                    .where(delivery_log.c.event_id == bounced)
                    .values(
                        status=2,
                        failure_type="hard",
                        failure_reason="550 bounced later",
                        last_modified=datetime.now(UTC),
                    )
                )
            wait_for(
                lambda: execution_rows(db)[0][bounced] == 4,
                message="updateEventStatus to copy the bounce",
            )
            again = run_archive(control, "exec1").json()
            assert again["outcome"] == "complete" and again["new_events"] == 0
            assert archived_rows(control_db) == execution_rows(db)
            with control_db.read() as conn:
                moved = conn.execute(
                    select(archived_delivery.c.iso_week)
                    .join(
                        archived_delivery_log,
                        archived_delivery_log.c.archived_delivery_id == archived_delivery.c.id,
                    )
                    .where(archived_delivery_log.c.event_id == bounced)
                ).scalar_one()
                reason = conn.execute(
                    select(archived_delivery_log.c.failure_reason).where(
                        archived_delivery_log.c.event_id == bounced
                    )
                ).scalar_one()
            assert moved == iso_week(datetime.now(UTC)) and reason == "550 bounced later"
            assert archived_count(control_db) == 4


def test_a_second_run_finds_the_archive_held_and_the_first_one_archives_everything_once(
    db, control_db
):
    fill_final_events(
        db, 1_000, start=datetime.now(UTC) - timedelta(days=2), spread=timedelta(days=1)
    )
    add_operator(db, *ADMIN)
    threaded, server = start_exec_server(db)
    with threaded, control_server(control_db, archive_page_size=10) as control:
        register(control, "exec1", server.url, *ADMIN)
        answers: list[httpx.Response] = []
        first = threading.Thread(target=lambda: answers.append(run_archive(control, "exec1")))
        first.start()
        wait_for(
            lambda: 0 < archived_count(control_db) < 1_000,
            interval=0.01,
            message="the first run to be under way",
        )
        busy = run_archive(control, "exec1")
        assert busy.status_code == 409, busy.text
        assert busy.json()["title"] == "the archive of 'exec1' is already running"
        assert archive_status(control, "exec1")["running"]
        # asked to wait, a run starts once the first one ends, and finds nothing new
        waited = httpx.post(
            f"{control.url}/api/v1/archives/exec1/run",
            params={"wait": 120},
            auth=CONTROL_ADMIN,
            timeout=300,
        )
        assert waited.status_code == 200, waited.text
        assert (waited.json()["outcome"], waited.json()["new_events"]) == ("complete", 0)
        first.join(120)
        assert answers[0].status_code == 200 and answers[0].json()["new_events"] == 1_000
        assert archived_count(control_db) == 1_000
        with control_db.read() as conn:
            assert (
                conn.execute(select(func.count()).select_from(archived_delivery_log)).scalar_one()
                == 950
            )
            state = conn.execute(
                select(
                    archive_state.c.watermark_id,
                    archive_state.c.archived_events,
                    archive_state.c.lease_until,
                )
            ).one()
        assert tuple(state) == (1_000, 1_000, None)


class FakeExecution:
    """An execution instance's archive API answering whatever a test sets in ``page``."""

    def __init__(self) -> None:
        self.page: bytes = b""
        app = FastAPI()

        @app.get("/api/v1/admin/archive")
        async def events() -> Response:
            return Response(self.page, media_type="application/json")

        @app.get("/api/v1/admin/archive/quarantine")
        async def changes() -> Response:
            return Response(
                b'{"quarantine": {"id": [], "address": [], "channel": [], "reason": [], "failure_type": [], "active": [], "last_modified": []}}',
                media_type="application/json",
            )

        @app.get("/api/v1/admin/archive/tracking")
        async def tracked() -> Response:
            empty = {f.name: [] for f in TRACKING_FIELDS}
            return Response(orjson.dumps({"tracking": empty}), media_type="application/json")

        self.server = ThreadedServer(app)


EVENT_COLUMNS = [
    "id",
    "queue",
    "type",
    "status",
    "wished_channel",
    "email",
    "mobile_phone",
    "external_id",
    "folder",
    "delivery_log_id",
    "created",
    "last_modified",
]
LOG_COLUMNS = [
    "id",
    "event_id",
    "template",
    "folder",
    "channel",
    "address",
    "status",
    "failure_type",
    "failure_reason",
    "attempts",
    "created",
    "last_modified",
    "sent_at",
]


def page(*statuses: int | None) -> bytes:
    """A page of events with these statuses (None: missing), each with no delivery log."""
    at = "2026-11-30T10:00:00+00:00"
    n = len(statuses)
    events = {c: [None] * n for c in EVENT_COLUMNS}
    events.update(
        id=list(range(1, n + 1)), queue=["rt"] * n, type=["t"] * n, status=list(statuses),
        wished_channel=[0] * n, created=[at] * n, last_modified=[at] * n,
    )  # fmt: skip
    return orjson.dumps({"events": events, "delivery_logs": {c: [] for c in LOG_COLUMNS}})


def test_a_page_with_rows_missing_fields_is_refused_with_a_precise_error_and_the_watermark_stays(
    db, control_db
):
    fake = FakeExecution()
    pause(control_db, "mcSynch_odd")  # archives run only when the test asks
    with fake.server as url, control_server(control_db) as control:
        settings = control_settings(control_db)
        secret = cipher(settings)
        with control_db.write() as conn:
            control_instances.add(
                conn,
                {
                    "name": "odd",
                    "label": "odd",
                    "url": url,
                    "login": "mc",
                    "password_encrypted": secret.encrypt("pw"),
                    "instance_id": "odd-1",
                },
                datetime.now(UTC),
            )
        fake.page = page(5, 5)
        assert run_archive(control, "odd").json()["new_events"] == 2
        watermark = archive_status(control, "odd")["watermark_at"]

        fake.page = page(5, None, 5)
        failed = run_archive(control, "odd")
        assert failed.status_code == 200
        assert failed.json()["outcome"] == "failed"
        expected = "invalid archive page: events row 2 (id 2): 'status' is missing"
        assert failed.json()["error"] == expected
        status = archive_status(control, "odd")
        assert status["last_error"] == expected and status["last_error_at"] is not None
        assert status["watermark_at"] == watermark and status["archived_events"] == 2
        assert archived_count(control_db) == 2

        fake.page = page(2)[:-30]
        assert "the page is not JSON" in run_archive(control, "odd").json()["error"]
        fake.page = page(1)
        assert (
            run_archive(control, "odd").json()["error"]
            == "invalid archive page: events row 1 (id 1): status 1 is not final"
        )
        assert archive_status(control, "odd")["watermark_at"] == watermark

        fake.page = page(4, 4, 4)
        recovered = run_archive(control, "odd").json()
        assert recovered["outcome"] == "complete" and recovered["new_events"] == 1
        assert archive_status(control, "odd")["last_error"] is None


def test_archive_errors_name_the_cause(db, control_db):
    add_operator(db, *ADMIN)
    threaded, server = start_exec_server(db)
    with threaded, control_server(control_db, instance_timeout_seconds=2) as control:
        register(control, "exec1", server.url, *ADMIN)
        assert run_archive(control, "nobody").status_code == 404
        threaded.__exit__()
        down = run_archive(control, "exec1").json()
        assert down["outcome"] == "failed"
        assert down["error"].startswith(
            "execution instance 'exec1' failed (unreachable): connection refused"
        )
        assert archive_status(control, "exec1")["last_error"] == down["error"]
        changed = httpx.patch(
            f"{control.url}/api/v1/instances/exec1",
            json={
                "archive_method": "database",
                "database_url": "postgresql://postgres@127.0.0.1:1/nowhere",
            },
            auth=CONTROL_ADMIN,
        )
        assert changed.status_code == 200, changed.text
        unreadable = run_archive(control, "exec1").json()["error"]
        assert unreadable.startswith(
            "execution instance 'exec1' failed (unreachable): cannot read its database: "
        )
        assert "127.0.0.1" in unreadable and "nowhere" not in unreadable.split("database: ", 1)[0]
        disabled = httpx.post(f"{control.url}/api/v1/instances/exec1/disable", auth=CONTROL_ADMIN)
        assert disabled.status_code == 200, disabled.text
        refused = run_archive(control, "exec1")
        assert refused.status_code == 409 and "disabled" in refused.json()["title"]


def test_the_workflow_archives_each_instance_once_it_is_initialized(db, control_db):
    fill_final_events(
        db, 50, start=datetime.now(UTC) - timedelta(hours=2), spread=timedelta(hours=1)
    )
    add_operator(db, *ADMIN)
    threaded, server = start_exec_server(db)
    with threaded, control_server(control_db) as control:
        register(control, "exec1", server.url, *ADMIN, paused=False)
        # the run's pages commit first; its success is recorded when it ends
        status = wait_for(
            lambda: (found := archive_status(control, "exec1"))["last_success"] and found,
            timeout=30,
            message="mcSynch_exec1 to archive",
        )
        assert status["archived_events"] == archived_count(control_db) == 50
        workflows = {w.name for w in control_db_workflows(control_db)}
        assert {"mcSynch_exec1", "archiveCleanup"} <= workflows


def test_no_archive_runs_until_the_archiving_workflow_is_created(db, control_db, tmp_path):
    fill_final_events(db, 20, start=datetime.now(UTC) - timedelta(hours=1), spread=timedelta(0))
    add_operator(db, *ADMIN)
    threaded, server = start_exec_server(db)
    with threaded, control_server(control_db) as control:
        register(control, "exec1", server.url, *ADMIN, paused=False, create_workflow=False)
        status = archive_status(control, "exec1")
        assert status["workflow_state"] is None and status["last_run"] is None
        assert "mcSynch_exec1" not in {w.name for w in control_db_workflows(control_db)}

        def create() -> httpx.Response:
            return httpx.post(
                f"{control.url}/api/v1/archives/exec1/workflow", auth=CONTROL_ADMIN, timeout=30
            )

        first = create()
        assert first.status_code == 201, first.text
        assert first.json() == {
            "instance": "exec1", "workflow": "mcSynch_exec1", "created": True, "state": "running",
        }  # fmt: skip
        wait_for(lambda: archived_count(control_db) == 20, timeout=30, message="the archive")
        # a second press says it exists, and leaves its state alone
        pause(control_db, "mcSynch_exec1")
        again = create()
        assert again.status_code == 200, again.text
        assert (again.json()["created"], again.json()["state"]) == (False, "paused")
        unknown = httpx.post(
            f"{control.url}/api/v1/archives/nope/workflow", auth=CONTROL_ADMIN, timeout=30
        )
        assert unknown.status_code == 404, unknown.text
        # the CLI says the same
        done = control_cli(control_db.url, tmp_path, "archive", "create-workflow", "exec1")
        assert done.returncode == 0, done.stderr
        assert "mcSynch_exec1 exists already (paused)" in done.stdout


def control_db_workflows(db: Database):  # type: ignore[no-untyped-def]
    from msgcenter.store import workflows as workflow_store

    with db.read() as conn:
        return workflow_store.list_all(conn)


def test_cleanup_purges_archived_data_past_the_retention(db, control_db):
    now = datetime.now(UTC)
    fill_final_events(db, 300, start=now - timedelta(days=60), spread=timedelta(days=20))
    fill_final_events(
        db, 100, first_id=301, start=now - timedelta(days=3), spread=timedelta(days=2)
    )
    add_operator(db, *ADMIN)
    threaded, server = start_exec_server(db)
    with threaded:
        with control_server(control_db, archive_interval_seconds=3_600) as control:
            register(control, "exec1", server.url, *ADMIN)
            assert run_archive(control, "exec1").json()["new_events"] == 400
            # the newest event is a day old, yet the archive is not behind
            status = archive_status(control, "exec1")
            assert datetime.now(UTC) - datetime.fromisoformat(status["watermark_at"]) > timedelta(
                hours=12
            )
            assert 0 <= status["lag_seconds"] < 60
        with control_db.read() as conn:
            assert (
                conn.execute(select(func.count()).select_from(archived_delivery)).scalar_one() >= 4
            )
        # restarted with a 30-day retention: archiveCleanup runs at start
        with control_server(control_db, archive_retention_days=30, archive_interval_seconds=3_600):
            wait_for(
                lambda: archived_count(control_db) == 100, message="the old archive to be purged"
            )
            with control_db.read() as conn:
                logs = conn.execute(select(archived_delivery_log.c.event_id)).scalars().all()
                weeks = conn.execute(select(archived_delivery.c.iso_week)).scalars().all()
            assert min(logs) > 300 and len(logs) == 95
            assert min(weeks) >= iso_week(now - timedelta(days=30))
            assert archived_count(control_db) == 100


@pytest.mark.slow  # runs the msgcenter command as a process
def test_an_instance_registered_by_the_cli_is_archived_by_the_running_control_instance(
    db, control_db, tmp_path
):
    fill_final_events(
        db, 40, start=datetime.now(UTC) - timedelta(days=1), spread=timedelta(hours=1)
    )
    add_operator(db, *ADMIN)
    threaded, server = start_exec_server(db)

    def cli(*args: str) -> None:
        done = control_cli(control_db.url, tmp_path, *args)
        assert done.returncode == 0, done.stdout + done.stderr

    with threaded, control_server(control_db, archive_interval_seconds=3_600):
        cli(
            "instance",
            "add",
            "late",
            "--url",
            server.url,
            "--login",
            ADMIN[0],
            "--password",
            ADMIN[1],
        )
        cli("instance", "init", "late")
        cli("archive", "create-workflow", "late")
        # the running control instance notices it, starts mcSynch_late, which archives at once
        wait_for(
            lambda: archived_count(control_db) == 40,
            timeout=30,
            message="the CLI's instance to be archived",
        )


def test_brands_sharing_an_execution_instance_each_archive_only_their_folder(
    db, tmp_path, request, smtp_server
):
    pg = request.getfixturevalue("pg_databases") if db.dialect == "postgresql" else None
    add_operator(db, "mc1", "pw1", folder="brand1")
    add_operator(db, "mc2", "pw2", folder="brand2")
    with processing_server(db, smtp_server.port) as server:
        smtp_server.handler.scripted["gone@example.com"] = [UNKNOWN_USER]
        brand_ids: dict[str, list[int]] = {}
        for login, password, brand in (("mc1", "pw1", "brand1"), ("mc2", "pw2", "brand2")):
            published = httpx.put(
                f"{server.url}/api/v1/admin/publications",
                json=order_publication(),
                auth=(login, password),
            )
            assert published.status_code == 201, published.text
            pushed = httpx.post(
                f"{server.url}/api/v1/events/rt",
                json=[order(f"{brand}-{i}@example.com") for i in range(3)]
                + ([order("gone@example.com")] if brand == "brand1" else []),
                auth=(login, password),
            )
            assert pushed.status_code == 201, pushed.text
            brand_ids[brand] = pushed.json()["ids"]
        wait_for(
            lambda: all_final(db, brand_ids["brand1"] + brand_ids["brand2"]),
            message="every event to be final",
        )

        refused = httpx.get(
            f"{server.url}/api/v1/admin/archive", params={"folder": "brand2"}, auth=("mc1", "pw1")
        )
        assert refused.status_code == 403
        mine = httpx.get(f"{server.url}/api/v1/admin/archive", auth=("mc1", "pw1")).json()
        assert sorted(mine["events"]["id"]) == sorted(brand_ids["brand1"])
        chosen = httpx.get(
            f"{server.url}/api/v1/admin/archive", params={"folder": "brand2"}, auth=ADMIN
        ).json()
        assert sorted(chosen["events"]["id"]) == sorted(brand_ids["brand2"])

        registrations = [
            ("control1", "mc1", "pw1", "brand1", "web"),
            ("control2", "mc2", "pw2", "brand2", "web"),
            ("control3", "mc", "secret", "brand2", "database"),
        ]
        for role, login, password, brand, method in registrations:
            with (
                pooled_database(db, role, tmp_path, pg) as control_db,
                control_server(control_db) as control,
            ):
                register(
                    control,
                    "shared",
                    server.url,
                    login,
                    password,
                    folder=brand,
                    **registration(method, db),
                )
                run = run_archive(control, "shared").json()
                assert run["outcome"] == "complete", run
                with control_db.read() as conn:
                    archived = conn.execute(
                        select(archived_event.c.event_id, archived_event.c.folder)
                    ).all()
                    held = conn.execute(select(archived_quarantine.c.address)).scalars().all()
                assert sorted(e for e, _ in archived) == sorted(brand_ids[brand]), role
                assert {f for _, f in archived} == {brand}
                assert held == (["gone@example.com"] if brand == "brand1" else []), role
        with db.read() as conn:
            assert conn.execute(select(func.count()).select_from(quarantine)).scalar_one() == 1


def tracking_log_rows(db: Database, table: Any, id_column: str) -> list[tuple[Any, ...]]:
    """(id, delivery log, event, kind, url, user agent, created) of every tracking log in ``table``."""
    with db.read() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(
                    table.c[id_column],
                    table.c.delivery_log_id,
                    table.c.event_id,
                    table.c.kind,
                    table.c.url,
                    table.c.user_agent,
                    table.c.created,
                ).order_by(table.c[id_column])
            )
        ]


@pytest.mark.parametrize("method", ["web", "database"])
def test_tracking_logs_are_archived_once_since_their_own_watermark(
    db, control_db, smtp_server, method
):
    with tracking_server(db, smtp_server.port) as server:
        publish(server, tracked_publication())
        ids = push_rest(server, [order("ann@example.com"), order("bob@example.com")])
        wait_for(lambda: all_final(db, ids), message="the tracked mail to be sent")
        urls = {
            address: tracked_urls(
                smtp_server.handler.to(address)[0].message.get_body(("html",)).get_content()
            )
            for address in ("ann@example.com", "bob@example.com")
        }
        for address, agent in (("ann@example.com", "client A"), ("bob@example.com", "client B")):
            click, _, pixel = urls[address]
            assert httpx.get(local(server, pixel), headers={"User-Agent": agent}).status_code == 200
        assert httpx.get(local(server, urls["ann@example.com"][0])).status_code == 302

        with control_server(control_db) as control:
            register(control, "exec1", server.url, *ADMIN, **registration(method, db))
            run = run_archive(control, "exec1").json()
            assert (run["outcome"], run["tracking_logs"]) == ("complete", 3), run
            archived = tracking_log_rows(control_db, archived_tracking_log, "tracking_log_id")
            assert archived == tracking_log_rows(db, tracking_log, "id")
            assert [r[3] for r in archived] == ["open", "open", "click"]

            assert run_archive(control, "exec1").json()["tracking_logs"] == 0
            assert httpx.get(local(server, urls["bob@example.com"][0])).status_code == 302
            assert run_archive(control, "exec1").json()["tracking_logs"] == 1
            archived = tracking_log_rows(control_db, archived_tracking_log, "tracking_log_id")
            assert archived == tracking_log_rows(db, tracking_log, "id") and len(archived) == 4
            status = archive_status(control, "exec1")
            assert datetime.fromisoformat(status["tracking_at"]) == archived[-1][6]

        # a brand sees only its folder's tracking logs (these events have none)
        other_brand = httpx.get(
            f"{server.url}/api/v1/admin/archive/tracking", params={"folder": "brand2"}, auth=ADMIN
        ).json()
        assert other_brand["tracking"]["id"] == []
    with control_db.write() as conn:
        purged = archive_store.purge(conn, datetime.now(UTC) + timedelta(days=1), 1_000)
    assert purged.tracking_logs == 4
    assert tracking_log_rows(control_db, archived_tracking_log, "tracking_log_id") == []


def test_overlapping_imports_of_the_same_pages_never_duplicate_nor_go_back(db, control_db):
    """What two runs overlapping (a stalled run resuming after another took over) amount to:
    the same pages imported concurrently, and an older copy of a page after a newer one."""
    fill_final_events(
        db, 2_000, start=datetime.now(UTC) - timedelta(days=3), spread=timedelta(days=2)
    )
    pages = []
    with db.read() as conn:
        after = None
        while True:
            exported = archive_store.export_events(conn, after, 250, None)
            if not len(exported):
                break
            pages.append(checked_event_page(exported))
            after = exported.cursor()
    with control_db.write() as conn:
        archive_store.take_lease(conn, 1, datetime.now(UTC), datetime.now(UTC))
    stale = pages[0]
    # the first event is bounced later: its newer copy must survive the stale page
    with db.write() as conn:
        conn.execute(
            update(delivery_log)
            .where(delivery_log.c.event_id == 1)
            .values(status=2, last_modified=datetime.now(UTC))
        )
        conn.execute(
            update(event).where(event.c.id == 1).values(status=4, last_modified=datetime.now(UTC))
        )
    with db.read() as conn:
        fresh = checked_event_page(archive_store.export_events(conn, pages[-1].cursor(), 250, None))
    assert fresh.events["id"] == [1]

    new: list[int] = []

    def run(order: list) -> None:  # type: ignore[type-arg]
        deliveries = archive_store.DeliveryIds("exec-1")
        for one in order:
            now = datetime.now(UTC)
            with control_db.write() as conn:
                added = archive_store.upsert_page(conn, one, deliveries, now)
                archive_store.record_page(conn, 1, one.cursor(), added, now)
            new.append(added)

    runs = [
        threading.Thread(target=run, args=(order,))
        for order in (pages + [fresh], list(reversed(pages)))
    ]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join(60)
    run([stale])

    assert sum(new) == 2_000
    assert archived_count(control_db) == 2_000
    assert archived_rows(control_db) == execution_rows(db)
    with control_db.read() as conn:
        assert (
            conn.execute(select(func.count()).select_from(archived_delivery_log)).scalar_one()
            == 1_900
        )
        assert conn.execute(
            select(archive_state.c.watermark_id, archive_state.c.archived_events)
        ).one() == (1, 2_000)
    # the report aggregates moved with every page exactly once: they equal the ones built
    # again from the archived rows
    kept = report_aggregates(control_db)
    assert sum(row["events"] for row in kept.values()) == 2_000
    assert sum(row["delivery_failed"] for row in kept.values()) == 101  # the bounce moved
    with control_db.write() as conn:
        report_store.rebuild(conn, 1, "exec-1")
    assert report_aggregates(control_db) == kept


def report_aggregates(db: Database) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The report_hour rows of a control database, by key."""
    with db.read() as conn:
        rows = conn.execute(select(report_hour)).mappings().all()
    return {tuple(r[k] for k in report_store.KEY): dict(r) for r in rows}
