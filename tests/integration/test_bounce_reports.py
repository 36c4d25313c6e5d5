"""The kept bounce reports read back (SPEC §3.7, §3.9): the admin API with its filters, paging
and folder restriction, the CLI, the console's Bounces page; and a late bounce reaching the
control instance's archive.

Every test runs on SQLite and PostgreSQL; the reports are real mails sent over SMTP to the
bounce receiver of a running execution instance, about messages it really sent.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from typer.testing import CliRunner

import msgcenter.cli
from msgcenter.bounces import ReportKind
from msgcenter.channels.email.identity import verp_address
from msgcenter.console import bounces as console_bounces
from msgcenter.store import bounces as bounce_store
from msgcenter.store.database import Database
from msgcenter.store.tables import archived_delivery_log, archived_event
from tests.archiving import register, run_archive
from tests.conftest import RunningServer, add_operator, wait_for
from tests.control import control_server
from tests.integration.test_bounces import (
    BOUNCE_DOMAIN,
    CTX,
    SECRET,
    arf_complaint,
    bounce_server,
    dsn,
    mail,
    send_messages,
)
from tests.processing import ADMIN, all_final, delivery_logs, order_publication, publish
from tests.smtp import SmtpServer

API = "/api/v1/admin/bounce-reports"
USER_UNKNOWN = "550 5.1.1 <ann@example.net>: Recipient address rejected: User unknown"


def get(server: RunningServer, path: str = "", auth: tuple[str, str] = ADMIN, **params: Any):  # type: ignore[no-untyped-def]
    return httpx.get(f"{server.url}{API}{path}", params=params, auth=auth, timeout=10)


def items(server: RunningServer, auth: tuple[str, str] = ADMIN, **params: Any) -> list[dict]:
    answer = get(server, auth=auth, **params)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


def bounce_all(server: RunningServer, relay: SmtpServer, port: int) -> dict[str, tuple[int, int]]:
    """Three messages sent, then a hard bounce, a soft one and a complaint about them, and a
    report to a bounce address naming no delivery log here; address -> (event, log)."""
    publish(server, order_publication())
    sent = send_messages(server, relay, "ann@example.net", "bob@example.net", "cat@example.net")
    (_, _, ann), (_, _, bob), (_, _, cat) = (sent[a] for a in sorted(sent))
    mail(port, ann, dsn(ann, "ann@example.net", "failed", "5.1.1", USER_UNKNOWN))
    mail(port, bob, dsn(bob, "bob@example.net", "delayed", "4.4.1", "451 try later"))
    mail(port, cat, arf_complaint(cat, "cat@example.net"))
    gone = verp_address(987_654, BOUNCE_DOMAIN, SECRET)
    mail(port, gone, b"From: robot@example.org\r\nSubject: Out of office\r\n\r\nAway.\r\n")
    wait_for(lambda: len(items(server)) == 4, message="the four reports")
    return {a: (e, log) for a, (e, log, _) in sent.items()}


def console_login(browser: httpx.Client, login: str, password: str) -> None:
    """Log in to the console as a person does: the form (its nonce cookie), then the post."""
    form = browser.get("/console/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
    assert nonce, form.text
    answer = browser.post(
        "/console/login", data={"login": login, "password": password, "nonce": nonce[1]}
    )
    assert answer.status_code == 303, answer.text


def is_problem(answer: httpx.Response, status: int, *words: str) -> bool:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body = answer.json()
    assert body["status"] == status and body["type"].startswith("urn:msgcenter:problem:")
    return all(w in body["detail"] for w in words)


def test_the_api_lists_filters_pages_and_counts_the_kept_reports(db, smtp_server):
    with bounce_server(db, smtp_server) as (server, port):
        sent = bounce_all(server, smtp_server, port)
        listed = items(server)
        # newest first: the order they were mailed in, reversed
        assert [r["kind"] for r in listed] == ["unknown", "complaint", "soft", "hard"]
        assert [r["id"] for r in listed] == sorted((r["id"] for r in listed), reverse=True)
        unknown, complaint, soft, hard = listed
        assert hard["recipient"] == "ann@example.net"
        assert (hard["event_id"], hard["delivery_log_id"]) == sent["ann@example.net"]
        assert hard["reason"] == USER_UNKNOWN and hard["folder"] is None and hard["size"] > 0
        assert (complaint["event_id"], complaint["delivery_log_id"]) == sent["cat@example.net"]
        assert unknown["delivery_log_id"] is None and unknown["event_id"] is None

        # filters
        assert [r["id"] for r in items(server, kind="hard")] == [hard["id"]]
        assert [r["id"] for r in items(server, kind="SOFT")] == [soft["id"]]
        assert [r["id"] for r in items(server, recipient="Bob@Example.NET")] == [soft["id"]]
        cat_log = sent["cat@example.net"][1]
        assert [r["id"] for r in items(server, delivery_log_id=cat_log)] == [complaint["id"]]
        now = datetime.now(UTC)
        assert len(items(server, since=(now - timedelta(hours=1)).isoformat())) == 4
        assert items(server, since=(now + timedelta(minutes=5)).isoformat()) == []
        assert items(server, until=(now - timedelta(hours=1)).isoformat()) == []
        assert [r["id"] for r in items(server, kind="complaint", until=now.isoformat())] == [
            complaint["id"]
        ]

        # keyset paging, one report a page, the cursor of GET /api/v1/events
        seen, cursor = [], None
        while True:
            answer = get(server, limit=1, **({"cursor": cursor} if cursor else {}))
            assert answer.status_code == 200, answer.text
            page = answer.json()
            seen += [r["id"] for r in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [r["id"] for r in listed]

        # one report, and the counts of the last day
        one = get(server, f"/{hard['id']}")
        assert one.status_code == 200 and one.json() == hard
        summary = get(server, "/summary", hours=24).json()
        assert summary["hours"] == 24 and summary["total"] == 4
        assert summary["counts"] == {
            "hard": 1,
            "soft": 1,
            "complaint": 1,
            "unknown": 1,
            "malformed": 0,
        }

        # bad filters say what is wrong, as problem+json
        assert is_problem(get(server, kind="bogus"), 400, "'bogus'", "hard, soft, complaint")
        assert is_problem(
            get(server, since=now.isoformat(), until=(now - timedelta(1)).isoformat()),
            400,
            "must be before until",
        )
        assert is_problem(get(server, cursor="not-a-cursor"), 400, "next_cursor")
        assert is_problem(get(server, since="yesterday"), 400)
        assert is_problem(get(server, limit=0), 400)
        assert is_problem(get(server, "/summary", hours=0), 400)
        assert is_problem(get(server, "/999999"), 404, "no bounce report 999999")
        # reading them takes mc_admin
        add_operator(db, "pusher", "pw", "mc_push")
        assert is_problem(get(server, auth=("pusher", "pw")), 403, "mc_admin")


def test_an_operator_of_a_folder_sees_the_reports_of_its_folder_only(db, smtp_server):
    with bounce_server(db, smtp_server) as (server, port):
        for folder in ("brand_a", "brand_b"):
            publish(server, order_publication(folder=folder))
            add_operator(db, f"{folder}_admin", "pw", "mc_push,mc_admin", folder=folder)
        logs = {}
        for folder, address in (("brand_a", "a@example.net"), ("brand_b", "b@example.net")):
            pushed = httpx.post(
                f"{server.url}/api/v1/events/rt",
                json={"type": "order_confirmation", "email": address, "ctx": CTX},
                auth=(f"{folder}_admin", "pw"),
            )
            assert pushed.status_code == 201, pushed.text
            event_id = pushed.json()["id"]
            wait_for(lambda e=event_id: all_final(db, [e]), message=f"{folder}'s message")
            (log,) = delivery_logs(db, event_id)
            (received,) = smtp_server.handler.to(address)
            mail(port, received.mail_from, dsn(received.mail_from, address, "failed", "5.1.1", "x"))
            logs[folder] = log["id"]
        gone = verp_address(987_654, BOUNCE_DOMAIN, SECRET)
        mail(port, gone, b"From: robot@example.org\r\nSubject: hi\r\n\r\nhello\r\n")
        wait_for(lambda: len(items(server)) == 3, message="the three reports")

        brand_a = ("brand_a_admin", "pw")
        (mine,) = items(server, auth=brand_a)
        assert (mine["delivery_log_id"], mine["folder"]) == (logs["brand_a"], "brand_a")
        # another folder's report, and one naming no message, do not exist for it
        assert items(server, auth=brand_a, delivery_log_id=logs["brand_b"]) == []
        others = [r["id"] for r in items(server) if r["id"] != mine["id"]]
        for other in others:
            assert is_problem(get(server, f"/{other}", auth=brand_a), 404)
        assert get(server, f"/{mine['id']}", auth=brand_a).status_code == 200
        counts = get(server, "/summary", auth=brand_a).json()
        assert counts["total"] == 1 and counts["counts"]["hard"] == 1
        assert get(server, "/summary").json()["counts"] == {
            "hard": 2,
            "soft": 0,
            "complaint": 0,
            "unknown": 1,
            "malformed": 0,
        }
        # the console applies the same restriction
        with httpx.Client(base_url=server.url, timeout=10) as browser:
            console_login(browser, "brand_a_admin", "pw")
            page = browser.get("/console/bounces")
            assert page.status_code == 200
            assert re.findall(r'data-report="(\d+)"', page.text) == [str(mine["id"])]


def run_cli(db: Database, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(
        msgcenter.cli.app, ["exec", "bounce-reports", *args, "--db", db.url]
    )
    assert result.exit_code == code, result.output
    return result.output


def test_the_cli_lists_and_shows_the_kept_reports(db):
    now = datetime.now(UTC)
    with db.write() as conn:
        for kind, recipient, days in (
            (ReportKind.HARD, "ann@example.net", 3),
            (ReportKind.COMPLAINT, "cat@example.net", 0),
        ):
            bounce_store.keep(
                conn,
                received=now - timedelta(days=days),
                kind=kind,
                delivery_log_id=None,
                recipient=recipient,
                reason=f"{kind.value} of {recipient}",
                size=321,
            )
    listed = run_cli(db, "list")
    assert listed.index("cat@example.net") < listed.index("ann@example.net")  # newest first
    assert "complaint of cat@example.net" in listed
    assert "last 24 h: hard 0, soft 0, complaint 1, unknown 0, malformed 0" in listed
    hard_only = run_cli(db, "list", "--kind", "hard")
    assert "ann@example.net" in hard_only and "cat@example.net" not in hard_only
    recent = run_cli(db, "list", "--since", (now - timedelta(days=1)).isoformat())
    assert "cat@example.net" in recent and "ann@example.net" not in recent
    assert "1 report(s) shown" in run_cli(db, "list", "--limit", "1")
    shown = run_cli(db, "show", "1")
    assert "hard of ann@example.net" in shown and "321 bytes" in shown and "(none here)" in shown
    assert "unknown report kind 'nope'" in run_cli(db, "list", "--kind", "nope", code=1)
    assert "no bounce report 99" in run_cli(db, "show", "99", code=1)


def test_the_console_page_lists_the_reports_with_the_counts_of_the_day(
    db, smtp_server, monkeypatch
):
    with (
        bounce_server(db, smtp_server) as (server, port),
        httpx.Client(base_url=server.url, timeout=10) as browser,
    ):
        sent = bounce_all(server, smtp_server, port)
        add_operator(db, "mc-console", "secret")
        console_login(browser, "mc-console", "secret")
        page = browser.get("/console/bounces")
        assert page.status_code == 200
        assert '<a href="/console/bounces">Bounces</a>' in page.text  # in the nav
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "<script>" not in page.text
        assert len(re.findall(r'data-report="\d+"', page.text)) == 4
        counts = dict(re.findall(r'data-kind="(\w+)"><span>[^<]*</span><strong>(\d+)', page.text))
        assert counts == {
            "hard": "1",
            "soft": "1",
            "complaint": "1",
            "unknown": "1",
            "malformed": "0",
        }
        ann_event, ann_log = sent["ann@example.net"]
        assert (
            f'<a href="/console/events/{ann_event}">{ann_log} · event {ann_event}</a>' in page.text
        )
        assert "none here" in page.text
        # the reason is shown as text, escaped
        assert "&lt;ann@example.net&gt;: Recipient address rejected" in page.text
        # the event's page the link leads to
        assert browser.get(f"/console/events/{ann_event}").status_code == 200

        hard = browser.get("/console/bounces", params={"kind": "hard"})
        assert len(re.findall(r'data-report="\d+"', hard.text)) == 1
        # htmx asks for the rows only
        rows = browser.get(
            "/console/bounces", params={"kind": "complaint"}, headers={"HX-Request": "true"}
        )
        assert "<html" not in rows.text and "cat@example.net" in rows.text
        assert "ann@example.net" not in rows.text
        refused = browser.get("/console/bounces", params={"kind": "bogus"})
        assert refused.status_code == 400 and "unknown report kind" in refused.text

        # paged: "Older reports" leads below the last report shown, with the same filters
        everything = re.findall(r'data-report="(\d+)"', page.text)
        monkeypatch.setattr(console_bounces, "PAGE", 3)
        first = browser.get("/console/bounces")
        assert re.findall(r'data-report="(\d+)"', first.text) == everything[:3]
        older = re.search(r'<a href="([^"]+)">Older reports</a>', first.text)
        assert older, first.text
        assert older[1].endswith(f"before={everything[2]}")
        rest = browser.get(html.unescape(older[1]))
        assert re.findall(r'data-report="(\d+)"', rest.text) == everything[3:]
        assert "Older reports" not in rest.text

        # an operator without mc_admin reads no reports, here as in the API
        add_operator(db, "pusher", "pw", "mc_push")
        with httpx.Client(base_url=server.url, timeout=10) as other:
            console_login(other, "pusher", "pw")
            assert other.get("/console/bounces").status_code == 403


def test_a_late_hard_bounce_reaches_the_control_instances_archive(db, control_db, smtp_server):
    """The archive takes final events by their last change, with their delivery logs: a hard
    bounce moves the event (sent → delivery_failed) with its log, so the next run takes both
    again and the archive follows (SPEC §4)."""
    with bounce_server(db, smtp_server) as (server, port):
        publish(server, order_publication())
        sent = send_messages(server, smtp_server, "ann@example.net", "bob@example.net")
        with control_server(control_db) as control:
            register(control, "exec1", server.url, *ADMIN)
            assert run_archive(control, "exec1").json()["new_events"] == 2
            assert archived(control_db) == {
                sent["ann@example.net"][1]: (1, None),
                sent["bob@example.net"][1]: (1, None),
            }
            ann_event, ann_log, ann_verp = sent["ann@example.net"]
            mail(port, ann_verp, dsn(ann_verp, "ann@example.net", "failed", "5.1.1", USER_UNKNOWN))
            wait_for(lambda: items(server, kind="hard"), message="the hard bounce")
            again = run_archive(control, "exec1").json()
            assert again["outcome"] == "complete" and again["new_events"] == 0
            assert archived(control_db)[ann_log] == (2, "user_unknown")
            assert archived_event_status(control_db, ann_event) == 4  # delivery_failed


def archived(control_db: Database) -> dict[int, tuple[int, str | None]]:
    with control_db.read() as conn:
        rows = conn.execute(
            select(
                archived_delivery_log.c.delivery_log_id,
                archived_delivery_log.c.status,
                archived_delivery_log.c.failure_type,
            )
        )
        return {log: (status, failure) for log, status, failure in rows}


def archived_event_status(control_db: Database, event_id: int) -> int:
    with control_db.read() as conn:
        return int(
            conn.execute(
                select(archived_event.c.status).where(archived_event.c.event_id == event_id)
            ).scalar_one()
        )
