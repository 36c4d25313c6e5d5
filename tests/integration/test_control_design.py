"""Design objects of a control instance over its REST API and CLI: event types, templates,
blocks, seeds, preview and proofs (SPEC §4).

Every test runs on SQLite and PostgreSQL against a real control server on
loopback; proofs go to a real SMTP server; CLI commands run as real
``msgcenter`` processes; the preview is compared with what a real execution
instance sends.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from msgcenter.control.app import create_control_app
from msgcenter.control.design.service import DesignService
from msgcenter.settings import Settings
from msgcenter.store.database import Database
from msgcenter.store.schema import upgrade
from msgcenter.store.tables import template
from tests.conftest import ThreadedServer, add_operator, free_port, wait_for
from tests.processing import processing_server, publish, push_rest

DESIGNER = ("designer", "secret")
FOOTER = "Shop Ltd, sent to {{ event.email }}"
ORDER = {
    "subject": "Order {{ ctx.order.id }} confirmed, {{ ctx.client.firstname }}",
    "html": "<p>Hello {{ ctx.client.firstname }},</p>\n<ul>{% for a in ctx.order.article %}"
    '<li>{{ a.label }} x {{ a.qty }}</li>{% endfor %}</ul>\n<p>{% include "footer" %}</p>',
    "text": "Hello {{ ctx.client.firstname }},\n{% for a in ctx.order.article %}"
    '- {{ a.label }} x {{ a.qty }}\n{% endfor %}{% include "footer" %}',
    "sender": "Shop <shop@example.com>",
    "reply_to": "care@example.com",
}
XML_CTX = (
    '<ctx><client firstname="Ann &amp; Bob"/><order id="1001">'
    '<article label="Mug" qty="2"/><article label="Tea &lt;green&gt;" qty="1"/></order></ctx>'
)
JSON_CTX = {
    "client": {"firstname": "Ann & Bob"},
    "order": {
        "id": "1001",
        "article": [{"label": "Mug", "qty": 2}, {"label": "Tea <green>", "qty": 1}],
    },
}
SUBJECT = "Order 1001 confirmed, Ann & Bob"


@contextmanager
def control_server(db: Database, smtp_port: int) -> Iterator[httpx.Client]:
    """A control instance on ``db`` relaying proofs to 127.0.0.1:``smtp_port``, and a client of it."""
    add_operator(db, *DESIGNER, rights="mc_admin")
    smtp = {
        "host": "127.0.0.1",
        "port": smtp_port,
        "timeout_seconds": 5,
        "helo_name": "control.test",
    }
    app = create_control_app(Settings(database_url=db.url, smtp=smtp))
    with (
        ThreadedServer(app) as url,
        httpx.Client(base_url=url, auth=DESIGNER, timeout=30) as client,
    ):
        yield client


@pytest.fixture
def control(db, smtp_server) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with control_server(db, smtp_server.port) as client:
        yield client


def ok(answer: httpx.Response, status: int = 200) -> dict:  # type: ignore[type-arg]
    assert answer.status_code == status, answer.text
    return answer.json() if answer.content else {}


def refused(answer: httpx.Response, status: int) -> dict:  # type: ignore[type-arg]
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    return answer.json()


def design_order(client: httpx.Client, *, declare: bool = True, **content: object) -> dict:  # type: ignore[type-arg]
    """The order-confirmation event type, the footer block and the email template using it."""
    if declare:
        body = {"name": "order_confirmation", "label": "Order confirmed"}
        ok(client.post("/api/v1/event-types", json=body), 201)
    ok(client.post("/api/v1/blocks", json={"name": "footer", "content": FOOTER}), 201)
    body = {
        "name": "order_email",
        "label": "Order confirmation",
        "event_type": "order_confirmation",
        "channel": "email",
        "content": {**ORDER, **content},
    }
    return ok(client.post("/api/v1/templates", json=body), 201)


def add_seed(client: httpx.Client, template_name: str, **seed: object) -> dict:  # type: ignore[type-arg]
    body = {
        "label": "Ann",
        "address": "ann@example.com",
        "ctx": JSON_CTX,
        "ctx_format": "json",
        **seed,
    }
    return ok(client.post(f"/api/v1/templates/{template_name}/seeds", json=body), 201)


def parts(message: EmailMessage) -> dict[str, str]:
    """The text/plain and text/html bodies of a received message, with LF line ends."""
    found = {}
    for part in message.walk():
        if part.get_content_type() in ("text/plain", "text/html"):
            found[part.get_content_subtype()] = part.get_content().replace("\r\n", "\n")
    return found


def set_published(db: Database, name: str, version: int) -> None:
    """What the publication workflow records once a version is out."""
    with db.write() as conn:
        conn.execute(
            update(template)
            .where(template.c.name == name)
            .values(published=True, published_version=version)
        )


# -- event types -------------------------------------------------------------------------


def test_event_types_are_declared_relabelled_and_retired(control, db):
    created = ok(
        control.post("/api/v1/event-types", json={"name": "order_confirmation", "label": "Orders"}),
        201,
    )
    assert (created["name"], created["label"], created["retired"]) == (
        "order_confirmation",
        "Orders",
        False,
    )
    ok(
        control.post(
            "/api/v1/event-types", json={"name": "password_reset", "label": "Password reset"}
        ),
        201,
    )

    again = refused(
        control.post("/api/v1/event-types", json={"name": "order_confirmation", "label": "x"}), 409
    )
    assert "already exists" in again["detail"]
    bad = refused(
        control.post("/api/v1/event-types", json={"name": "order confirmed", "label": "x"}), 422
    )
    assert bad["field"] == "/name"

    relabelled = ok(
        control.patch("/api/v1/event-types/order_confirmation", json={"label": "Order confirmed"})
    )
    assert relabelled["label"] == "Order confirmed"
    assert [t["name"] for t in ok(control.get("/api/v1/event-types"))] == [
        "order_confirmation",
        "password_reset",
    ]
    refused(control.get("/api/v1/event-types/parcel_shipped"), 404)

    # a published template holds its type; once unpublished, the type can retire
    design_order(control, declare=False)
    set_published(db, "order_email", 1)
    held = refused(control.post("/api/v1/event-types/order_confirmation/retire"), 409)
    assert "order_email" in held["detail"]
    with db.write() as conn:
        conn.execute(update(template).values(published=False))
    assert ok(control.post("/api/v1/event-types/order_confirmation/retire"))["retired"] is True

    body = {
        "name": "late",
        "label": "Late",
        "event_type": "order_confirmation",
        "channel": "sms",
        "content": {},
    }
    retired = refused(control.post("/api/v1/templates", json=body), 422)
    assert "retired" in retired["detail"]
    undeclared = refused(
        control.post("/api/v1/templates", json={**body, "event_type": "parcel_shipped"}), 422
    )
    assert "'parcel_shipped' is not declared" in undeclared["detail"]


# -- templates ---------------------------------------------------------------------------


def test_templates_are_created_edited_copied_and_listed(control):
    created = design_order(
        control,
        attachments=[{"ctx_url": "order.invoice_url", "filename": "invoice.pdf"}],
        tracking=True,
        list_unsubscribe="mailto:unsubscribe@example.com",
    )
    assert created["channel"] == "email" and created["folder"] is None
    assert created["content"]["sender"] == "Shop <shop@example.com>"
    assert created["content"]["attachments"] == [
        {"url": None, "ctx_url": "order.invoice_url", "filename": "invoice.pdf"}
    ]
    assert created["content"]["tracking"] is True
    assert "blocks" not in created["content"]
    assert (created["published"], created["published_version"]) == (False, 0)

    # content edits replace the parts they name, nothing else
    edited = ok(
        control.patch(
            "/api/v1/templates/order_email",
            json={"label": "Orders", "content": {"subject": "Thanks"}},
        )
    )
    assert edited["label"] == "Orders"
    assert edited["content"]["subject"] == "Thanks"
    assert edited["content"]["html"] == ORDER["html"]
    assert edited["content"]["tracking"] is True
    unchanged = ok(
        control.patch("/api/v1/templates/order_email", json={"channel": None, "label": None})
    )
    assert (unchanged["channel"], unchanged["label"]) == ("email", "Orders")

    # one template per (event type, channel, folder)
    clash = {
        "name": "order_email_2",
        "label": "again",
        "event_type": "order_confirmation",
        "content": {},
    }
    taken = refused(control.post("/api/v1/templates", json=clash), 409)
    assert "'order_email' already serves (order_confirmation, email, no folder)" in taken["detail"]
    ok(control.post("/api/v1/templates", json={**clash, "folder": "brand2"}), 201)
    refused(control.post("/api/v1/templates", json={**clash, "name": "order_email"}), 409)
    refused(control.post("/api/v1/templates/order_email/copy", json={"name": "copy"}), 409)

    add_seed(control, "order_email")
    push = {"name": "order_push", "event_type": "order_confirmation", "channel": "android"}
    copied = ok(control.post("/api/v1/templates/order_email/copy", json=push), 201)
    assert (copied["channel"], copied["label"], copied["content"]["subject"]) == (
        "android",
        "Orders",
        "Thanks",
    )
    assert (
        ok(control.get("/api/v1/templates/order_push/seeds")) == []
    )  # an email address is no device token
    sms = ok(
        control.post(
            "/api/v1/templates/order_email/copy",
            json={"name": "order_email_brand3", "folder": "brand3", "label": "Brand 3"},
        ),
        201,
    )
    assert sms["folder"] == "brand3"
    assert [
        s["address"] for s in ok(control.get("/api/v1/templates/order_email_brand3/seeds"))
    ] == ["ann@example.com"]

    moved = ok(
        control.patch(
            "/api/v1/templates/order_push",
            json={"channel": "sms", "content": {"sms": "Order {{ ctx.order.id }}"}},
        )
    )
    assert moved["channel"] == "sms"
    names = [t["name"] for t in ok(control.get("/api/v1/templates"))]
    assert names == ["order_email", "order_email_2", "order_email_brand3", "order_push"]
    assert (
        ok(control.get("/api/v1/templates/order_push"))["content"]["sms"]
        == "Order {{ ctx.order.id }}"
    )
    refused(control.get("/api/v1/templates/nothing"), 404)
    unknown_channel = refused(
        control.post("/api/v1/templates", json={**clash, "name": "x", "channel": "fax"}), 422
    )
    assert "unknown channel" in unknown_channel["detail"]
    inline_blocks = refused(
        control.post(
            "/api/v1/templates",
            json={**clash, "name": "x", "folder": "b4", "content": {"blocks": {"a": "b"}}},
        ),
        422,
    )
    assert "/api/v1/blocks" in inline_blocks["detail"]


def test_template_errors_are_refused_at_save_with_part_and_line(control):
    design_order(control)
    body = {"name": "reset", "label": "Reset", "event_type": "order_confirmation", "channel": "sms"}

    syntax = refused(
        control.post(
            "/api/v1/templates", json={**body, "content": {"sms": "Code:\n{{ ctx.code }"}}
        ),
        422,
    )
    assert (syntax["part"], syntax["line"]) == ("sms", 2)
    assert syntax["detail"] == "sms, line 2: unexpected '}'"

    sandbox = refused(
        control.post(
            "/api/v1/templates", json={**body, "content": {"sms": "Hi\n\n{{ ctx.__class__ }}"}}
        ),
        422,
    )
    assert (sandbox["part"], sandbox["line"]) == ("sms", 3)
    assert "sandbox violation" in sandbox["detail"]

    unknown_block = refused(
        control.post(
            "/api/v1/templates", json={**body, "content": {"sms": '{% include "header" %}'}}
        ),
        422,
    )
    assert "unknown block 'header' (blocks: footer)" in unknown_block["detail"]
    unknown_filter = refused(
        control.post("/api/v1/templates", json={**body, "content": {"sms": "{{ 1|nosuch }}"}}), 422
    )
    assert unknown_filter["part"] == "sms"

    # an edit that breaks the template is refused and changes nothing
    broken = refused(
        control.patch(
            "/api/v1/templates/order_email",
            json={"content": {"text": "a\nb\n{% for x in ctx.y %}"}},
        ),
        422,
    )
    assert (broken["part"], broken["line"]) == ("text", 3)
    assert ok(control.get("/api/v1/templates/order_email"))["content"]["text"] == ORDER["text"]

    # a violation inside a loop shows with data: once a seed has it, the template is refused
    looped = {**body, "content": {"sms": "{% for a in ctx.items %}\n{{ a.__init__ }}{% endfor %}"}}
    ok(control.post("/api/v1/templates", json=looped), 201)
    seed = add_seed(control, "reset", address="+33612345678", ctx={"items": [1]})
    caught = refused(control.post(f"/api/v1/templates/reset/preview?seed={seed['id']}"), 422)
    assert (caught["part"], caught["line"]) == ("sms", 2)
    assert "sandbox violation" in caught["detail"]
    again = refused(control.patch("/api/v1/templates/reset", json={"label": "Reset codes"}), 422)
    assert "sandbox violation" in again["detail"]


def test_a_template_is_deleted_only_when_unpublished(control, db):
    design_order(control)
    seed = add_seed(control, "order_email")
    set_published(db, "order_email", 2)
    published = refused(control.delete("/api/v1/templates/order_email"), 409)
    assert (
        published["detail"] == "template 'order_email' is published (version 2); unpublish it first"
    )
    moving = refused(control.patch("/api/v1/templates/order_email", json={"folder": "brand2"}), 409)
    assert "unpublish it first" in moving["detail"]
    assert ok(control.patch("/api/v1/templates/order_email", json={"content": {"subject": "New"}}))[
        "published"
    ]

    with db.write() as conn:
        conn.execute(update(template).values(published=False))
    ok(control.delete("/api/v1/templates/order_email"), 204)
    refused(control.get("/api/v1/templates/order_email"), 404)
    refused(control.get(f"/api/v1/templates/order_email/seeds/{seed['id']}"), 404)
    refused(control.delete("/api/v1/templates/order_email"), 404)
    # its route is free again
    design = {
        "name": "order_email",
        "label": "again",
        "event_type": "order_confirmation",
        "content": ORDER,
    }
    ok(control.post("/api/v1/templates", json=design), 201)
    assert ok(control.get("/api/v1/templates/order_email/seeds")) == []


# -- blocks ------------------------------------------------------------------------------


def test_blocks_are_created_edited_and_deleted_when_unused(control):
    design_order(control)
    ok(
        control.post("/api/v1/blocks", json={"name": "legal", "content": "Registered in Paris"}),
        201,
    )
    refused(control.post("/api/v1/blocks", json={"name": "legal", "content": "x"}), 409)
    assert [b["name"] for b in ok(control.get("/api/v1/blocks"))] == ["footer", "legal"]

    # a block can include another; the template then uses both
    ok(control.put("/api/v1/blocks/footer", json={"content": FOOTER + '\n{% include "legal" %}'}))
    assert ok(control.get("/api/v1/blocks/footer"))["content"].endswith('{% include "legal" %}')
    seed = add_seed(control, "order_email")
    shown = ok(control.post(f"/api/v1/templates/order_email/preview?seed={seed['id']}"))
    assert shown["blocks"] == ["footer", "legal"]
    assert shown["text"].endswith("sent to ann@example.com\nRegistered in Paris")

    in_use = refused(control.delete("/api/v1/blocks/legal"), 409)
    assert in_use["detail"] == "included by template order_email"
    refused(control.delete("/api/v1/blocks/footer"), 409)

    syntax = refused(control.put("/api/v1/blocks/legal", json={"content": "ok\n{% if %}"}), 422)
    assert (syntax["part"], syntax["line"]) == ("block:legal", 2)
    sandbox = refused(
        control.post("/api/v1/blocks", json={"name": "evil", "content": "\n{{ event.__class__ }}"}),
        422,
    )
    assert (sandbox["part"], sandbox["line"]) == ("block:evil", 2)
    loop = refused(
        control.put("/api/v1/blocks/legal", json={"content": '{% include "footer" %}'}), 422
    )
    assert "includes itself" in loop["detail"]
    refused(control.post("/api/v1/blocks", json={"name": "bad name", "content": "x"}), 422)

    ok(control.post("/api/v1/blocks", json={"name": "unused", "content": "x"}), 201)
    ok(control.delete("/api/v1/blocks/unused"), 204)
    refused(control.get("/api/v1/blocks/unused"), 404)


# -- seeds -------------------------------------------------------------------------------


def test_seeds_are_stored_per_template(control):
    design_order(control)
    xml = add_seed(
        control, "order_email", label="Ann (XML)", ctx=XML_CTX, ctx_format="xml", external_id="c-1"
    )
    json_seed = add_seed(control, "order_email", address="  Bob@Example.com ")
    assert (xml["ctx"], xml["ctx_format"], xml["external_id"]) == (XML_CTX, "xml", "c-1")
    assert json_seed["ctx"] == JSON_CTX
    assert json_seed["address"] == "Bob@example.com"  # checked and normalised like an event's email

    listed = ok(control.get("/api/v1/templates/order_email/seeds"))
    assert [s["label"] for s in listed] == ["Ann (XML)", "Ann"]
    changed = ok(
        control.put(
            f"/api/v1/templates/order_email/seeds/{json_seed['id']}",
            json={
                "label": "Bob",
                "address": "bob@example.com",
                "ctx": '{"client": {"firstname": "Bob"}}',
            },
        )
    )
    assert (changed["label"], changed["ctx"]) == ("Bob", {"client": {"firstname": "Bob"}})
    ok(control.delete(f"/api/v1/templates/order_email/seeds/{json_seed['id']}"), 204)
    refused(control.get(f"/api/v1/templates/order_email/seeds/{json_seed['id']}"), 404)
    refused(control.get("/api/v1/templates/nothing/seeds"), 404)


@pytest.mark.parametrize(
    ("seed", "expected"),
    [
        (
            {"ctx": "<ctx>\n  <client firstname='Ann'>\n</ctx>", "ctx_format": "xml"},
            {"code": "malformed-ctx", "line": 3, "column": 7},
        ),
        (
            {"ctx": '<!DOCTYPE ctx [<!ENTITY e "boom">]><ctx>&e;</ctx>', "ctx_format": "xml"},
            {"code": "malformed-ctx", "detail": "<!DOCTYPE at line 1, column 1"},
        ),
        (
            {"ctx": {"client": "Ann"}, "ctx_format": "xml"},
            {"detail": "an XML ctx is given as text"},
        ),
        (
            {"ctx": '{\n  "client": {"firstname": "Ann"},\n}', "ctx_format": "json"},
            {"code": "malformed-ctx", "line": 3, "column": 1},
        ),
        (
            {"ctx": "[1, 2]", "ctx_format": "json"},
            {"detail": "the ctx must be a JSON object, not array"},
        ),
        ({"ctx": "", "ctx_format": "json"}, {"line": 1, "column": 1}),
        ({"address": "not-an-address"}, {"detail": "address: "}),
        ({"ctx": {"pad": "x" * 70_000}}, {"code": "payload-too-large"}),
    ],
)
def test_a_seed_that_is_not_like_an_event_is_refused(control, seed, expected):
    design_order(control)
    body = {
        "label": "Ann",
        "address": "ann@example.com",
        "ctx": JSON_CTX,
        "ctx_format": "json",
        **seed,
    }
    problem = refused(control.post("/api/v1/templates/order_email/seeds", json=body), 422)
    for key, value in expected.items():
        if key == "code":
            assert problem["type"] == f"urn:msgcenter:problem:{value}"
        elif key == "detail":
            assert value in problem["detail"], problem
        else:
            assert problem[key] == value, problem
    assert ok(control.get("/api/v1/templates/order_email/seeds")) == []


# -- preview -----------------------------------------------------------------------------


def test_preview_renders_xml_and_json_seeds_alike(control):
    design_order(control)
    xml = add_seed(control, "order_email", ctx=XML_CTX, ctx_format="xml")
    json_seed = add_seed(control, "order_email")
    from_xml = ok(control.post(f"/api/v1/templates/order_email/preview?seed={xml['id']}"))
    from_json = ok(control.post(f"/api/v1/templates/order_email/preview?seed={json_seed['id']}"))
    inline = ok(
        control.post(
            "/api/v1/templates/order_email/preview",
            json={"address": "ann@example.com", "ctx": JSON_CTX},
        )
    )

    assert from_xml["subject"] == SUBJECT
    assert from_xml["html"] == (
        "<p>Hello Ann &amp; Bob,</p>\n<ul><li>Mug x 2</li><li>Tea &lt;green&gt; x 1</li></ul>\n"
        "<p>Shop Ltd, sent to ann@example.com</p>"
    )
    assert (
        from_xml["text"]
        == "Hello Ann & Bob,\n- Mug x 2\n- Tea <green> x 1\nShop Ltd, sent to ann@example.com"
    )
    assert (from_xml["version"], from_xml["blocks"], from_xml["seed"]) == (1, ["footer"], xml["id"])
    for other in (from_json, inline):
        for part in ("subject", "html", "text", "sms", "push_title", "push_body"):
            assert other[part] == from_xml[part], part
    assert inline["seed"] is None

    inline_xml = {"address": "ann@example.com", "ctx": "<ctx><client>", "ctx_format": "xml"}
    assert (
        refused(control.post("/api/v1/templates/order_email/preview", json=inline_xml), 422)["line"]
        == 1
    )
    refused(control.post("/api/v1/templates/order_email/preview?seed=999"), 404)
    both = refused(
        control.post(
            f"/api/v1/templates/order_email/preview?seed={xml['id']}",
            json={"address": "a@b.c", "ctx": {}},
        ),
        422,
    )
    assert "not both" in both["detail"]


def test_preview_reports_a_render_error_with_its_reason(control):
    design_order(control)
    body = {"name": "ratio", "label": "Ratio", "event_type": "order_confirmation", "channel": "sms"}
    ok(
        control.post(
            "/api/v1/templates",
            json={**body, "content": {"sms": "Share:\n{{ 100 // ctx.n|int }}%"}},
        ),
        201,
    )
    seed = add_seed(control, "ratio", address="+33612345678", ctx={"n": 0})
    problem = refused(control.post(f"/api/v1/templates/ratio/preview?seed={seed['id']}"), 422)
    assert problem["type"] == "urn:msgcenter:problem:render-failed"
    assert (problem["part"], problem["line"]) == ("sms", 2)
    assert "ZeroDivisionError" in problem["detail"]
    fine = ok(
        control.post(
            "/api/v1/templates/ratio/preview", json={"address": "+33612345678", "ctx": {"n": 4}}
        )
    )
    assert fine["sms"] == "Share:\n25%"


def test_preview_is_what_an_execution_instance_sends(control, db, smtp_server, tmp_path):
    design_order(control)
    seed = add_seed(control, "order_email")
    shown = ok(control.post(f"/api/v1/templates/order_email/preview?seed={seed['id']}"))

    spec = DesignService(db, Settings(database_url=db.url)).freeze("order_email", 1)
    assert spec.content.blocks == {"footer": FOOTER}
    execution_db = Database(f"sqlite:///{tmp_path / 'exec.db'}")
    upgrade(execution_db)
    try:
        with processing_server(execution_db, smtp_server.port) as execution:
            publish(execution, spec.model_dump(mode="json"))
            push_rest(
                execution,
                {"type": "order_confirmation", "email": "ann@example.com", "ctx": JSON_CTX},
            )
            received = wait_for(
                lambda: smtp_server.handler.to("ann@example.com"), message="the sent message"
            )
    finally:
        execution_db.dispose()
    sent = received[0].message
    assert sent["Subject"] == shown["subject"] == SUBJECT
    assert parts(sent) == {"plain": shown["text"], "html": shown["html"]}


# -- proofs ------------------------------------------------------------------------------


def test_a_proof_is_mailed_to_the_seed_and_listed(control, smtp_server):
    design_order(control)
    seed = add_seed(
        control, "order_email", address="proof@example.com", ctx=XML_CTX, ctx_format="xml"
    )
    proof = ok(control.post("/api/v1/templates/order_email/proofs", json={"seed": seed["id"]}), 201)
    assert (proof["status"], proof["address"], proof["subject"]) == (
        "sent",
        "proof@example.com",
        SUBJECT,
    )
    assert proof["sent_by"] == "designer" and proof["reason"].startswith("250")

    received = smtp_server.handler.to("proof@example.com")
    assert len(received) == 1
    assert received[0].mail_from == "shop@example.com"
    message = received[0].message
    assert message["Subject"] == SUBJECT
    assert (
        message["From"] == "Shop <shop@example.com>" and message["Reply-To"] == "care@example.com"
    )
    bodies = parts(message)
    assert "<li>Tea &lt;green&gt; x 1</li>" in bodies["html"]
    assert "- Tea <green> x 1" in bodies["plain"]
    assert "Shop Ltd, sent to proof@example.com" in bodies["plain"]

    smtp_server.handler.scripted["gone@example.com"] = ["550 5.1.1 user unknown"]
    gone = add_seed(control, "order_email", address="gone@example.com")
    failed = ok(
        control.post("/api/v1/templates/order_email/proofs", json={"seed": gone["id"]}), 201
    )
    assert failed["status"] == "failed" and "550" in failed["reason"]

    listed = ok(control.get("/api/v1/templates/order_email/proofs"))
    assert [(p["id"], p["status"]) for p in listed] == [
        (failed["id"], "failed"),
        (proof["id"], "sent"),
    ]
    refused(control.post("/api/v1/templates/order_email/proofs", json={"seed": 999}), 404)


def test_a_proof_records_why_it_could_not_be_sent(db, smtp_server):
    unreachable = free_port()
    with control_server(db, unreachable) as client:
        design_order(client, sender="")
        seed = add_seed(client, "order_email")
        no_sender = ok(
            client.post("/api/v1/templates/order_email/proofs", json={"seed": seed["id"]}), 201
        )
        assert (no_sender["status"], no_sender["reason"]) == (
            "failed",
            "the template has no sender address",
        )
        ok(
            client.patch(
                "/api/v1/templates/order_email", json={"content": {"sender": "shop@example.com"}}
            )
        )
        down = ok(
            client.post("/api/v1/templates/order_email/proofs", json={"seed": seed["id"]}), 201
        )
        assert down["status"] == "failed" and str(unreachable) in down["reason"]

        sms = {
            "name": "order_sms",
            "label": "SMS",
            "event_type": "order_confirmation",
            "channel": "sms",
        }
        ok(
            client.post(
                "/api/v1/templates", json={**sms, "content": {"sms": "Order {{ ctx.order.id }}"}}
            ),
            201,
        )
        phone = add_seed(client, "order_sms", address="+33612345678")
        by_email = refused(
            client.post("/api/v1/templates/order_sms/proofs", json={"seed": phone["id"]}), 422
        )
        assert "sms template" in by_email["detail"]
        assert ok(client.get("/api/v1/templates/order_sms/proofs")) == []


def test_the_design_api_needs_mc_admin(control, db):
    add_operator(db, "pusher", "secret", rights="mc_push")
    refused(control.get("/api/v1/templates", auth=("pusher", "secret")), 403)
    refused(
        control.post(
            "/api/v1/event-types", json={"name": "a", "label": "b"}, auth=("pusher", "secret")
        ),
        403,
    )
    refused(httpx.get(str(control.base_url.join("/api/v1/blocks"))), 401)


def test_the_design_api_is_in_the_openapi_document(control):
    paths = ok(control.get("/openapi.json"))["paths"]
    for path in (
        "/api/v1/event-types",
        "/api/v1/templates/{name}",
        "/api/v1/templates/{name}/copy",
        "/api/v1/blocks/{name}",
        "/api/v1/templates/{name}/seeds/{seed_id}",
        "/api/v1/templates/{name}/preview",
        "/api/v1/templates/{name}/proofs",
    ):
        assert path in paths, path


# -- CLI ---------------------------------------------------------------------------------


def cli(
    database_url: str, cwd: Path, *args: str, smtp_port: int = 25
) -> subprocess.CompletedProcess[str]:
    """Run the real ``msgcenter control`` command against ``database_url``."""
    env = {
        **os.environ,
        "COLUMNS": "200",
        "MSGCENTER_LOGGING__LEVEL": "warning",
        "MSGCENTER_SMTP__PORT": str(smtp_port),
        "MSGCENTER_SMTP__HELO_NAME": "control.test",
    }
    return subprocess.run(
        [sys.executable, "-m", "msgcenter", "control", *args, "--db", database_url],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )


@pytest.mark.slow  # runs the msgcenter command as a process
def test_the_cli_designs_previews_and_proofs(db, smtp_server, tmp_path):
    def run(*args: str) -> str:
        done = cli(db.url, tmp_path, *args, smtp_port=smtp_server.port)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def fails(*args: str) -> str:
        done = cli(db.url, tmp_path, *args, smtp_port=smtp_server.port)
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stderr.count("\n") == 1, done.stderr  # one clear line, no traceback
        return done.stderr

    (tmp_path / "footer.txt").write_text(FOOTER)
    (tmp_path / "content.toml").write_text(_toml(ORDER))
    (tmp_path / "broken.toml").write_text(
        'subject = "Hi"\ntext = """Hello\n{{ ctx.client.firstname }"""\n'
    )
    (tmp_path / "ann.xml").write_text(XML_CTX)
    (tmp_path / "bad.xml").write_text("<ctx>\n<client>\n</ctx>")

    assert "declared" in run(
        "event-type", "add", "order_confirmation", "--label", "Order confirmed"
    )
    assert "created" in run("block", "set", "footer", "--file", str(tmp_path / "footer.txt"))
    content = str(tmp_path / "content.toml")
    run("template", "add", "order_email", "--type", "order_confirmation", "--file", content)
    ann = str(tmp_path / "ann.xml")
    added = run(
        "seed",
        "add",
        "order_email",
        "--label",
        "Ann",
        "--address",
        "ann@example.com",
        "--ctx-file",
        ann,
    )
    seed_id = added.split()[1]

    shown = run("preview", "order_email", "--seed", seed_id)
    assert SUBJECT in shown and "<li>Tea &lt;green&gt; x 1</li>" in shown
    assert "sent to ann@example.com" in shown
    assert "sent to ann@example.com" in run("proof", "order_email", "--seed", seed_id)
    assert smtp_server.handler.to("ann@example.com")[0].message["Subject"] == SUBJECT
    assert "cli:" in run("proofs", "order_email")

    broken = fails("template", "edit", "order_email", "--file", str(tmp_path / "broken.toml"))
    assert "text, line 2: unexpected '}'" in broken
    bad = str(tmp_path / "bad.xml")
    refused_seed = fails(
        "seed",
        "add",
        "order_email",
        "--label",
        "B",
        "--address",
        "b@example.com",
        "--ctx-file",
        bad,
    )
    assert "line 3" in refused_seed


def _toml(values: dict[str, str]) -> str:
    """A flat TOML document of strings (multi-line basic strings where needed)."""
    lines = []
    for key, value in values.items():
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{key} = """{escaped}"""' if "\n" in value else f'{key} = "{escaped}"')
    return "\n".join(lines) + "\n"
