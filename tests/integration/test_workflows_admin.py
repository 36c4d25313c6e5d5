"""Administering an execution instance: technical workflows (admin API, CLI, /readyz),
publications (admin API, CLI), and the housekeeping workflows cleanup and statsSampler
(SPEC §3.4, §3.9, §3.10).

Every test runs on SQLite and PostgreSQL against a real HTTP server with its
workflows running; CLI commands run as real ``msgcenter`` processes.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import structlog
from sqlalchemy import func, insert, select, text, update

from msgcenter.logs import configure as configure_logging
from msgcenter.settings import LoggingSettings
from msgcenter.store.tables import delivery_log, event, event_status_change, stats_sample
from msgcenter.workflows.maintenance import SETTLE, Cleanup
from tests.conftest import add_operator, wait_for
from tests.processing import (
    ADMIN,
    FIXTURES,
    all_final,
    delivery_logs,
    event_json,
    order_publication,
    processing_server,
    publish,
    push_rest,
    statuses,
)

WORKFLOWS = {
    "rtEventsProcessing",
    "batchEventsProcessing",
    "updateEventStatus",
    "cleanup",
    "statsSampler",
    "webhookOutbox",
    "webhookDelivery",
}
CTX = {"client": {"firstname": "Ann"}, "order": {"id": "1001"}}


def order_event(email: str, **fields: object) -> dict[str, object]:
    return {"type": "order_confirmation", "email": email, "ctx": CTX, **fields}


def cli(database_url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``msgcenter`` command against ``database_url``."""
    return subprocess.run(
        [sys.executable, "-m", "msgcenter", *args, "--db", database_url],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", "MSGCENTER_LOGGING__LEVEL": "warning"},
        timeout=60,
    )


def workflows(server, auth=ADMIN) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    answer = httpx.get(f"{server.url}/api/v1/admin/workflows", auth=auth)
    assert answer.status_code == 200, answer.text
    return {w["name"]: w for w in answer.json()}


def set_workflow(server, name: str, action: str) -> dict:  # type: ignore[no-untyped-def]
    answer = httpx.post(f"{server.url}/api/v1/admin/workflows/{name}/{action}", auth=ADMIN)
    assert answer.status_code == 200, answer.text
    return answer.json()


def readyz(server) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.get(f"{server.url}/readyz")


# -- technical workflows ---------------------------------------------------------------


def test_workflows_are_listed_running_with_their_last_run(db, smtp_server):
    with processing_server(db, smtp_server.port) as server:
        wait_for(
            lambda: all(w["last_run"] for w in workflows(server).values()),
            message="every workflow to have run",
        )
        listed = workflows(server)
        assert set(listed) == WORKFLOWS
        for state in listed.values():
            assert state["state"] == "running" and state["last_error"] is None, state
            assert datetime.fromisoformat(state["last_run"]) > datetime.now(UTC) - timedelta(
                minutes=1
            )
        answer = readyz(server)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "status": "ready",
            "database": "ok",
            "workflows": "running",
            "relays": {"email": "ok"},
        }


def test_pausing_rt_processing_leaves_events_pending_until_it_is_started(db, smtp_server):
    with processing_server(db, smtp_server.port) as server:
        publish(server, order_publication())
        paused = set_workflow(server, "rtEventsProcessing", "pause")
        assert paused["name"] == "rtEventsProcessing" and paused["state"] == "paused"
        assert workflows(server)["rtEventsProcessing"]["state"] == "paused"
        answer = readyz(server)
        assert answer.status_code == 503
        assert answer.json()["workflows"] == ["rtEventsProcessing: paused"]

        (waiting,) = push_rest(server, order_event("waits@example.com"))
        (batch,) = push_rest(server, order_event("batch@example.com"), queue="batch")
        wait_for(
            lambda: all_final(db, [batch]), message="the batch event (its workflow runs) to be sent"
        )
        # the paused workflow, woken by the new event, must not spin while it waits: the
        # thread of the server's event loop (where the workflows run) stays nearly idle
        cpu, wall = server.loop_cpu_seconds(), time.monotonic()
        time.sleep(1.0)
        busy = (server.loop_cpu_seconds() - cpu) / (time.monotonic() - wall)
        assert busy < 0.25, f"the server's event loop used {busy:.0%} of a CPU while idle"
        assert statuses(db, [waiting, batch]) == {waiting: "pending", batch: "sent"}
        assert delivery_logs(db, waiting) == []
        assert smtp_server.handler.to("waits@example.com") == []

        assert set_workflow(server, "rtEventsProcessing", "start")["state"] == "running"
        wait_for(
            lambda: all_final(db, [waiting]), message="the real-time event to be sent once started"
        )
        assert statuses(db, [waiting]) == {waiting: "sent"}
        assert [s["status"] for s in event_json(server, waiting)["history"]] == [
            "pending",
            "pending_delivery",
            "sent",
        ]
        assert len(smtp_server.handler.to("waits@example.com")) == 1
        wait_for(lambda: readyz(server).status_code == 200, message="the instance to be ready")


def test_workflow_admin_api_refuses_unknown_workflows_and_actions(db, smtp_server):
    with processing_server(db, smtp_server.port) as server:
        unknown = httpx.post(
            f"{server.url}/api/v1/admin/workflows/noSuchWorkflow/pause", auth=ADMIN
        )
        assert unknown.status_code == 404
        assert "noSuchWorkflow" in unknown.json()["detail"]
        bad_action = httpx.post(f"{server.url}/api/v1/admin/workflows/cleanup/explode", auth=ADMIN)
        assert bad_action.status_code == 400, bad_action.text
        assert bad_action.headers["content-type"].startswith("application/problem+json")
        assert workflows(server)["cleanup"]["state"] == "running"


@pytest.mark.slow  # runs the msgcenter command as a process
def test_cli_lists_stops_pauses_and_starts_workflows_and_readyz_follows(db, smtp_server, tmp_path):
    with processing_server(db, smtp_server.port) as server:
        wait_for(lambda: readyz(server).status_code == 200, message="the instance to be ready")

        done = cli(db.url, tmp_path, "workflow", "stop", "batchEventsProcessing")
        assert done.returncode == 0, done.stderr
        assert "workflow batchEventsProcessing: stopped" in done.stdout
        answer = readyz(server)
        assert answer.status_code == 503
        assert answer.json()["workflows"] == ["batchEventsProcessing: stopped"]
        assert workflows(server)["batchEventsProcessing"]["state"] == "stopped"

        done = cli(db.url, tmp_path, "workflow", "pause", "updateEventStatus")
        assert done.returncode == 0 and "workflow updateEventStatus: paused" in done.stdout, (
            done.stderr
        )
        assert readyz(server).json()["workflows"] == [
            "batchEventsProcessing: stopped",
            "updateEventStatus: paused",
        ]

        done = cli(db.url, tmp_path, "workflow", "list")
        assert done.returncode == 0, done.stderr
        expected = dict.fromkeys(WORKFLOWS, "running") | {
            "batchEventsProcessing": "stopped",
            "updateEventStatus": "paused",
        }
        for name, state in expected.items():
            (row,) = [line for line in done.stdout.splitlines() if re.search(rf"\b{name}\b", line)]
            assert f" {state} " in row and " never " not in row, done.stdout

        done = cli(db.url, tmp_path, "workflow", "start", "batchEventsProcessing")
        assert done.returncode == 0 and "workflow batchEventsProcessing: running" in done.stdout, (
            done.stderr
        )
        # a workflow resumed after a long stop is ready once its next round recorded a heartbeat
        wait_for(
            lambda: readyz(server).json()["workflows"] == ["updateEventStatus: paused"],
            message="only updateEventStatus to be reported",
        )
        set_workflow(server, "updateEventStatus", "start")
        wait_for(lambda: readyz(server).status_code == 200, message="the instance to be ready")
        assert {w["state"] for w in workflows(server).values()} == {"running"}

        missing = cli(db.url, tmp_path, "workflow", "start", "noSuchWorkflow")
        assert missing.returncode == 1
        assert "no workflow 'noSuchWorkflow'" in missing.stderr
        assert "Traceback" not in missing.stderr


@pytest.fixture
def server_logging() -> Iterator[None]:
    """Logging configured as ``msgcenter exec serve`` does it, for the length of one test."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging(LoggingSettings())
    structlog.configure(cache_logger_on_first_use=False)  # nothing outlives the test
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_workflow_that_fails_is_reported_failed_with_its_error_and_recovers(
    db, smtp_server, server_logging
):
    with processing_server(db, smtp_server.port, stats_interval_seconds=0.2) as server:
        # once every workflow has run, cleanup (which also purges statistics) sleeps for an hour
        wait_for(
            lambda: all(w["last_run"] for w in workflows(server).values()),
            message="every workflow to have run",
        )
        renamed = False
        try:
            # make statsSampler's writes fail for real: its table goes away for a while
            with db.write() as conn:
                conn.execute(text("ALTER TABLE stats_sample RENAME TO stats_sample_away"))
            renamed = True
            wait_for(
                lambda: workflows(server)["statsSampler"]["state"] == "failed",
                message="statsSampler to be failed",
            )
            failed = workflows(server)["statsSampler"]
            assert "stats_sample" in failed["last_error"] and failed["last_error_at"] is not None
            assert "\n" not in failed["last_error"] and "INSERT" not in failed["last_error"], (
                failed["last_error"]
            )
            # statsSampler is not required: the instance stays ready, and the other workflows run
            assert readyz(server).status_code == 200
            assert {w["state"] for n, w in workflows(server).items() if n != "statsSampler"} == {
                "running"
            }

            with db.write() as conn:
                conn.execute(text("ALTER TABLE stats_sample_away RENAME TO stats_sample"))
            renamed = False
            wait_for(
                lambda: workflows(server)["statsSampler"]["state"] == "running",
                message="statsSampler to recover",
            )
            recovered = workflows(server)["statsSampler"]
            assert "stats_sample" in recovered["last_error"]  # the last error stays visible
            assert datetime.fromisoformat(recovered["last_run"]) > datetime.fromisoformat(
                failed["last_error_at"]
            )
        finally:
            if renamed:
                with db.write() as conn:
                    conn.execute(text("ALTER TABLE stats_sample_away RENAME TO stats_sample"))


# -- publications ----------------------------------------------------------------------


def test_publication_and_workflow_admin_need_mc_admin(db, smtp_server):
    with processing_server(db, smtp_server.port) as server:
        add_operator(db, "pusher", "pw", "mc_push")
        pusher = ("pusher", "pw")
        base = f"{server.url}/api/v1/admin"
        refused = [
            httpx.put(f"{base}/publications", json=order_publication(), auth=pusher),
            httpx.get(f"{base}/publications", auth=pusher),
            httpx.delete(f"{base}/publications/order_confirmation_email", auth=pusher),
            httpx.get(f"{base}/workflows", auth=pusher),
            httpx.post(f"{base}/workflows/rtEventsProcessing/pause", auth=pusher),
        ]
        for answer in refused:
            assert answer.status_code == 403, (
                answer.request.method,
                answer.request.url,
                answer.text,
            )
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert "mc_admin" in answer.json()["detail"]
        assert httpx.get(f"{base}/publications", auth=ADMIN).json() == []
        assert workflows(server)["rtEventsProcessing"]["state"] == "running"
        # the same operator may push events
        answer = httpx.post(
            f"{server.url}/api/v1/events/rt", json=order_event("a@example.com"), auth=pusher
        )
        assert answer.status_code == 201, answer.text


def test_a_template_syntax_error_is_rejected_with_its_part_and_line(db, smtp_server):
    with processing_server(db, smtp_server.port) as server:
        url = f"{server.url}/api/v1/admin/publications"
        spec = order_publication()
        spec["content"]["html"] = (
            "<p>Hello {{ ctx.client.firstname }}</p>\n<ul>\n{% for a in %}<li>{{ a }}</li>{% endfor %}\n</ul>"
        )
        answer = httpx.put(url, json=spec, auth=ADMIN)
        assert answer.status_code == 400, answer.text
        problem = answer.json()
        assert problem["type"] == "urn:msgcenter:problem:template-syntax"
        assert problem["detail"].startswith("html, line 3"), problem

        spec = order_publication()
        spec["content"]["blocks"] = {"footer": "<p>Shop</p>\n{{ event.email "}
        problem = httpx.put(url, json=spec, auth=ADMIN).json()
        assert problem["status"] == 400 and problem["detail"].startswith("block:footer, line 2"), (
            problem
        )

        assert httpx.get(url, auth=ADMIN).json() == []  # nothing was stored


def test_unpublished_types_end_not_taken_into_account(db, smtp_server):
    with processing_server(db, smtp_server.port) as server:
        url = f"{server.url}/api/v1/admin/publications"
        stored = publish(server, order_publication())
        assert sorted(p["queue"] for p in stored) == ["batch", "rt"]
        listed = httpx.get(url, auth=ADMIN).json()
        assert {(p["template"], p["queue"], p["version"]) for p in listed} == {
            ("order_confirmation_email", "rt", 1),
            ("order_confirmation_email", "batch", 1),
        }
        (before,) = push_rest(server, order_event("before@example.com"))
        wait_for(
            lambda: all_final(db, [before]), message="the event before unpublication to be sent"
        )
        assert statuses(db, [before]) == {before: "sent"}

        answer = httpx.delete(f"{url}/order_confirmation_email", auth=ADMIN)
        assert answer.status_code == 200 and answer.json() == {"retired": 2}, answer.text
        assert httpx.get(url, auth=ADMIN).json() == []
        after = push_rest(server, order_event("after@example.com")) + push_rest(
            server, order_event("after-batch@example.com"), queue="batch"
        )
        wait_for(lambda: all_final(db, after), message="the events after unpublication to be final")
        assert set(statuses(db, after).values()) == {"not_taken_into_account"}
        history = event_json(server, after[0])["history"]
        assert [s["status"] for s in history] == ["pending", "not_taken_into_account"]
        assert "no published template for type 'order_confirmation'" in history[-1]["reason"]
        assert smtp_server.handler.to("after@example.com") == []
        assert httpx.delete(f"{url}/order_confirmation_email", auth=ADMIN).status_code == 404


def test_a_folder_restricted_operator_publishes_only_into_its_folder(db, smtp_server):
    with processing_server(db, smtp_server.port) as server:
        add_operator(db, "brand", "pw", "mc_push,mc_admin", folder="brandA")
        brand = ("brand", "pw")
        url = f"{server.url}/api/v1/admin/publications"

        answer = httpx.put(url, json=order_publication(folder="brandB"), auth=brand)
        assert answer.status_code == 403, answer.text
        assert "brandA" in answer.json()["detail"] and "brandB" in answer.json()["detail"]
        assert httpx.get(url, auth=ADMIN).json() == []

        answer = httpx.put(url, json=order_publication(), auth=brand)
        assert answer.status_code == 201, answer.text
        assert {p["folder"] for p in answer.json()} == {"brandA"}
        assert {p["folder"] for p in httpx.get(url, auth=brand).json()} == {"brandA"}
        assert {p["folder"] for p in httpx.get(url, auth=ADMIN).json()} == {"brandA"}

        # the brand's events route to it; events outside the folder do not
        brand_push = httpx.post(
            f"{server.url}/api/v1/events/rt", json=order_event("brand@example.com"), auth=brand
        )
        assert brand_push.status_code == 201, brand_push.text
        in_folder = brand_push.json()["id"]
        (outside,) = push_rest(server, order_event("nofolder@example.com"))
        wait_for(lambda: all_final(db, [in_folder, outside]), message="both events to be final")
        assert statuses(db, [in_folder, outside]) == {
            in_folder: "sent",
            outside: "not_taken_into_account",
        }

        # and it cannot unpublish another folder's template
        publish(server, order_publication(template="main_order_email"))
        answer = httpx.delete(f"{url}/main_order_email", auth=brand)
        assert answer.status_code == 404
        assert {p["template"] for p in httpx.get(url, auth=ADMIN).json()} == {
            "order_confirmation_email",
            "main_order_email",
        }


@pytest.mark.slow  # runs the msgcenter command as a process
def test_cli_loads_a_publication_from_a_file(db, smtp_server, tmp_path):
    with processing_server(db, smtp_server.port) as server:
        done = cli(
            db.url,
            tmp_path,
            "exec",
            "publication",
            "load",
            str(FIXTURES / "order_confirmation.toml"),
        )
        assert done.returncode == 0, done.stderr
        assert (
            "published order_confirmation_email v1 for type 'order_confirmation' (email)"
            in done.stdout
        )

        listed = cli(db.url, tmp_path, "exec", "publication", "list")
        assert listed.returncode == 0, listed.stderr
        lines = [line for line in listed.stdout.splitlines() if "order_confirmation_email" in line]
        assert len(lines) == 2 and {" rt " in line for line in lines} == {True, False}, (
            listed.stdout
        )

        (event_id,) = push_rest(server, order_event("cli@example.com"))
        wait_for(lambda: all_final(db, [event_id]), message="the event to be sent")
        assert statuses(db, [event_id]) == {event_id: "sent"}
        (received,) = smtp_server.handler.to("cli@example.com")
        assert received.message["Subject"] == "Order 1001 confirmed, Ann"

        broken = tmp_path / "broken.toml"
        broken.write_text(
            (FIXTURES / "order_confirmation.toml")
            .read_text()
            .replace('subject = "Order {{ ctx.order.id }}', 'subject = "Order {{ ctx.order.id }')
        )
        done = cli(db.url, tmp_path, "exec", "publication", "load", str(broken))
        assert done.returncode == 1
        assert "subject, line 1" in done.stderr and "Traceback" not in done.stderr


# -- housekeeping ------------------------------------------------------------------------


def _history_rows(db, ids: list[int]) -> int:  # type: ignore[no-untyped-def]
    with db.read() as conn:
        return conn.execute(
            select(func.count()).where(event_status_change.c.event_id.in_(ids))
        ).scalar_one()


def _log_rows(db, ids: list[int]) -> int:  # type: ignore[no-untyped-def]
    with db.read() as conn:
        return conn.execute(
            select(func.count()).where(delivery_log.c.event_id.in_(ids))
        ).scalar_one()


def test_cleanup_purges_events_past_retention_with_their_logs_and_history(db, smtp_server):
    with processing_server(db, smtp_server.port) as server:
        publish(server, order_publication())
        old = push_rest(server, [order_event("old1@example.com"), order_event("old2@example.com")])
        (recent,) = push_rest(server, order_event("recent@example.com"))
        (unrouted,) = push_rest(
            server, {"type": "unknown_type", "email": "x@example.com", "ctx": {}}
        )
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        (waiting,) = push_rest(server, order_event("waiting@example.com", scheduled=later))
        wait_for(lambda: all_final(db, [*old, recent, unrouted]), message="the events to be final")
        assert _log_rows(db, old) == 2 and _history_rows(db, old) == 4

        retention = server.settings.processing.event_retention_days
        long_ago = datetime.now(UTC) - timedelta(days=retention + 1)
        with db.write() as conn:
            conn.execute(
                update(event)
                .where(event.c.id.in_([*old, unrouted, waiting]))
                .values(created=long_ago)
            )
            conn.execute(
                insert(stats_sample),
                [
                    {
                        "at": at,
                        "queue": "rt",
                        "pending_events": 0,
                        "pending_messages": 0,
                        "events_received": 0,
                        "messages_sent": 0,
                        "messages_failed": 0,
                    }
                    for at in (
                        datetime.now(UTC)
                        - timedelta(days=server.settings.processing.stats_retention_days + 1),
                        datetime.now(UTC),
                    )
                ],
            )

        more = Cleanup(db, server.settings.processing, server.settings.tracking).purge()

        assert more is False
        gone = [*old, unrouted]
        assert statuses(db, gone) == {}
        assert _log_rows(db, gone) == 0 and _history_rows(db, gone) == 0
        for event_id in gone:
            assert (
                httpx.get(f"{server.url}/api/v1/events/{event_id}", auth=ADMIN).status_code == 404
            )
        # a recent event, and an old one still waiting, are kept with everything they own
        assert statuses(db, [recent, waiting]) == {recent: "sent", waiting: "pending"}
        assert _log_rows(db, [recent]) == 1 and _history_rows(db, [recent]) == 2
        assert [s["status"] for s in event_json(server, recent)["history"]] == [
            "pending",
            "pending_delivery",
            "sent",
        ]
        with db.read() as conn:
            ages = conn.execute(select(stats_sample.c.at)).scalars().all()
        assert ages and min(ages) > datetime.now(UTC) - timedelta(
            days=server.settings.processing.stats_retention_days
        )


def test_the_cleanup_workflow_purges_on_its_own_with_a_tiny_retention(db, smtp_server):
    # a retention of about 2 s, checked every 0.2 s
    with processing_server(
        db, smtp_server.port, event_retention_days=2 / 86_400, cleanup_interval_seconds=0.2
    ) as server:
        publish(server, order_publication())
        (event_id,) = push_rest(server, order_event("short@example.com"))
        wait_for(
            lambda: statuses(db, [event_id]) == {event_id: "sent"}, message="the event to be sent"
        )
        assert _log_rows(db, [event_id]) == 1
        wait_for(
            lambda: statuses(db, [event_id]) == {},
            message="the cleanup workflow to purge the event",
        )
        assert _log_rows(db, [event_id]) == 0 and _history_rows(db, [event_id]) == 0
        assert workflows(server)["cleanup"]["state"] == "running"


def test_stats_sampler_records_queue_sizes_and_throughput(db, smtp_server):
    with processing_server(db, smtp_server.port, stats_interval_seconds=0.2) as server:
        publish(server, order_publication())
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        waiting = push_rest(
            server, [order_event(f"later{i}@example.com", scheduled=later) for i in range(2)]
        )
        sent = push_rest(server, [order_event("now1@example.com"), order_event("now2@example.com")])
        (batch,) = push_rest(server, order_event("batch@example.com"), queue="batch")
        wait_for(lambda: all_final(db, [*sent, batch]), message="the due events to be sent")
        # outcomes are written by then, and a sample taken after it counts up to it
        settled = datetime.now(UTC) + timedelta(seconds=0.1) + SETTLE

        def samples() -> list[dict]:
            with db.read() as conn:
                return [
                    dict(r)
                    for r in conn.execute(
                        select(stats_sample).order_by(stats_sample.c.at, stats_sample.c.id)
                    ).mappings()
                ]

        rows = wait_for(
            lambda: (found := samples()) and found[-1]["at"] > settled and found,
            timeout=20,
            message="a sample whose throughput window covers the sends",
        )
        by_queue = {q: [r for r in rows if r["queue"] == q] for q in ("rt", "batch")}
        assert len(by_queue["rt"]) >= 3 and len(by_queue["batch"]) >= 3
        assert by_queue["rt"][-1]["pending_events"] == len(waiting)  # the scheduled ones still wait
        assert by_queue["batch"][-1]["pending_events"] == 0
        assert by_queue["rt"][-1]["pending_messages"] == 0
        assert 1 <= sum(r["messages_sent"] for r in by_queue["rt"]) <= len(sent)
        assert sum(r["messages_sent"] for r in by_queue["batch"]) <= 1
        assert 1 <= sum(r["events_received"] for r in by_queue["rt"]) <= len(sent) + len(waiting)
        assert sum(r["messages_failed"] for r in rows) == 0
        assert workflows(server)["statsSampler"]["state"] == "running"
