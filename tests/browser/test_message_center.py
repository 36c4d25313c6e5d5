"""The execution instance's console, the model product's Message Center folder: the technical
workflows stopped and started, events pushed over SOAP followed in the live search and their
timelines, an address quarantined by a real SMTP refusal released, the publications in force."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

from tests.browser.platform import push_soap
from tests.conftest import wait_for
from tests.processing import order_publication, statuses

ORDER_XML = '<ctx><client firstname="Ann"/><order id="1001"/></ctx>'
REFUSED = "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown"


def test_workflows_events_and_quarantine(journey, platform):
    page, execution = journey.page, platform.execution
    published = httpx.put(
        f"{execution.url}/api/v1/admin/publications",
        json=order_publication(),
        auth=platform.exec_login,
    )
    assert published.status_code == 201, published.text
    journey.log_in(execution.url, *platform.exec_login)
    expect(page.get_by_role("heading", name="Message Center")).to_be_visible()
    rt = page.locator('tr[data-workflow="rtEventsProcessing"]')
    expect(rt.locator("td.state")).to_have_text("running")
    for name in ("batchEventsProcessing", "updateEventStatus", "cleanup", "statsSampler"):
        expect(page.locator(f'tr[data-workflow="{name}"] td.state')).to_have_text("running")
    journey.shot("message center", doc="message-center")

    # stopped, the real-time workflow leaves a pushed event pending...
    rt.get_by_role("button", name="Stop rtEventsProcessing").click()
    expect(rt.locator("td.state")).to_have_text("stopped")
    waiting = push_soap(
        execution.url, platform.exec_login, "ann@example.com", ORDER_XML,
        event_type="order_confirmation",
    )  # fmt: skip
    expect(page.locator('tr[data-queue="rt"] td').nth(1)).to_have_text("1")
    journey.shot("workflow stopped, one event waiting")
    # ...until it is started again
    rt.get_by_role("button", name="Start rtEventsProcessing").click()
    expect(rt.locator("td.state")).to_have_text("running")
    wait_for(lambda: statuses(execution.db, [waiting])[waiting] == "sent", message="sent")

    # a refused address: the event fails, the address goes to quarantine
    platform.smtp.handler.scripted["gone@example.com"] = [REFUSED]
    refused = push_soap(
        execution.url, platform.exec_login, "gone@example.com", ORDER_XML,
        event_type="order_confirmation",
    )  # fmt: skip
    unknown = push_soap(
        execution.url, platform.exec_login, "bob@example.com", ORDER_XML, event_type="no_such_type"
    )
    wait_for(
        lambda: (
            set(statuses(execution.db, [refused, unknown]).values())
            == {"delivery_failed", "not_taken_into_account"}
        ),
        message="both final",
    )

    page.get_by_role("link", name="Events").click()
    rows = page.locator("table.events tr[data-event]")
    expect(rows).to_have_count(3)
    page.get_by_label("Status").select_option("sent")
    expect(rows).to_have_count(1)
    expect(page.locator(f'tr[data-event="{waiting}"]')).to_contain_text("ann@example.com")
    page.get_by_label("Status").select_option("")
    page.get_by_label("Email").fill("gone@example.com")
    expect(rows).to_have_count(1)
    journey.shot("event search", doc="events")
    page.locator(f'tr[data-event="{refused}"]').get_by_role("link").click()
    timeline = page.locator("ol.timeline li strong")
    expect(timeline).to_have_text(["pending", "pending_delivery", "delivery_failed"])
    expect(page.locator("table.logs")).to_contain_text("550 5.1.1")
    expect(page.locator("pre.ctx")).to_contain_text('<client firstname="Ann">')
    journey.shot("an event's timeline", doc="event")
    page.goto(f"{execution.url}/console/events/{unknown}")
    expect(page.locator("p.warning")).to_contain_text("No publication in force")

    page.get_by_role("link", name="Quarantine").click()
    entry = page.locator('tr[data-address="gone@example.com"]')
    expect(entry).to_contain_text("in quarantine")
    journey.shot("quarantine", doc="quarantine")
    entry.get_by_role("button", name="Release").click()
    assert "gone@example.com released from quarantine" in journey.flash()
    expect(page.locator('tr[data-address="gone@example.com"]')).to_have_count(0)
    page.get_by_label("Released too").check()
    page.get_by_role("button", name="Search").click()
    expect(page.locator('tr[data-address="gone@example.com"]')).to_contain_text("released")

    page.get_by_role("link", name="Publications").click()
    expect(page.locator("table.publications")).to_contain_text("order_confirmation_email")
