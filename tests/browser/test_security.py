"""The console refuses what it must: a wrong password, a form posted without its CSRF token, an
operator of another folder reaching brand1's objects; and shows hostile names inert."""

from __future__ import annotations

import json

from playwright.sync_api import expect

from msgcenter.store import control_design
from tests.conftest import add_operator
from tests.control import order_template

HOSTILE = '<script>document.title="pwned"</script><img src=x onerror="document.title=\'pwned\'">'


def test_a_wrong_password_is_refused_without_saying_which_part_was_wrong(journey, platform):
    page, control = journey.page, platform.control.url
    page.goto(f"{control}/")
    expect(page).to_have_url(f"{control}/console/login")
    page.get_by_label("Login").fill(platform.control_login[0])
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("wrong login or password")
    page.get_by_label("Login").fill("nobody")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("wrong login or password")
    journey.shot("wrong password", doc="login")
    assert not [c for c in page.context.cookies() if c["name"] == "msgcenter_control_control"]
    page.goto(f"{control}/console/templates")
    expect(page).to_have_url(f"{control}/console/login?next=/console/templates")


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(journey, platform):
    page, control = journey.page, platform.control.url
    journey.log_in(control, *platform.control_login)
    page.goto(f"{control}/console/event-types")
    form = page.locator("#new-event-type")
    form.get_by_label("Name").fill("forged")
    form.get_by_label("Label").fill("Forged")
    form.locator('input[name="csrf_token"]').evaluate("input => input.remove()")
    form.get_by_role("button", name="Declare").click()
    expect(page.get_by_role("alert")).to_contain_text("no valid CSRF token")
    journey.shot("refused without CSRF token")
    # nor is a wrong token accepted, from a script of the page (htmx's header) or not
    status = page.evaluate(
        """async () => (await fetch("/console/event-types", {method: "POST",
            headers: {"X-CSRF-Token": "0".repeat(40),
                      "Content-Type": "application/x-www-form-urlencoded"},
            body: "name=forged2&label=Forged"})).status"""
    )
    assert status == 403
    with platform.control.db.read() as conn:
        assert [t.name for t in control_design.list_event_types(conn)] == []


def test_an_operator_of_another_folder_neither_sees_nor_touches_brand1(journey, platform):
    page, control, db = journey.page, platform.control.url, platform.control.db
    order_template(db, folder="brand1")
    add_operator(db, "brand2", "brand2-password", rights="mc_admin", folder="brand2")
    journey.log_in(control, "brand2", "brand2-password")
    page.get_by_role("link", name="Templates").click()
    expect(page.locator('tr[data-template="order_mail"]')).to_have_count(0)
    page.goto(f"{control}/console/templates/order_mail")
    expect(page.get_by_role("alert")).to_have_text("no template 'order_mail'")
    journey.shot("another folder's template does not exist")
    # posting to it as if it were seen: refused, nothing changed
    for action in ("delete", "publish"):
        status = page.evaluate(
            """async ([url, token]) => (await fetch(url, {method: "POST",
                headers: {"X-CSRF-Token": token}})).status""",
            [f"/console/templates/order_mail/{action}", _csrf(page)],
        )
        assert status == 404, action
    # shared objects are read-only to an operator of a folder
    page.goto(f"{control}/console/blocks")
    expect(page.locator("#new-block")).to_have_count(0)
    with db.read() as conn:
        assert control_design.get_template(conn, "order_mail").folder == "brand1"


def test_hostile_names_and_content_are_shown_inert(journey, platform):
    page, control, db = journey.page, platform.control.url, platform.control.db
    order_template(db, html=f"<p>{{{{ ctx.note }}}}</p>{HOSTILE}")
    journey.tolerated.append("Blocked script execution in 'about:srcdoc'")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    journey.log_in(control, *platform.control_login)
    page.goto(f"{control}/console/templates/order_mail")
    page.locator('#editor [name="label"]').fill(HOSTILE)
    page.locator("#editor").get_by_role("button", name="Save").click()
    seed = page.locator("#new-seed")
    seed.get_by_label("Label").fill(HOSTILE)
    seed.get_by_label("Address").fill("dana@example.com")
    seed.locator('[name="ctx"]').fill(json.dumps({"note": HOSTILE}))
    seed.get_by_role("button", name="Add the seed").click()
    expect(page.locator("#draft iframe.preview-html")).to_be_visible()
    expect(page.locator('tr[data-seed="1"]')).to_contain_text('<script>document.title="pwned"')
    page.get_by_role("link", name="Templates").click()
    expect(page.locator('tr[data-template="order_mail"]')).to_contain_text("<img src=x")
    page.goto(f"{control}/console/templates/order_mail")
    frame = page.frame_locator("#draft iframe.preview-html")
    # the ctx value is escaped in the message; the template's own script does not run (sandbox)
    expect(frame.locator("p").first).to_contain_text("<script>")
    journey.shot("hostile names shown as text")
    assert page.title().startswith("Template order_mail")
    assert dialogs == []
    assert "pwned" not in page.evaluate("document.title")


def _csrf(page) -> str:
    return page.locator('form.logout input[name="csrf_token"]').input_value()
