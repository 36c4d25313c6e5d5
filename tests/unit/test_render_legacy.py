"""The model product's tags, translated at publication, with escaping on (SPEC §3.6)."""

import pytest

from msgcenter.render import (
    MessageContent,
    TemplateSyntaxProblem,
    compile_content,
    load_ctx,
    translate_legacy,
)

CTX = load_ctx(
    '<ctx><client firstname="Ann &lt;b&gt;"><lastname>Lee</lastname></client>'
    '<order><article sku="A"/><article sku="B"/></order><token>a b&amp;c</token></ctx>',
    "xml",
)
EVENT = {
    "email": "ann@example.com",
    "external_id": "C-77",
    "mobile_phone": "+336",
    "correlation_id": "k",
}


@pytest.mark.parametrize(
    ("legacy", "jinja"),
    [
        ("<%= rtEvent.ctx.client.firstname %>", "{{ ctx.client.firstname }}"),
        ("<%=rtEvent.ctx.client.@firstname%>", "{{ ctx.client.firstname }}"),
        ("<%= batchEvent.ctx.order.article[1].@sku %>", "{{ ctx.order.article[1].sku }}"),
        ('<%= rtEvent.ctx["order-id"] %>', '{{ ctx["order-id"] }}'),
        ('<%= escapeUrl(rtEvent.ctx["price (EUR)"]) %>', '{{ (ctx["price (EUR)"])|urlencode }}'),
        ("<%= rtEvent.ctx._id %>", '{{ ctx["_id"] }}'),
        ("<%= rtEvent.@email %>", "{{ event.email }}"),
        ("<%= rtEvent.@externalId %>", "{{ event.external_id }}"),
        ("<%= batchEvent.@mobilePhone %>", "{{ event.mobile_phone }}"),
        ("<%= escapeUrl(rtEvent.ctx.token) %>", "{{ (ctx.token)|urlencode }}"),
        ("<%= escapeXmlStr(rtEvent.@email) %>", "{{ (event.email)|e }}"),
        ('<%@ include view="footer" %>', '{% include "footer" %}'),
        ("<%@ include view='footer' %>", '{% include "footer" %}'),
        ("no tags at all {{ ctx.x }}", "no tags at all {{ ctx.x }}"),
    ],
)
def test_tags_are_translated(legacy, jinja):
    assert translate_legacy(legacy) == jinja


def test_translated_templates_render_with_escaping_in_html():
    template = (
        "<p>Hello <%= rtEvent.ctx.client.@firstname %> <%= rtEvent.ctx.client.lastname %>,"
        " <%= rtEvent.@email %> (<%= rtEvent.@externalId %>)</p>"
        '<a href="https://x.example/?t=<%= escapeUrl(rtEvent.ctx.token) %>">go</a>'
    )
    content = MessageContent(
        html=template, text=template, subject="Hi <%= rtEvent.ctx.client.@firstname %>"
    )
    message = compile_content(content).render(EVENT, CTX)
    assert message.html == (
        "<p>Hello Ann &lt;b&gt; Lee, ann@example.com (C-77)</p>"
        '<a href="https://x.example/?t=a%20b%26c">go</a>'
    )
    assert message.text.startswith("<p>Hello Ann <b> Lee,")
    assert message.subject == "Hi Ann <b>"


def test_legacy_include_uses_personalisation_blocks():
    compiled = compile_content(
        MessageContent(text='Hi\n<%@ include view="footer" %>'),
        {"footer": "bye <%= rtEvent.@email %>"},
    )
    assert compiled.render(EVENT, CTX).text == "Hi\nbye ann@example.com"


def test_a_multi_line_tag_keeps_line_numbers():
    source = "a\n<%= rtEvent.ctx\n  .client.firstname %>\nb {{ oops"
    translated = translate_legacy(source)
    assert translated.count("\n") == source.count("\n")
    with pytest.raises(TemplateSyntaxProblem) as caught:
        compile_content(MessageContent(text=source))
    assert caught.value.line == 4


@pytest.mark.parametrize(
    ("source", "line", "column"),
    [
        ("<% if (rtEvent.ctx.vip == 'true') { %>VIP<% } %>", 1, 1),
        ("Hello\n  <%= rtEvent.ctx.a + rtEvent.ctx.b %>", 2, 3),
        ("x <%= new Date() %>", 1, 3),
        ("<p>\n<p><%= formatDate(rtEvent.@created, '%2/%1') %>", 2, 4),
        ("<%= rtEvent.ctx.a; require('fs') %>", 1, 1),
        ("<%= rtEvent.mobileApp.@uuid %>", 1, 1),
        ("<%= rtEvent.@email.x %>", 1, 1),
        ("<%= xtk.session.Logon() %>", 1, 1),
        ('<%@ include option="NmsServer_URL" %>', 1, 1),
        ("ok\nok <% var x = 1;", 2, 4),
    ],
)
def test_code_that_cannot_be_translated_is_refused_with_line_and_column(source, line, column):
    with pytest.raises(TemplateSyntaxProblem) as caught:
        compile_content(MessageContent(html=source))
    problem = caught.value
    assert (problem.part, problem.line, problem.column) == ("html", line, column)
    assert f"html, line {line}, column {column}" in problem.detail


def test_a_refused_tag_in_a_block_names_the_block():
    with pytest.raises(TemplateSyntaxProblem) as caught:
        compile_content(MessageContent(text='{% include "f" %}'), {"f": "\n\n  <% for(;;){} %>"})
    assert (caught.value.part, caught.value.line, caught.value.column) == ("block:f", 3, 3)
