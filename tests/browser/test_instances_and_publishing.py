"""Execution instances and publication in the control instance's console: register one, Test
connection (the precise failure too), Initialize connection, the dashboard's card; publish with
the per-instance state, the warning when technical workflows are not started, the diff between
versions and the draft, unpublish."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

from tests.archiving import pause
from tests.control import order_template


def register(page, name: str, url: str, login: str, password: str) -> None:
    page.get_by_role("link", name="Execution instances").click()
    form = page.locator("#new-instance")
    form.get_by_label("Internal name").fill(name)
    form.get_by_label("Label").fill(f"Execution {name}")
    form.get_by_label("URL", exact=True).fill(url)
    form.get_by_label("Its operator").fill(login)
    form.get_by_label("Its password").fill(password)
    form.get_by_role("button", name="Register").click()


def test_register_test_and_initialize_an_execution_instance(journey, platform):
    page = journey.page
    journey.log_in(platform.control.url, *platform.control_login)
    expect(page.locator("p.notice")).to_contain_text("No execution instance yet")

    # a wrong password: registered, but the test says precisely what fails
    register(page, "exec1", platform.execution.url, platform.exec_login[0], "not-the-password")
    assert "execution instance exec1 registered" in journey.flash()
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#connection-outcome")).to_contain_text("Connection failed")
    expect(page.locator("table.connection-report")).to_contain_text("wrong login or password")
    journey.shot("connection test failing")
    edit = page.locator("#edit-instance")
    edit.get_by_label("New password").fill(platform.exec_login[1])
    edit.get_by_role("button", name="Save").click()
    assert "saved" in journey.flash()
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#connection-outcome")).to_have_text("Connection OK.")
    page.get_by_role("button", name="Initialize connection").click()
    assert "instance id" in journey.flash()
    expect(page.locator("#instance-id")).not_to_have_text("not initialized")
    journey.shot("instance initialized", doc="instance")

    page.get_by_role("link", name="Dashboard").click()
    card = page.locator("#card-exec1")
    expect(card.locator("p.connection")).to_have_text("connected")
    expect(card.locator("table.workflows")).to_contain_text("rtEventsProcessing")
    journey.shot("dashboard", doc="dashboard")


def test_publish_with_per_instance_state_warning_and_diff(journey, platform):
    page, control, execution = journey.page, platform.control.url, platform.execution
    order_template(platform.control.db)
    journey.log_in(control, *platform.control_login)
    register(page, "exec1", execution.url, *platform.exec_login)
    assert "registered" in journey.flash()

    # a technical workflow paused: publishing warns before the operator publishes
    pause(execution.db, "rtEventsProcessing")
    page.goto(f"{control}/console/templates/order_mail/publication")
    expect(page.locator("#unready")).to_contain_text("exec1")
    expect(page.locator("#unready")).to_contain_text("rtEventsProcessing")
    journey.shot("publication warns of a paused workflow", doc="publication-warning")
    resumed = httpx.post(
        f"{execution.url}/api/v1/admin/workflows/rtEventsProcessing/start",
        auth=platform.exec_login,
    )
    assert resumed.status_code == 200, resumed.text
    page.reload()
    expect(page.locator("#unready")).to_have_count(0)

    page.get_by_role("button", name="Publish a new version").click()
    assert "version 1 published" in journey.flash()
    state = page.locator('table.publication-state tr[data-instance="exec1"]')
    expect(state.locator("td").nth(1)).to_have_text("published")
    expect(state.locator("td").nth(2)).to_have_text("1")
    expect(page.locator("table.publication-log")).to_contain_text("ctl")
    on_exec = httpx.get(f"{execution.url}/api/v1/admin/publications", auth=platform.exec_login)
    assert {p["template"] for p in on_exec.json()} == {"order_mail"}
    journey.shot("published", doc="publication")

    # the draft changes: the diff shows the change against version 1
    page.get_by_role("link", name="order_mail").click()
    page.locator('#editor [name="subject"]').fill("Your order {{ ctx.order.id }}")
    page.locator("#editor").get_by_role("button", name="Save").click()
    page.get_by_role("link", name="Publication").click()
    page.get_by_label("From").select_option("1")
    page.get_by_label("To").select_option("draft")
    page.get_by_role("button", name="Compare").click()
    diff = page.locator("#diff")
    expect(diff.locator("del")).to_contain_text("Order {{ ctx.order.id }} confirmed")
    expect(diff.locator("ins")).to_contain_text("Your order {{ ctx.order.id }}")
    journey.shot("diff of the draft against version 1", doc="diff")

    page.get_by_role("button", name="Publish a new version").click()
    assert "version 2 published" in journey.flash()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Unpublish").click()
    assert "unpublished" in journey.flash()
    expect(state.locator("td").nth(1)).to_have_text("unpublished")
    on_exec = httpx.get(f"{execution.url}/api/v1/admin/publications", auth=platform.exec_login)
    assert on_exec.json() == []
