"""Which routed messages are held: the address in quarantine, or out of the template's stream."""

from datetime import UTC, datetime

from msgcenter.events.model import Channel, Queue
from msgcenter.publications import Publication, PublishedContent
from msgcenter.routing import QUARANTINED, UNSUBSCRIBED, Routed, Routing


def publication(template: str, folder: str | None = None) -> Publication:
    return Publication(
        1, template, "order", Channel.EMAIL, folder, Queue.RT, 1, datetime.now(UTC),
        PublishedContent(sender="s@example.com", text="hi"),
    )  # fmt: skip


def test_an_opt_out_holds_its_template_only_and_quarantine_comes_first():
    routing = Routing(
        [
            Routed({"id": 1}, publication("orders"), "Ann@Example.com"),
            Routed({"id": 2}, publication("news"), "ann@example.com"),
            Routed({"id": 3}, publication("orders", "brand_b"), "ann@example.com"),
            Routed({"id": 4}, publication("orders"), "bob@example.com"),
        ]
    )
    assert routing.streams()[0] == ("Ann@Example.com", Channel.EMAIL, "orders", None)
    held = routing.holding(
        {("bob@example.com", 0)},
        {("ann@example.com", 0, "orders", ""), ("bob@example.com", 0, "orders", "")},
    )
    assert [(r.held, r.held and r.held_reason) for r in held.routed] == [
        (True, UNSUBSCRIBED),
        (False, False),  # another template
        (False, False),  # the same template name in another folder
        (True, QUARANTINED),
    ]
    assert [r.held for r in routing.holding(set()).routed] == [False] * 4
