"""Archives and reports in the control instance's console: Create the archiving workflow (and
press it again), archive now, search the archived events and read one's timeline; the three
reports with their charts' data read from the chart objects and checked against counts made
here from the events pushed; thresholds crossed on the report and on the dashboard; CSV."""

from __future__ import annotations

from collections import Counter

import httpx
from playwright.sync_api import expect

from tests.browser.platform import push_soap
from tests.conftest import wait_for
from tests.control import CONTROL_ADMIN, order_template
from tests.processing import statuses

ORDER_XML = '<ctx><client firstname="Ann"/><order id="1001"/></ctx>'
REFUSED = "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown"
#: (address, event type) of the events pushed
PUSHED = [
    ("ann@example.com", "order_confirmation"),
    ("bob@example.com", "order_confirmation"),
    ("cleo@example.com", "order_confirmation"),
    ("gone@example.com", "order_confirmation"),
    ("dan@example.com", "unknown_type"),
]


def test_archive_search_timeline_and_reports(journey, platform):
    page, control, execution = journey.page, platform.control.url, platform.execution
    order_template(platform.control.db)
    platform.smtp.handler.scripted["gone@example.com"] = [REFUSED]
    account = {
        "name": "exec1", "label": "Execution exec1", "url": execution.url,
        "login": platform.exec_login[0], "password": platform.exec_login[1],
    }  # fmt: skip
    for method, path, body in (
        ("POST", "/instances", account),
        ("POST", "/instances/exec1/initialize", None),
        ("POST", "/templates/order_mail/publish", None),
    ):
        answer = httpx.request(
            method, f"{control}/api/v1{path}", json=body, auth=CONTROL_ADMIN, timeout=30
        )
        assert answer.status_code in (200, 201), answer.text
    ids = [
        push_soap(execution.url, platform.exec_login, address, ORDER_XML, event_type=kind)
        for address, kind in PUSHED
    ]
    final = wait_for(
        lambda: (
            (found := statuses(execution.db, ids))
            and not {"pending", "pending_delivery"} & set(found.values())
            and found
        ),
        timeout=30,
        message="every event final",
    )
    # what the reports must say, counted here from the events pushed
    outcome = Counter(final.values())
    assert outcome == {"sent": 3, "delivery_failed": 1, "not_taken_into_account": 1}
    per_type = Counter(kind for _address, kind in PUSHED)

    journey.log_in(control, *platform.control_login)
    page.goto(f"{control}/console/instances/exec1")
    expect(page.locator("#archiving-workflow")).to_contain_text("No archiving workflow yet")
    page.get_by_role("button", name="Create the archiving workflow").click()
    assert "archiving workflow mcSynch_exec1 created and started" in journey.flash()
    expect(page.locator("#archiving-workflow")).to_contain_text("mcSynch_exec1: running")
    page.get_by_role("button", name="Create the archiving workflow").click()
    assert "mcSynch_exec1 exists already (running)" in journey.flash()
    journey.shot("archiving workflow created", doc="archiving")
    # the workflow archives at once; Archive now waits for it and finds nothing new, or runs
    page.get_by_role("button", name="Archive now").click()
    assert "archived" in journey.flash()
    expect(page.locator("table.archive")).to_contain_text("5")

    page.get_by_role("link", name="Archived events").click()
    rows = page.locator("table.archived-events tr[data-event]")
    expect(rows).to_have_count(5)
    search = page.locator("#archive-search")
    search.get_by_label("Status").select_option("delivery_failed")
    search.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("gone@example.com")
    journey.shot("archived events", doc="archived-events")
    rows.first.get_by_role("link").click()
    steps = page.locator("ol.timeline li")
    expect(steps.first).to_have_attribute("data-step", "received")
    expect(page.locator('ol.timeline li[data-step="failed"]')).to_contain_text("550 5.1.1")
    expect(page.locator("table.logs")).to_contain_text("user_unknown")
    journey.shot("an archived event's timeline", doc="archived-event")

    page.get_by_role("link", name="Reports").click()
    expect(page.get_by_role("heading", name="Reports")).to_be_visible()
    chart = journey.chart("chart-service-level")
    series = {d["label"]: sum(v or 0 for v in d["data"]) for d in chart["datasets"]}
    assert series == {
        "Incoming events": len(PUSHED),
        "Messages sent": outcome["sent"],
        "Errors": len(PUSHED) - outcome["sent"],
    }
    expect(page.locator('[data-figure="events"]')).to_have_text(str(len(PUSHED)))
    expect(page.locator('[data-figure="delivery_failed"]')).to_have_text("1")
    expect(page.locator('[data-figure="not_taken_into_account"]')).to_have_text("1")
    # 2 errors in 5 events: 40 %, past the alert threshold (20 %)
    expect(page.locator('[data-figure="error_rate"]')).to_have_text("40.0 %")
    expect(page.locator("#crossed")).to_contain_text("alert: error rate is 40.0 %")
    journey.shot("service level", doc="report-service-level")
    csv = page.request.get(f"{control}/console/reports/service-level/csv")
    assert csv.ok and csv.text().splitlines()[0].startswith("period,event_type,events,sent")

    page.get_by_role("link", name="Processing time").click()
    expect(page.locator('#processing-totals tr[data-measure="total"] td').first).to_have_text(
        str(outcome["sent"])
    )
    times = journey.chart("chart-processing-time")
    assert [d["label"] for d in times["datasets"]] == [
        "Average queuing (s)", "Average sending (s)", "Average total (s)",
    ]  # fmt: skip
    journey.shot("processing time", doc="report-processing-time")

    page.get_by_role("link", name="Event history").click()
    history = journey.chart("chart-event-history")
    assert {d["label"]: sum(d["data"]) for d in history["datasets"]} == dict(per_type)
    journey.shot("event history", doc="report-event-history")

    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator("#card-exec1 ul.crossed")).to_contain_text("alert: error rate")
