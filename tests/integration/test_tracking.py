"""Open and click tracking (SPEC §3.7) through a real execution instance, on SQLite and PostgreSQL:
a tracked email is sent to a real SMTP server, its pixel and links are called over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
from sqlalchemy import select, update
from structlog.testing import capture_logs

from msgcenter.store.database import Database
from msgcenter.store.tables import delivery_log, tracking_log
from msgcenter.workflows.maintenance import Cleanup
from tests.conftest import wait_for
from tests.processing import all_final, publish, push_rest
from tests.tracking import local, tracked_publication, tracked_urls, tracking_server

BROWSER = "Mozilla/5.0 (test mail client)"


def tracking_rows(db: Database) -> list[tuple[str, str | None, str | None, int]]:
    with db.read() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(
                    tracking_log.c.kind,
                    tracking_log.c.url,
                    tracking_log.c.user_agent,
                    tracking_log.c.event_id,
                ).order_by(tracking_log.c.id)
            )
        ]


def send_one(server, smtp_server) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    publish(server, tracked_publication())
    (event_id,) = push_rest(
        server,
        {
            "type": "order_confirmation",
            "email": "ann@example.com",
            "ctx": {"client": {"firstname": "Ann"}, "order": {"id": "7"}},
        },
    )
    wait_for(lambda: all_final(server.db, [event_id]), message="the event to be sent")
    (received,) = smtp_server.handler.to("ann@example.com")
    return event_id, received.message.get_body(("html",)).get_content()


def test_a_tracked_email_records_opens_and_clicks_and_redirects_to_the_real_target(db, smtp_server):
    with tracking_server(db, smtp_server.port) as server:
        event_id, html = send_one(server, smtp_server)
        click, mailto, pixel = tracked_urls(html)
        assert mailto == "mailto:care@example.com"
        target = "https://shop.example/orders/7?tab=items&from=mail"

        with capture_logs() as logs:
            opened = httpx.get(local(server, pixel), headers={"User-Agent": BROWSER})
            followed = httpx.get(local(server, click), headers={"User-Agent": BROWSER})
        assert opened.status_code == 200 and opened.headers["content-type"] == "image/gif"
        assert opened.content.startswith(b"GIF89a")
        assert followed.status_code == 302 and followed.headers["location"] == target
        # both recorded, and known to be (no "unknown delivery log" said of them)
        assert not [e for e in logs if e.get("action") == "tracking.unknown_log"], logs

        assert tracking_rows(db) == [
            ("open", None, BROWSER, event_id),
            ("click", target, BROWSER, event_id),
        ]


def test_altered_or_unknown_tracking_urls_never_redirect_and_record_nothing(db, smtp_server):
    with tracking_server(db, smtp_server.port) as server:
        _, html = send_one(server, smtp_server)
        click, _, pixel = tracked_urls(html)
        real = local(server, click)
        path, query = real.split("?", 1)
        log_id, signature = path.rsplit("/", 2)[1:]
        evil = quote("https://evil.example/", safe="")
        altered = [
            f"{path}?u={evil}",  # another target, same signature
            f"{path}",  # no target
            real.replace(f"/{log_id}/", f"/{int(log_id) + 1}/"),  # another delivery log
            real.replace(signature, signature[::-1]),  # another signature
            real.replace(f"/{log_id}/", "/x1/"),  # not a number
            real.replace(f"/{log_id}/", "/99999999999999999999999/"),  # out of range
            f"{server.url}/t/c/1/{signature}?u=" + quote("javascript:alert(1)", safe=""),
            local(server, pixel) + "x",
            local(server, pixel).replace(f"/{log_id}/", f"/{int(log_id) + 1}/"),
        ]
        for url in altered:
            answer = httpx.get(url)
            assert answer.status_code == 404, url
            assert "location" not in answer.headers and "unknown or altered" in answer.text
        assert tracking_rows(db) == []


def test_a_signed_link_whose_delivery_log_is_gone_still_redirects_but_records_nothing(
    db, smtp_server
):
    with tracking_server(db, smtp_server.port) as server:
        _, html = send_one(server, smtp_server)
        click, _, _ = tracked_urls(html)
        # the cleanup purged the event and its delivery log; the mail is still in an inbox
        with db.write() as conn:
            conn.execute(delivery_log.delete())
        with capture_logs() as logs:
            answer = httpx.get(local(server, click))
        assert answer.status_code == 302
        assert tracking_rows(db) == []
        assert [e["action"] for e in logs if e.get("action", "").startswith("tracking.")] == [
            "tracking.unknown_log"
        ]


def test_the_cleanup_purges_tracking_logs_past_their_retention(db, smtp_server):
    with tracking_server(db, smtp_server.port) as server:
        _, html = send_one(server, smtp_server)
        _, _, pixel = tracked_urls(html)
        for _ in range(3):
            assert httpx.get(local(server, pixel)).status_code == 200
        retention = server.settings.tracking.retention_days
        with db.write() as conn:
            oldest = conn.execute(select(tracking_log.c.id).order_by(tracking_log.c.id)).first()
            conn.execute(
                update(tracking_log)
                .where(tracking_log.c.id == oldest[0])
                .values(created=datetime.now(UTC) - timedelta(days=retention + 1))
            )

        Cleanup(db, server.settings.processing, server.settings.tracking).purge()

        assert [kind for kind, *_ in tracking_rows(db)] == ["open", "open"]
