"""What a control instance checks before storing a design: templates, blocks, seeds (SPEC §4)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from msgcenter.control.design.checks import (
    MalformedCtxError,
    check_block,
    check_content,
    check_seed_address,
    check_seed_ctx,
    seed_event,
)
from msgcenter.designs import TemplateContent, TemplateIn, parse_channel
from msgcenter.errors import InvalidInputError, PayloadTooLargeError
from msgcenter.events.model import TEMPLATE_EVENT_FIELDS, Channel
from msgcenter.publications import PublishedContent
from msgcenter.render import TemplateSyntaxProblem, load_ctx

EVENT = seed_event("order_confirmation", Channel.EMAIL, None, "ann@example.com")


def test_a_seed_event_has_the_fields_an_execution_instance_passes():
    assert set(EVENT) == set(TEMPLATE_EVENT_FIELDS)
    assert (EVENT["type"], EVENT["email"], EVENT["wished_channel"]) == (
        "order_confirmation",
        "ann@example.com",
        0,
    )
    sms = seed_event("t", Channel.SMS, "brand", "+33612345678", "c-1")
    assert (sms["mobile_phone"], sms["email"], sms["folder"], sms["external_id"]) == (
        "+33612345678",
        None,
        "brand",
        "c-1",
    )
    assert seed_event("t", Channel.ANDROID, None, "token")["registration_token"] == "token"


def test_content_that_compiles_gives_the_blocks_it_uses():
    content = PublishedContent(html='{% include "footer" %}', text="Hi {{ ctx.name }}")
    compiled = check_content(
        content, {"footer": '<p>{% include "legal" %}</p>', "legal": "Ltd", "unused": "x"}, EVENT
    )
    assert compiled.blocks_used == {"footer", "legal"}


def test_a_sandbox_violation_is_refused_with_its_part_and_line():
    with pytest.raises(TemplateSyntaxProblem) as caught:
        check_content(
            PublishedContent(subject="ok", text="one\ntwo {{ event.__class__ }}"), {}, EVENT
        )
    assert (caught.value.part, caught.value.line) == ("text", 2)
    assert caught.value.reason.startswith("sandbox violation")


def test_a_violation_in_a_loop_is_found_with_a_sample_ctx():
    content = PublishedContent(text="{% for a in ctx.items %}{{ a._nodes }}{% endfor %}")
    check_content(content, {}, EVENT)  # no item, nothing executed
    with pytest.raises(TemplateSyntaxProblem) as caught:
        check_content(content, {}, EVENT, [load_ctx('{"items": [1]}', "json")])
    assert "sandbox violation" in caught.value.detail


def test_other_render_problems_are_left_to_the_preview():
    content = PublishedContent(text="{{ 1 // ctx.n|int }}")
    check_content(content, {}, EVENT, [load_ctx('{"n": 0}', "json")])


def test_a_block_is_checked_on_its_own_lines():
    with pytest.raises(TemplateSyntaxProblem) as syntax:
        check_block("footer", {"footer": "a\nb\n{% if %}"})
    assert (syntax.value.part, syntax.value.line) == ("block:footer", 3)
    with pytest.raises(TemplateSyntaxProblem) as sandbox:
        check_block("footer", {"footer": "a\n{{ ctx.__init__ }}"})
    assert (sandbox.value.part, sandbox.value.line) == ("block:footer", 2)
    with pytest.raises(TemplateSyntaxProblem) as nested:
        check_block("footer", {"footer": '{% include "legal" %}', "legal": "\n{% endif %}"})
    assert (nested.value.part, nested.value.line) == ("block:legal", 2)
    with pytest.raises(TemplateSyntaxProblem) as itself:
        check_block("footer", {"footer": '{% include "footer" %}'})
    assert "includes itself" in itself.value.detail


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("<ctx>\n  <a>\n</ctx>", 3, 7),
        ("<ctx><a b='1' b='2'/></ctx>", 1, None),
        ("no xml", 1, 1),
    ],
)
def test_an_xml_ctx_must_be_well_formed(text, line, column):
    with pytest.raises(MalformedCtxError) as caught:
        check_seed_ctx(text, "xml", max_bytes=65536)
    assert caught.value.line == line
    if column is not None:
        assert caught.value.column == column
    assert f"line {line}" in caught.value.detail


def test_an_xml_ctx_with_a_dtd_is_refused():
    with pytest.raises(MalformedCtxError) as caught:
        check_seed_ctx(
            '<?xml version="1.0"?>\n<!DOCTYPE ctx SYSTEM "file:///etc/passwd"><ctx/>',
            "xml",
            max_bytes=65536,
        )
    assert "line 2" in caught.value.detail


@pytest.mark.parametrize(
    ("ctx", "fragment"),
    [
        ('{"a": 1,\n "b": }', "line 2, column 7"),
        ("[]", "not array"),
        ('"text"', "not string"),
        ("", "line 1, column 1"),
    ],
)
def test_a_json_ctx_must_be_an_object(ctx, fragment):
    with pytest.raises(MalformedCtxError) as caught:
        check_seed_ctx(ctx, "json", max_bytes=65536)
    assert fragment in caught.value.detail


def test_a_ctx_is_stored_as_text_and_limited_like_an_event():
    assert check_seed_ctx({"a": [1, "é"]}, "json", max_bytes=100) == '{"a":[1,"é"]}'
    assert check_seed_ctx("<ctx><a>1</a></ctx>", "xml", max_bytes=100) == "<ctx><a>1</a></ctx>"
    with pytest.raises(MalformedCtxError) as caught:
        check_seed_ctx({"a": 1}, "xml", max_bytes=100)
    assert caught.value.detail == "an XML ctx is given as text"
    with pytest.raises(PayloadTooLargeError):
        check_seed_ctx({"a": "x" * 200}, "json", max_bytes=100)


def test_a_seed_address_is_checked_for_its_channel():
    assert check_seed_address(Channel.EMAIL, " Ann@Example.COM ", " c-1 ") == (
        "Ann@example.com",
        "c-1",
    )
    # written in E.164, as intake writes it
    assert check_seed_address(Channel.SMS, "+33 6 12 34 56 78", None)[0] == "+33612345678"
    with pytest.raises(InvalidInputError) as caught:
        check_seed_address(Channel.SMS, "ann@example.com", None)
    assert caught.value.message == "invalid seed address"
    assert caught.value.detail.startswith("address: 'ann@example.com' is not a phone number")
    with pytest.raises(InvalidInputError) as missing:
        check_seed_address(Channel.IOS, "", None)
    assert missing.value.detail == "address: missing"


def test_template_input_names_channels_and_keeps_blocks_apart():
    assert parse_channel("SMS") is Channel.SMS
    assert parse_channel(42) is Channel.ANDROID
    assert parse_channel("41") is Channel.IOS
    with pytest.raises(ValueError, match="unknown channel"):
        parse_channel("fax")
    with pytest.raises(ValidationError, match="separate objects"):
        TemplateContent(blocks={"footer": "x"})
    assert "blocks" not in TemplateContent(subject="s").model_dump()
    new = TemplateIn(name="t", label="T", event_type="order", channel="android")
    assert new.channel is Channel.ANDROID and new.content == TemplateContent()
    with pytest.raises(ValidationError):
        TemplateIn(name="t", label="T", event_type="bad type")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "https://shop.example/unsub?e={{ event.email|urlencode }}",
            "https://shop.example/unsub?e=ann%40example.com",
        ),
        (
            "mailto:unsubscribe@shop.example?subject={{ event.email|urlencode }}",
            "mailto:unsubscribe@shop.example?subject=ann%40example.com",
        ),
        (
            "<https://shop.example/u/{{ ctx.token }}>, <mailto:u@shop.example>",
            "<https://shop.example/u/t1>, <mailto:u@shop.example>",
        ),
        (
            "mailto:u@shop.example, https://shop.example/u",
            "mailto:u@shop.example, https://shop.example/u",
        ),
    ],
)
def test_list_unsubscribe_is_rendered_per_recipient(value, expected):
    content = PublishedContent(sender="s@shop.example", text="hi", list_unsubscribe=value)
    compiled = check_content(content, {}, EVENT)
    assert compiled.render(EVENT, load_ctx('{"token": "t1"}', "json")).list_unsubscribe == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("http://shop.example/unsub", "https: or mailto:"),
        ("{{ ctx.unsubscribe_url }}", "https: or mailto:"),  # the scheme may not come from data
        ("https://a.example/u, https://b.example/u", "more than one https"),
        ("javascript:alert(1)", "https: or mailto:"),
    ],
)
def test_a_list_unsubscribe_that_is_not_https_or_mailto_is_refused(value, reason):
    content = PublishedContent(sender="s@shop.example", text="hi", list_unsubscribe=value)
    with pytest.raises(TemplateSyntaxProblem) as caught:
        check_content(content, {}, EVENT)
    assert caught.value.part == "list_unsubscribe" and reason in caught.value.reason
