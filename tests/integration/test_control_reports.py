"""Reports (SPEC §4, issue item 6) and the archived-event API (item 5) of a control instance.

Every test runs on SQLite and PostgreSQL with real servers on loopback: an
execution instance (sending to a real SMTP server, or filled with final events
straight in its database), and a control instance archiving it through its API.
Report figures are checked against counts the test computes itself from the
events it pushed and from the execution instance's rows, never from the
aggregates the reports read.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import insert, select, update
from typer.testing import CliRunner, Result

import msgcenter.cli
from msgcenter.control.app import create_control_app
from msgcenter.errors import ConflictError
from msgcenter.events.model import EventStatus
from msgcenter.logs import configure as configure_logging
from msgcenter.reports import bucket_of, bucket_range
from msgcenter.settings import LoggingSettings, Settings
from msgcenter.store import archive as archive_store
from msgcenter.store.database import Database
from msgcenter.store.tables import (
    archive_state,
    delivery_log,
    event,
    report_hour,
    stats_sample,
    tracking_log,
)
from tests.archiving import fill_final_events, register, run_archive
from tests.conftest import RunningServer, ThreadedServer, add_operator, start_exec_server, wait_for
from tests.control import CONTROL_ADMIN, KEY
from tests.processing import (
    ADMIN,
    all_final,
    order_publication,
    processing_server,
    publish,
    push_rest,
)

UNKNOWN_USER = "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown"
TRY_LATER = "451 4.3.0 try again later"


@contextlib.contextmanager
def reports_server(db: Database, **reports: Any) -> Iterator[RunningServer]:
    """A control instance on ``db`` with ``[reports]`` settings ``reports``."""
    with contextlib.suppress(ConflictError):
        add_operator(db, *CONTROL_ADMIN, rights="mc_admin")
    settings = Settings(
        database_url=db.url,
        control={"credentials_key": KEY, "instance_timeout_seconds": 5},
        reports={"metrics_cache_seconds": 0, **reports},
    )
    with ThreadedServer(create_control_app(settings, db)) as url:
        yield RunningServer(url, db, settings)


def cli(*args: str) -> Result:
    """``msgcenter *args`` in-process; the command points logging at the runner's streams, which
    close with it: logging goes back to this process's stderr."""
    try:
        return CliRunner().invoke(msgcenter.cli.app, list(args))
    finally:
        configure_logging(LoggingSettings())


def get(
    control: RunningServer, path: str, auth: Any = CONTROL_ADMIN, **params: Any
) -> httpx.Response:
    return httpx.get(f"{control.url}{path}", params=params, auth=auth, timeout=60)


def report(control: RunningServer, name: str, **params: Any) -> dict[str, Any]:
    answer = get(control, f"/api/v1/reports/{name}", **params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def period(**extra: Any) -> dict[str, Any]:
    """A period holding everything the tests push: the last two days and the next hour."""
    now = datetime.now(UTC)
    return {
        "from": (now - timedelta(days=2)).isoformat(),
        "to": (now + timedelta(hours=1)).isoformat(),
        **extra,
    }


# -- independent figures, from the execution instance's own rows ------------------------------


def execution_figures(db: Database) -> dict[str, Any]:
    """What the reports must say, computed from the execution database: counts per status and
    type, and every time in seconds (queue for each routed event, sending and total for each
    sent one)."""
    with db.read() as conn:
        events = conn.execute(
            select(
                event.c.id, event.c.type, event.c.status, event.c.created, event.c.delivery_log_id
            )
        ).all()
        logs = {
            r.id: r
            for r in conn.execute(
                select(delivery_log.c.id, delivery_log.c.created, delivery_log.c.sent_at)
            )
        }
    statuses: Counter[str] = Counter()
    per_type: dict[str, Counter[str]] = {}
    per_hour: Counter[datetime] = Counter()
    queue, sending, total = [], [], []
    for e in events:
        label = EventStatus(e.status).label
        statuses[label] += 1
        per_type.setdefault(e.type, Counter())[label] += 1
        per_hour[hour(e.created)] += 1
        log = logs.get(e.delivery_log_id)
        if log is None:
            continue
        queue.append(max((log.created - e.created).total_seconds(), 0.0))
        if e.status == EventStatus.SENT and log.sent_at is not None:
            sending.append(max((log.sent_at - log.created).total_seconds(), 0.0))
            total.append(max((log.sent_at - e.created).total_seconds(), 0.0))
    return {
        "events": len(events),
        "statuses": statuses,
        "per_type": per_type,
        "per_hour": per_hour,
        "queue": queue,
        "sending": sending,
        "total": total,
    }


def average(times: list[float]) -> float | None:
    return sum(round(t * 1000) for t in times) / len(times) / 1000 if times else None


def assert_percentile_in_its_bucket(estimate: float | None, times: list[float], q: float) -> None:
    """The estimate lies in the histogram bucket of the exact (nearest-rank) percentile."""
    if not times:
        assert estimate is None
        return
    ordered = sorted(times)
    exact = ordered[max(int(-(-q * len(ordered) // 1)) - 1, 0)]
    low, high = bucket_range(bucket_of(exact))
    # the estimate is rounded to the microsecond: it may pass a bound by half of one
    assert estimate is not None and low - 5e-7 <= estimate <= high + 5e-7, (
        q, estimate, exact, low, high,
    )  # fmt: skip


def service_totals(figures: dict[str, Any]) -> dict[str, Any]:
    s = figures["statuses"]
    errors = figures["events"] - s["sent"]
    return {
        "events": figures["events"],
        "sent": s["sent"],
        "not_taken_into_account": s["not_taken_into_account"],
        "expired": s["expired"],
        "delivery_failed": s["delivery_failed"],
        "ignored": s["ignored"],
        "errors": errors,
        "error_rate": round(errors / figures["events"], 6),
    }


def check_reports_against(control: RunningServer, db: Database) -> dict[str, Any]:
    """Every report of ``control`` against the execution database ``db``; returns the reports."""
    figures = execution_figures(db)
    service = report(control, "service-level", **period())
    totals = service["totals"]
    assert {k: totals[k] for k in service_totals(figures)} == service_totals(figures)
    assert totals["average_sending_seconds"] == pytest.approx(average(figures["sending"]), abs=2e-3)
    by_type = {t["event_type"]: t["figures"] for t in service["by_type"]}
    assert {t: f["events"] for t, f in by_type.items()} == {
        t: sum(c.values()) for t, c in figures["per_type"].items()
    }
    assert {t: f["sent"] for t, f in by_type.items()} == {
        t: c["sent"] for t, c in figures["per_type"].items()
    }
    per_hour = {
        datetime.fromisoformat(p["period"]): p["figures"]["events"]
        for p in service["series"]
        if p["figures"]["events"]
    }
    assert per_hour == dict(figures["per_hour"])
    assert len(service["series"]) >= 48  # every hour of the period, empty ones too

    processing = report(control, "processing-time", **period())
    for measure in ("queue", "sending", "total"):
        got = processing["totals"][measure]
        times = figures[measure]
        assert got["count"] == len(times), measure
        assert got["average_seconds"] == pytest.approx(average(times), abs=2e-3), measure
        for q in (0.5, 0.95, 0.99):
            assert_percentile_in_its_bucket(got[f"p{round(q * 100)}_seconds"], times, q)

    history = report(control, "event-history", **period())
    assert {r["event_type"]: (r["events"], r["sent"]) for r in history["rows"]} == {
        t: (sum(c.values()), c["sent"]) for t, c in figures["per_type"].items()
    }
    assert (history["events"], history["sent"]) == (figures["events"], figures["statuses"]["sent"])
    assert [
        sum(c)
        for c in zip(*([x["events"] for x in r["cells"]] for r in history["rows"]), strict=True)
    ] == [c["events"] for c in history["totals"]]
    # what depends on the events only: not the period's bounds nor the queue samples, which
    # statsSampler keeps adding
    return {
        "service-level": {k: service[k] for k in ("totals", "by_type", "checks")},
        "processing-time": {k: processing[k] for k in ("totals", "by_type")},
        "event-history": {k: history[k] for k in ("rows", "events", "sent")},
    }


def push_every_outcome(server: RunningServer, smtp_server: Any) -> list[int]:
    """Events of each final status, of two event types: sent, delivery_failed (then quarantined),
    ignored, expired (temporary failures past the validity) and not_taken_into_account."""
    smtp_server.handler.scripted["gone@example.com"] = [UNKNOWN_USER]
    smtp_server.handler.scripted["slow@example.com"] = [TRY_LATER] * 100
    publish(server, order_publication())
    publish(server, order_publication(template="reset_email", event_type="password_reset"))
    order = {
        "type": "order_confirmation",
        "ctx": {"client": {"firstname": "Ann"}, "order": {"id": "7"}},
    }
    ids = push_rest(server, [{**order, "email": f"ann{i}@example.com"} for i in range(5)])
    ids += push_rest(
        server, [{"type": "password_reset", "email": "bob@example.com", "ctx": {}}] * 2
    )
    (failed,) = push_rest(server, {**order, "email": "gone@example.com"})
    wait_for(lambda: all_final(server.db, [failed]), message="the failed event to be final")
    ids += [failed, *push_rest(server, {**order, "email": "gone@example.com"})]  # ignored now
    ids += push_rest(server, {**order, "email": "slow@example.com"})
    ids += push_rest(server, [{"type": "no_such_type", "email": "carl@example.com", "ctx": {}}] * 2)
    wait_for(lambda: all_final(server.db, ids), timeout=30, message="every event to be final")
    return ids


# -- reports ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["web", "database"])
def test_reports_count_what_was_pushed_and_move_with_a_late_change(
    db, control_db, smtp_server, method
):
    with processing_server(
        db, smtp_server.port, rt_validity_seconds=2, stats_interval_seconds=0.2
    ) as server:
        push_every_outcome(server, smtp_server)
        wait_for(lambda: samples(db) >= 4, message="statsSampler to sample the queues")
        with reports_server(control_db) as control:
            register(
                control, "exec1", server.url, *ADMIN, method=method,
                database_url=db.url if method == "database" else None,
            )  # fmt: skip
            first = run_archive(control, "exec1").json()
            assert first["outcome"] == "complete" and first["new_events"] == 12, first
            assert first["stats_samples"] >= 4

            # what the test pushed, counted by hand
            service = report(control, "service-level", **period())
            assert {
                k: service["totals"][k]
                for k in ("events", "sent", "delivery_failed", "ignored", "expired",
                          "not_taken_into_account", "errors")
            } == {
                "events": 12, "sent": 7, "delivery_failed": 1, "ignored": 1, "expired": 1,
                "not_taken_into_account": 2, "errors": 5,
            }  # fmt: skip
            assert service["totals"]["error_rate"] == round(5 / 12, 6)
            assert sorted((t["event_type"], t["figures"]["sent"]) for t in service["by_type"]) == [
                ("no_such_type", 0),
                ("order_confirmation", 5),
                ("password_reset", 2),
            ]
            before = check_reports_against(control, db)
            processing = report(control, "processing-time", **period())
            queues = {q["queue"]: q for q in processing["queues"]}
            assert queues["rt"]["samples"] >= 2 and queues["rt"]["min_pending_events"] >= 0
            assert queues["rt"]["max_pending_events"] >= queues["rt"]["min_pending_events"]

            # a re-run adds nothing
            again = run_archive(control, "exec1").json()
            assert again["new_events"] == 0
            assert check_reports_against(control, db) == before

            # a sent message bounces later: updateEventStatus makes its event delivery_failed,
            # and the next archive moves it from sent to failed in the reports
            with db.read() as conn:
                bounced = (
                    conn.execute(
                        select(event.c.id).where(
                            event.c.type == "order_confirmation", event.c.status == 2
                        )
                    )
                    .scalars()
                    .first()
                )
            with db.write() as conn:
                conn.execute(
                    update(delivery_log)
                    .where(delivery_log.c.event_id == bounced)
                    .values(status=2, failure_type="hard", failure_reason="550 bounced later",
                            last_modified=datetime.now(UTC))
                )  # fmt: skip
            wait_for(
                lambda: execution_figures(db)["statuses"]["delivery_failed"] == 2,
                message="updateEventStatus to copy the bounce",
            )
            assert run_archive(control, "exec1").json()["new_events"] == 0
            after = check_reports_against(control, db)
            totals = after["service-level"]["totals"]
            assert (totals["events"], totals["sent"], totals["delivery_failed"]) == (12, 6, 2)
            assert after["processing-time"]["totals"]["sending"]["count"] == 6


def samples(db: Database) -> int:
    with db.read() as conn:
        return len(conn.execute(select(stats_sample.c.id)).all())


def test_csv_and_json_agree_and_the_cli_prints_the_same(db, control_db, tmp_path):
    now = datetime.now(UTC)
    fill_final_events(db, 400, start=now - timedelta(hours=30), spread=timedelta(hours=28))
    add_operator(db, *ADMIN)
    threaded, server = start_exec_server(db)
    with threaded, reports_server(control_db) as control:
        register(control, "exec1", server.url, *ADMIN)
        assert run_archive(control, "exec1").json()["new_events"] == 400
        for name in ("service-level", "processing-time", "event-history"):
            params = period(granularity="day" if name == "event-history" else "hour")
            as_json = report(control, name, **params)
            answer = get(control, f"/api/v1/reports/{name}", format="csv", **params)
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/csv")
            assert "attachment" in answer.headers["content-disposition"]
            rows = list(csv.DictReader(io.StringIO(answer.text)))
            assert_csv_agrees(name, as_json, rows)

            # the CLI, in-process, on the same database
            command = ["report", name, "--db", control_db.url, "--from", params["from"]]
            command += ["--to", params["to"]]
            if name == "event-history":
                command += ["--granularity", "day"]
            printed = cli(*command, "--format", "json")
            assert printed.exit_code == 0, printed.output
            assert same_report(orjson.loads(printed.stdout), as_json)
            as_csv = cli(*command, "--format", "csv")
            assert as_csv.exit_code == 0, as_csv.output
            assert as_csv.stdout.splitlines() == answer.text.splitlines()
            table = cli("control", *command)
            assert table.exit_code == 0, table.output
            assert "total" in table.stdout and name in table.stdout


def same_report(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two reports of the same period, asked a moment apart (the default ``to`` aside)."""
    return a == b


def assert_csv_agrees(name: str, report_json: dict[str, Any], rows: list[dict[str, str]]) -> None:
    def number(text: str) -> float | None:
        return None if text == "" else float(text)

    if name == "service-level":
        points = [r for r in rows if r["period"] != "total"]
        assert len(points) == len(report_json["series"])
        for row, point in zip(points, report_json["series"], strict=True):
            assert datetime.fromisoformat(row["period"]) == datetime.fromisoformat(point["period"])
            for column in ("events", "sent", "errors", "delivery_failed", "error_rate"):
                assert number(row[column]) == point["figures"][column], column
        total = next(r for r in rows if r["period"] == "total" and r["event_type"] == "")
        for column in ("events", "sent", "ignored", "not_taken_into_account", "error_rate",
                       "average_sending_seconds"):  # fmt: skip
            assert number(total[column]) == report_json["totals"][column], column
        assert total["error_rate_level"] == report_json["checks"][0]["level"]
        typed = {r["event_type"]: r for r in rows if r["event_type"]}
        assert {t: int(r["events"]) for t, r in typed.items()} == {
            t["event_type"]: t["figures"]["events"] for t in report_json["by_type"]
        }
    elif name == "processing-time":
        total = next(r for r in rows if r["period"] == "total" and r["event_type"] == "")
        for measure in ("queue", "sending", "total"):
            for column in ("count", "average_seconds", "p50_seconds", "p95_seconds", "p99_seconds"):
                assert (
                    number(total[f"{measure}_{column}"]) == report_json["totals"][measure][column]
                )
    else:
        header = list(rows[0].keys())
        assert header[0] == "event_type" and header[-2:] == ["total events", "total sent"]
        assert len(header) == 3 + 2 * len(report_json["periods"])
        by_type = {r["event_type"]: r for r in rows}
        for row in report_json["rows"]:
            cells = by_type[row["event_type"]]
            assert int(cells["total events"]) == row["events"]
            for start, cell in zip(report_json["periods"], row["cells"], strict=True):
                key = datetime.fromisoformat(start).isoformat()
                assert int(cells[f"{key} events"]) == cell["events"]
                assert int(cells[f"{key} sent"]) == cell["sent"]
        assert int(by_type["total"]["total events"]) == report_json["events"]


@pytest.mark.parametrize("method", ["web", "database"])
def test_crossed_thresholds_are_marked_and_exposed_in_metrics(db, control_db, method):
    now = datetime.now(UTC)
    # one event in twenty each not taken into account, failed, ignored: an error rate of 15 %
    fill_final_events(db, 200, start=now - timedelta(minutes=50), spread=timedelta(minutes=40))
    with db.write() as conn:
        conn.execute(
            insert(stats_sample),
            [
                {"at": now - timedelta(minutes=m), "queue": "rt", "pending_events": size,
                 "pending_messages": size // 2, "events_received": 1, "messages_sent": 1,
                 "messages_failed": 0}
                for m, size in ((30, 10), (20, 70), (10, 40))
            ],
        )  # fmt: skip
    add_operator(db, *ADMIN)
    threaded, server = start_exec_server(db)
    thresholds = {
        "error_rate": {"warning": 0.1, "alert": 0.5},
        "max_queue_size": {"warning": 50, "alert": 100},
        "event_types": {"order_confirmation": {"error_rate": {"warning": 0.01, "alert": 0.12}}},
        "metrics_window_hours": 2,
    }
    with threaded, reports_server(control_db, **thresholds) as control:
        register(control, "exec1", server.url, *ADMIN, method=method,
                 database_url=db.url if method == "database" else None)  # fmt: skip
        run = run_archive(control, "exec1").json()
        assert (run["new_events"], run["stats_samples"]) == (200, 3), run

        service = report(control, "service-level", **period())
        overall = {c["indicator"]: c for c in service["checks"]}
        assert overall["error_rate"] == {
            "indicator": "error_rate", "event_type": None, "value": 0.15,
            "warning": 0.1, "alert": 0.5, "level": "warning",
        }  # fmt: skip
        typed = service["by_type"][0]
        assert typed["event_type"] == "order_confirmation"
        assert {c["indicator"]: c["level"] for c in typed["checks"]}["error_rate"] == "alert"
        assert [(c["event_type"], c["indicator"], c["level"]) for c in service["crossed"]] == [
            ("order_confirmation", "error_rate", "alert"),
            (None, "error_rate", "warning"),
        ]

        processing = report(control, "processing-time", **period())
        (rt,) = processing["queues"]
        assert (rt["queue"], rt["samples"], rt["min_pending_events"], rt["max_pending_events"]) == (
            "rt", 3, 10, 70,
        )  # fmt: skip
        assert rt["average_pending_events"] == 40.0
        assert rt["max_pending_messages"] == 35
        queue_check = next(c for c in processing["checks"] if c["indicator"] == "max_queue_size")
        assert (queue_check["value"], queue_check["level"]) == (70, "warning")

        thresholds_out = get(control, "/api/v1/reports/thresholds").json()
        assert {"indicator": "error_rate", "warning": 0.1, "alert": 0.5} in thresholds_out[
            "defaults"
        ]
        assert thresholds_out["event_types"]["order_confirmation"] == [
            {"indicator": "error_rate", "warning": 0.01, "alert": 0.12}
        ]

        scraped = httpx.get(f"{control.url}/metrics").text
        labels = 'event_type="order_confirmation",indicator="error_rate",instance="exec1"'
        assert f"msgcenter_report_indicator{{{labels}}} 0.15" in scraped
        assert f'msgcenter_report_threshold_crossed{{{labels},level="alert"}} 1.0' in scraped
        assert f'msgcenter_report_threshold{{{labels},level="alert"}} 0.12' in scraped
        every_type = 'event_type="",indicator="error_rate",instance="exec1"'
        assert f'msgcenter_report_threshold_crossed{{{every_type},level="warning"}} 1.0' in scraped
        assert f'msgcenter_report_threshold_crossed{{{every_type},level="alert"}} 0.0' in scraped
        queue = 'event_type="",indicator="max_queue_size",instance="exec1"'
        assert f"msgcenter_report_indicator{{{queue}}} 70.0" in scraped
        assert f'msgcenter_report_threshold_crossed{{{queue},level="warning"}} 1.0' in scraped

        # the same samples pulled again (the watermark's overlap) are not counted twice
        assert run_archive(control, "exec1").json()["stats_samples"] == 0
        again = report(control, "processing-time", **period())["queues"][0]
        assert (again["samples"], again["max_pending_events"]) == (3, 70)


def test_report_aggregates_are_built_from_an_archive_that_had_none(db, control_db):
    """After the upgrade that adds them, the next run builds them from the archived rows first."""
    fill_final_events(
        db, 300, start=datetime.now(UTC) - timedelta(hours=40), spread=timedelta(days=1)
    )
    add_operator(db, *ADMIN)
    threaded, server = start_exec_server(db)
    with threaded, reports_server(control_db) as control:
        register(control, "exec1", server.url, *ADMIN)
        assert run_archive(control, "exec1").json()["new_events"] == 300
        built = check_reports_against(control, db)
        # as if archived before the aggregates existed
        with control_db.write() as conn:
            conn.execute(report_hour.delete())
            conn.execute(update(archive_state).values(reports_built=False))
        assert report(control, "service-level", **period())["totals"]["events"] == 0
        # a late change archived on top of the rebuilt aggregates
        with db.write() as conn:
            conn.execute(
                update(event)
                .where(event.c.id == 1)
                .values(status=6, last_modified=datetime.now(UTC))
            )
        assert run_archive(control, "exec1").json()["new_events"] == 0
        rebuilt = check_reports_against(control, db)
        assert rebuilt["service-level"]["totals"]["expired"] == 1
        assert rebuilt["event-history"]["events"] == built["event-history"]["events"] == 300
        with control_db.read() as conn:
            assert conn.execute(select(archive_state.c.reports_built)).scalar_one() is True
        # the cleanup purges the aggregates with the archive
        with control_db.write() as conn:
            archive_store.purge(conn, datetime.now(UTC) + timedelta(days=1), 1_000)
        assert report(control, "event-history", **period())["events"] == 0


def test_report_requests_name_what_is_wrong(db, control_db):
    with reports_server(control_db) as control:
        now = datetime.now(UTC)
        cases = [
            ("/api/v1/reports/throughput", {}, 404, "no report 'throughput'", "service-level"),
            ("/api/v1/reports/service-level", {"from": now.isoformat(),
             "to": (now - timedelta(hours=1)).isoformat()}, 400, "invalid report period", "before to"),
            ("/api/v1/reports/service-level", {"from": "yesterday"}, 400, "invalid request", "from"),
            ("/api/v1/reports/event-history", {"to": "2026-13-45"}, 400, "invalid request", "to"),
            ("/api/v1/reports/service-level", {"channel": "fax"}, 400, "unknown channel 'fax'",
             "email, sms"),
            ("/api/v1/reports/service-level", {"granularity": "minute"}, 400, "invalid request",
             "granularity"),
            ("/api/v1/reports/service-level", {"format": "xml"}, 400, "invalid request", "format"),
            ("/api/v1/reports/processing-time", {"instance": "nobody"}, 404, None, "nobody"),
            ("/api/v1/reports/service-level", {"from": (now - timedelta(days=800)).isoformat()},
             400, "report period too long", "coarser granularity"),
        ]  # fmt: skip
        for path, params, status, title, detail in cases:
            answer = get(control, path, **params)
            assert answer.status_code == status, (path, params, answer.text)
            problem = answer.json()
            if title is not None:
                assert problem["title"] == title, problem
            assert detail in problem["detail"], problem
        assert get(control, "/api/v1/reports/service-level", auth=None).status_code == 401
        listed = get(control, "/api/v1/reports").json()
        assert [r["name"] for r in listed] == ["service-level", "processing-time", "event-history"]

        bad = cli("report", "throughput", "--db", control_db.url)
        assert bad.exit_code == 2 and "throughput" in bad.output
        bad = cli("report", "service-level", "--db", control_db.url, "--from", "soon")
        assert bad.exit_code == 1 and "--from: 'soon' is not an ISO 8601" in bad.output


# -- archived events -------------------------------------------------------------------------


def archived_history(db: Database) -> None:
    """In the execution database: external ids, phone numbers, a folder, and opens and clicks."""
    with db.write() as conn:
        for event_id in range(7, 301, 7):
            conn.execute(
                update(event).where(event.c.id == event_id).values(external_id=f"order-{event_id}")
            )
        conn.execute(update(event).where(event.c.id % 2 == 0).values(folder="brand1"))
        conn.execute(update(event).where(event.c.id == 3).values(mobile_phone="+33600000003"))
        at = datetime.now(UTC) - timedelta(seconds=10)
        conn.execute(
            insert(tracking_log),
            [
                {"delivery_log_id": 3, "event_id": 3, "kind": "open", "url": None,
                 "user_agent": "client A", "created": at},
                {"delivery_log_id": 3, "event_id": 3, "kind": "click",
                 "url": "https://shop.example.com/o/3", "user_agent": "client A",
                 "created": at + timedelta(seconds=1)},
            ],
        )  # fmt: skip


def search(control: RunningServer, auth: Any = CONTROL_ADMIN, **params: Any) -> dict[str, Any]:
    answer = get(control, "/api/v1/archive/events", auth=auth, **params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def every_page(control: RunningServer, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = search(control, **params, **({"cursor": cursor} if cursor else {}))
        found += page["events"]
        cursor = page["next"]
        if cursor is None:
            return found


def test_archived_events_are_searched_by_filter_and_page_and_shown_with_their_history(
    db, control_db
):
    now = datetime.now(UTC)
    fill_final_events(db, 300, start=now - timedelta(days=2), spread=timedelta(days=1))
    archived_history(db)
    add_operator(db, *ADMIN)
    threaded, server = start_exec_server(db)
    with threaded, reports_server(control_db) as control:
        register(control, "exec1", server.url, *ADMIN)
        run = run_archive(control, "exec1").json()
        assert (run["new_events"], run["tracking_logs"]) == (300, 2)

        everything = every_page(control, limit=70)
        assert [e["event_id"] for e in everything] == list(range(300, 0, -1))  # newest first
        assert {e["instance"] for e in everything} == {"exec1"}
        first = search(control, limit=70)
        assert len(first["events"]) == 70 and first["next"]

        def ids(**params: Any) -> list[int]:
            return sorted(e["event_id"] for e in every_page(control, **params))

        assert ids(status="delivery_failed") == [i for i in range(1, 301) if i % 20 == 10]
        assert ids(status="4") == ids(status="delivery_failed")
        assert ids(status="sent") == [i for i in range(1, 301) if i % 20 not in (0, 5, 10)]
        assert ids(address="user42@example.com") == [42]
        assert ids(address="+33600000003") == [3]
        assert ids(external_id="order-49") == [49]
        assert ids(type="order_confirmation", limit=500) == list(range(1, 301))
        assert ids(type="password_reset") == []
        assert ids(instance="exec1", status="ignored", external_id="order-105") == [105]
        assert ids(instance="exec1", status="sent", external_id="order-105") == []
        with db.read() as conn:
            created = dict(conn.execute(select(event.c.id, event.c.created)).all())
        start, end = created[100], created[200]
        assert ids(**{"from": start.isoformat(), "to": end.isoformat()}) == list(range(100, 200))

        detail = get(control, "/api/v1/archive/events/exec1/3")
        assert detail.status_code == 200, detail.text
        shown = detail.json()
        assert shown["event"]["mobile_phone"] == "+33600000003"
        (log,) = shown["delivery_logs"]
        assert (log["delivery_log_id"], log["status"], log["template"]) == (
            3, "sent", "order_confirmation_email",
        )  # fmt: skip
        assert [t["kind"] for t in shown["tracking"]] == ["open", "click"]
        assert [s["step"] for s in shown["timeline"]] == [
            "received", "queued", "sent", "open", "click", "archived",
        ]  # fmt: skip
        failed = get(control, "/api/v1/archive/events/exec1/10").json()
        assert [s["step"] for s in failed["timeline"]] == [
            "received",
            "queued",
            "failed",
            "archived",
        ]
        assert "550 5.1.1 no such user" in failed["timeline"][2]["detail"]
        unrouted = get(control, "/api/v1/archive/events/exec1/20").json()
        assert unrouted["delivery_logs"] == []
        assert [s["step"] for s in unrouted["timeline"]] == [
            "received", "not_taken_into_account", "archived",
        ]  # fmt: skip
        assert get(control, "/api/v1/archive/events/exec1/999").status_code == 404

        # an operator restricted to a folder sees its folder only, in searches and reports
        add_operator(control_db, "brand", "brand-pw", rights="mc_admin", folder="brand1")
        brand = ("brand", "brand-pw")
        mine = sorted(e["event_id"] for e in search(control, auth=brand, limit=500)["events"])
        assert mine == list(range(2, 301, 2))
        assert get(control, "/api/v1/archive/events/exec1/3", auth=brand).status_code == 404
        assert get(control, "/api/v1/archive/events/exec1/4", auth=brand).status_code == 200
        theirs = get(control, "/api/v1/reports/service-level", auth=brand, **period()).json()
        assert theirs["totals"]["events"] == 150 and theirs["scope"]["folder"] == "brand1"


def test_archived_event_requests_name_what_is_wrong(db, control_db):
    with reports_server(control_db) as control:
        now = datetime.now(UTC)
        cases = [
            ({"limit": 1000}, 400, "limit"),
            ({"limit": 0}, 400, "limit"),
            ({"cursor": "not-a-cursor"}, 400, "cursor: not a cursor this search returned"),
            ({"from": now.isoformat(), "to": (now - timedelta(days=1)).isoformat()}, 400,
             "must be before to"),
            ({"from": "last week"}, 400, "from"),
            ({"status": "pending"}, 400, "status: one of sent"),
            ({"status": "lost"}, 400, "status: one of sent"),
            ({"instance": "nobody"}, 404, "nobody"),
        ]  # fmt: skip
        for params, status, detail in cases:
            answer = get(control, "/api/v1/archive/events", **params)
            assert answer.status_code == status, (params, answer.text)
            assert detail in answer.json()["detail"], (params, answer.json())
        assert get(control, "/api/v1/archive/events/exec1/0").status_code == 400
        assert get(control, "/api/v1/archive/events", auth=None).status_code == 401
        # an instance registered but not initialized has no archive yet
        with control_db.write() as conn:
            from msgcenter.control.credentials import cipher
            from msgcenter.store import control_instances

            control_instances.add(
                conn,
                {"name": "fresh", "label": "fresh", "url": "http://127.0.0.1:1", "login": "mc",
                 "password_encrypted": cipher(control.settings).encrypt("pw")},
                now,
            )  # fmt: skip
        fresh = get(control, "/api/v1/archive/events", instance="fresh")
        assert fresh.status_code == 409 and "initialize" in fresh.json()["detail"]
        refused = get(control, "/api/v1/reports/service-level", instance="fresh")
        assert refused.status_code == 409 and "initialize" in refused.json()["detail"]
