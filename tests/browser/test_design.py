"""Designing in the control instance's console: an event type, a template written with an error
that the editor shows at its line, fixed, previewed live for a seed, proofed by mail; blocks;
copies."""

from __future__ import annotations

import json

from playwright.sync_api import expect

from tests.conftest import wait_for

SEED_CTX = {"order": {"id": "0042"}, "client": {"firstname": "Dana"}}


def test_design_a_template_with_live_preview_and_a_proof(journey, platform):
    page, control = journey.page, platform.control.url
    journey.log_in(control, *platform.control_login)

    page.get_by_role("link", name="Event types").click()
    form = page.locator("#new-event-type")
    form.get_by_label("Name").fill("order_confirmation")
    form.get_by_label("Label").fill("Order confirmed")
    form.get_by_role("button", name="Declare").click()
    assert "event type order_confirmation declared" in journey.flash()
    expect(page.locator('tr[data-event-type="order_confirmation"]')).to_contain_text("in use")
    journey.shot("event type declared", doc="event-types")

    page.get_by_role("link", name="Templates").click()
    form = page.locator("#new-template")
    form.get_by_label("Name").fill("order_mail")
    form.get_by_label("Label").fill("Order confirmation")
    form.get_by_label("Event type").select_option("order_confirmation")
    form.get_by_role("button", name="Create").click()
    assert "template created" in journey.flash()
    expect(page.get_by_role("heading", name="Template order_mail")).to_be_visible()

    # an error on the third line of the HTML, shown at its line while typing
    editor = page.locator("#editor")
    editor.locator('[name="sender"]').fill("Shop <shop@example.com>")
    editor.locator('[name="subject"]').fill("Order {{ ctx.order.id }} confirmed")
    editor.locator('[name="html"]').fill(
        "<p>Hello {{ ctx.client.firstname }},</p>\n<p>Thanks.</p>\n{% if ctx.order %}<p>unclosed"
    )
    problem = page.locator("#draft .problem")
    expect(problem).to_contain_text("line 3")
    expect(page.locator("#draft .problem-line")).to_have_text("{% if ctx.order %}<p>unclosed")
    journey.shot("syntax error at its line", doc="editor-error")
    # saving it is refused with the same reason, and nothing is lost from the form
    editor.get_by_role("button", name="Save").click()
    expect(page.locator("#save-error")).to_contain_text("line 3")
    expect(page.locator('#editor [name="html"]')).to_have_value(
        "<p>Hello {{ ctx.client.firstname }},</p>\n<p>Thanks.</p>\n{% if ctx.order %}<p>unclosed"
    )
    page.locator('#editor [name="html"]').fill(
        "<p>Hello {{ ctx.client.firstname }},</p>\n<p>Thanks.</p>\n"
        "{% if ctx.order %}<p>Order {{ ctx.order.id }}</p>{% endif %}"
    )
    expect(page.locator("#draft")).to_contain_text("No error")
    # a message that fails for good sends the event again by SMS (the template's own channel,
    # email, is not offered)
    fallback = page.locator('#editor [name="fallback_channel"]')
    expect(fallback.locator("option")).to_have_text(["(no fallback)", "sms", "ios", "android"])
    fallback.select_option(label="sms")
    page.locator("#editor").get_by_role("button", name="Save").click()
    assert "template saved" in journey.flash()
    expect(page.locator('#editor [name="fallback_channel"]')).to_have_value("1")

    # a seed: the preview renders its ctx, and follows the editor as one types
    seed = page.locator("#new-seed")
    seed.get_by_label("Label").fill("Dana")
    seed.get_by_label("Address").fill("dana@example.com")
    seed.locator('[name="ctx"]').fill(json.dumps(SEED_CTX))
    seed.get_by_role("button", name="Add the seed").click()
    assert "seed" in journey.flash()
    subject = page.locator("#draft .preview-subject")
    expect(subject).to_have_text("Order 0042 confirmed")
    frame = page.frame_locator("#draft iframe.preview-html")
    expect(frame.locator("body")).to_contain_text("Hello Dana,")
    expect(page.locator("#draft iframe.preview-html")).to_have_attribute("sandbox", "")
    page.locator('#editor [name="subject"]').fill("Your order {{ ctx.order.id }}")
    expect(subject).to_have_text("Your order 0042")
    journey.shot("live preview for a seed", doc="editor-preview")
    page.locator("#editor").get_by_role("button", name="Save").click()

    page.locator("#send-proof").get_by_role("button", name="Send a proof").click()
    assert "to dana@example.com sent" in journey.flash()
    expect(page.locator("table.proofs")).to_contain_text("Your order 0042")
    proof = wait_for(lambda: platform.smtp.handler.to("dana@example.com"), message="the proof")
    assert proof[0].message["Subject"] == "Your order 0042"
    journey.shot("proof sent", doc="proofs")

    # a copy must serve another route: the same type and channel in another folder is refused,
    # then accepted for the folder brand1; then deleted
    copy = page.locator("#copy-template")
    copy.get_by_label("name of the copy").fill("order_mail_b")
    copy.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("alert")).to_contain_text("template 'order_mail' already serves")
    page.get_by_role("link", name="Back to the page you came from").click()
    copy = page.locator("#copy-template")
    copy.get_by_label("name of the copy").fill("order_mail_b")
    copy.get_by_label("folder of the copy").fill("brand1")
    copy.get_by_role("button", name="Copy").click()
    assert "copied from order_mail" in journey.flash()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete the template").click()
    assert "template order_mail_b deleted" in journey.flash()
    expect(page.locator('tr[data-template="order_mail"]')).to_be_visible()
    expect(page.locator('tr[data-template="order_mail_b"]')).to_have_count(0)


def test_blocks_are_shared_by_templates(journey, platform):
    page = journey.page
    journey.log_in(platform.control.url, *platform.control_login)
    page.get_by_role("link", name="Blocks").click()
    form = page.locator("#new-block")
    form.get_by_label("Name").fill("footer")
    form.get_by_label("Source").fill("<p>Shop Ltd</p>")
    form.get_by_role("button", name="Create").click()
    assert "block footer created" in journey.flash()
    saved = page.locator('form[data-block="footer"]')
    expect(saved.get_by_label("source of footer")).to_have_value("<p>Shop Ltd</p>")
    saved.get_by_label("source of footer").fill("<p>Shop Ltd, 1 Main St</p>")
    saved.get_by_role("button", name="Save").click()
    assert "block footer saved" in journey.flash()
    journey.shot("block", doc="blocks")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator('form[data-block="footer"]').get_by_role("button", name="Delete").click()
    assert "block footer deleted" in journey.flash()
    expect(page.locator('form[data-block="footer"]')).to_have_count(0)
