"""The seed document's whole story, in a browser, from ``msgcenter up``'s console URL and nothing
else: register the execution instance, create its archiving workflow, start the technical
workflows, design, preview, proof, publish, watch events reach their statuses, read the
reports. A person who never used a terminal does exactly this (the events come from the
information system: here, SOAP calls)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.platform import push_soap
from tests.conftest import free_port

pytestmark = pytest.mark.slow

DEMO = ("demo", "demo")
SEED_CTX = {"client": {"firstname": "Dana"}, "order": {"id": "0042"}}
ORDER_XML = '<ctx><client firstname="{name}"/><order id="{order}"/></ctx>'


@dataclass
class Embedded:
    control: str
    execution: str


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Embedded]:
    """``msgcenter up`` (no demo) in a process of its own, on free ports, stopped at the end."""
    web, control, smtp, smpp, push = (free_port() for _ in range(5))
    log = (tmp_path / "up.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "msgcenter", "up", "--port", str(web),
            "--control-port", str(control), "--smtp-port", str(smtp),
            "--smpp-port", str(smpp), "--push-port", str(push),
            "--data-dir", str(tmp_path / "data"),
        ],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip
    running = Embedded(f"http://127.0.0.1:{control}", f"http://127.0.0.1:{web}")
    try:
        deadline = time.monotonic() + 60
        while not _ready(running):
            assert process.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()
            time.sleep(0.1)
        yield running
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _ready(running: Embedded) -> bool:
    try:
        return all(
            httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            for url in (running.control, running.execution)
        )
    except httpx.HTTPError:
        return False


def test_the_seed_story_in_the_console(journey, embedded):  # noqa: PLR0915 - one story
    page, control, execution = journey.page, embedded.control, embedded.execution
    journey.log_in(control, *DEMO)
    expect(page.locator("p.notice")).to_contain_text("No execution instance yet")

    # 1. register the execution instance (an external account), test it, initialize it
    page.get_by_role("link", name="Execution instances").click()
    form = page.locator("#new-instance")
    form.get_by_label("Internal name").fill("exec")
    form.get_by_label("Label").fill("Production execution")
    form.get_by_label("URL", exact=True).fill(execution)
    form.get_by_label("Its operator").fill(DEMO[0])
    form.get_by_label("Its password").fill(DEMO[1])
    form.get_by_role("button", name="Register").click()
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#connection-outcome")).to_have_text("Connection OK.")
    page.get_by_role("button", name="Initialize connection").click()
    expect(page.locator("#instance-id")).not_to_have_text("not initialized")

    # 2. create its archiving workflow
    page.get_by_role("button", name="Create the archiving workflow").click()
    assert "mcSynch_exec created and started" in journey.flash()

    # 3. the technical workflows, in the execution instance's Message Center folder: stopped
    # there, they are started again from the same page
    journey.log_in(execution, *DEMO)
    rt = page.locator('tr[data-workflow="rtEventsProcessing"]')
    rt.get_by_role("button", name="Stop rtEventsProcessing").click()
    expect(rt.locator("td.state")).to_have_text("stopped")
    page.goto(f"{control}/console/")
    expect(page.locator("#card-exec")).to_contain_text("workflows not running")
    page.goto(f"{execution}/console/")
    rt.get_by_role("button", name="Start rtEventsProcessing").click()
    expect(rt.locator("td.state")).to_have_text("running")
    page.goto(f"{control}/console/")
    expect(page.locator("#card-exec p.connection")).to_have_text("connected")
    expect(page.locator("#card-exec")).not_to_contain_text("workflows not running")
    journey.shot("dashboard with the instance connected")

    # 4. design: an event type, a template with an error shown at its line, fixed, previewed
    page.get_by_role("link", name="Event types").click()
    form = page.locator("#new-event-type")
    form.get_by_label("Name").fill("order_confirmation")
    form.get_by_label("Label").fill("Order confirmed")
    form.get_by_role("button", name="Declare").click()
    page.get_by_role("link", name="Templates").click()
    form = page.locator("#new-template")
    form.get_by_label("Name").fill("order_mail")
    form.get_by_label("Event type").select_option("order_confirmation")
    form.get_by_role("button", name="Create").click()
    editor = page.locator("#editor")
    editor.locator('[name="sender"]').fill("Shop <shop@example.com>")
    editor.locator('[name="subject"]').fill("Order {{ ctx.order.id }} confirmed")
    editor.locator('[name="html"]').fill("<p>Hello {{ ctx.client.firstname }}</p>\n{% if %}")
    expect(page.locator("#draft .problem")).to_contain_text("line 2")
    editor.locator('[name="html"]').fill("<p>Hello {{ ctx.client.firstname }}</p>")
    editor.locator('[name="text"]').fill("Hello {{ ctx.client.firstname }}")
    expect(page.locator("#draft")).to_contain_text("No error")
    editor.get_by_role("button", name="Save").click()
    seed = page.locator("#new-seed")
    seed.get_by_label("Label").fill("Dana")
    seed.get_by_label("Address").fill("dana@example.com")
    seed.locator('[name="ctx"]').fill(json.dumps(SEED_CTX))
    seed.get_by_role("button", name="Add the seed").click()
    expect(page.locator("#draft .preview-subject")).to_have_text("Order 0042 confirmed")
    expect(page.frame_locator("#draft iframe.preview-html").locator("p")).to_have_text("Hello Dana")

    # 5. a proof, read in the catcher
    page.locator("#send-proof").get_by_role("button", name="Send a proof").click()
    assert "to dana@example.com sent" in journey.flash()
    page.goto(f"{control}/catcher/")
    expect(page.locator("#messages")).to_contain_text("Order 0042 confirmed")

    # 6. publish, with the state on the execution instance
    page.goto(f"{control}/console/templates/order_mail/publication")
    expect(page.locator("#unready")).to_have_count(0)
    page.get_by_role("button", name="Publish a new version").click()
    assert "version 1 published" in journey.flash()
    state = page.locator('table.publication-state tr[data-instance="exec"] td')
    expect(state.nth(1)).to_have_text("published")

    # 7. the information system sends events; they reach their statuses in the event search
    ids = [
        push_soap(
            execution, DEMO, f"{name.lower()}@example.com",
            ORDER_XML.format(name=name, order=order), event_type=kind,
        )
        for name, order, kind in (
            ("Ann", 1001, "order_confirmation"),
            ("Bob", 1002, "order_confirmation"),
            ("Cleo", 1003, "no_template_yet"),
        )
    ]  # fmt: skip
    page.goto(f"{execution}/console/events")
    for event_id, status in zip(ids, ("sent", "sent", "not_taken_into_account"), strict=True):
        expect(page.locator(f'tr[data-event="{event_id}"] td').nth(3)).to_have_text(status)
    journey.shot("events reached their statuses")
    page.locator(f'tr[data-event="{ids[0]}"]').get_by_role("link").click()
    expect(page.locator("ol.timeline li strong")).to_have_text(
        ["pending", "pending_delivery", "sent"]
    )

    # 8. archived back into the control instance, then the reports
    page.goto(f"{control}/console/instances/exec")
    page.get_by_role("button", name="Archive now").click()
    expect(page.locator("p.flash")).to_contain_text("archived")
    page.get_by_role("link", name="Archived events").click()
    expect(page.locator("table.archived-events tr[data-event]")).to_have_count(3)
    page.get_by_role("link", name="Reports").click()
    chart = journey.chart("chart-service-level")
    totals = {d["label"]: sum(v or 0 for v in d["data"]) for d in chart["datasets"]}
    assert totals == {"Incoming events": 3, "Messages sent": 2, "Errors": 1}
    expect(page.locator("#crossed")).to_contain_text("error rate")
    journey.shot("the reports")
    assert re.search(r"\d+", page.locator('[data-figure="events"]').inner_text())
