"""compile_content / render: parts, escaping, event fields, blocks, syntax errors (SPEC §3.6, §4)."""

from datetime import UTC, datetime

import pytest

from msgcenter.errors import InvalidInputError, MsgcenterError
from msgcenter.events.model import Channel, EmailFormat
from msgcenter.render import (
    PARTS,
    MessageContent,
    RenderedMessage,
    RenderLimits,
    RenderProblem,
    TemplateSyntaxProblem,
    compile_content,
    load_ctx,
)

HOSTILE = load_ctx(
    '<ctx><name>&lt;script&gt;alert("x")&lt;/script&gt; &amp; O\'Neil</name></ctx>', "xml"
)
EVENT = {
    "id": 981,
    "type": "order_confirmation",
    "email": "ann@example.com",
    "mobile_phone": "+33612345678",
    "external_id": "C-77",
    "origin": "shop",
    "language": "fr",
    "country": "FR",
    "correlation_id": "corr-1",
    "wished_channel": Channel.EMAIL,
    "email_format": EmailFormat.HTML,
    "created": datetime(2026, 3, 14, 9, 30, tzinfo=UTC),
    "scheduled": None,
    "extra": {"campaign": "spring"},
}


def test_message_content_and_rendered_message_have_the_parts():
    # push_data is a mapping of small parts (push_data.<key>), not one part
    assert tuple(MessageContent.__dataclass_fields__) == (*PARTS, "push_data")
    assert tuple(RenderedMessage.__dataclass_fields__) == (*PARTS, "push_data")


def test_every_part_is_rendered_and_empty_parts_stay_empty():
    content = MessageContent(
        subject="S {{ ctx.name }}",
        html="<b>{{ ctx.name }}</b>",
        text="T {{ ctx.name }}",
        sms="M {{ ctx.name }}",
        push_title="P {{ ctx.name }}",
        push_body="B {{ ctx.name }}",
    )
    message = compile_content(content).render(EVENT, load_ctx('{"name": "Ann"}', "json"))
    assert message == RenderedMessage("S Ann", "<b>Ann</b>", "T Ann", "M Ann", "P Ann", "B Ann")
    assert compile_content(MessageContent(text="x")).render(EVENT, HOSTILE) == RenderedMessage(
        text="x"
    )


def test_html_autoescapes_every_value_and_other_parts_do_not():
    content = MessageContent(
        subject="{{ ctx.name }}",
        html="<p>{{ ctx.name }}</p>",
        text="{{ ctx.name }}",
        sms="{{ ctx.name }}",
    )
    message = compile_content(content).render(EVENT, HOSTILE)
    raw = '<script>alert("x")</script> & O\'Neil'
    assert message.html == "<p>&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; O&#39;Neil</p>"
    assert message.subject == message.text == message.sms == raw


def test_html_escaping_covers_event_fields_filters_and_concatenation():
    event = {**EVENT, "origin": "<img src=x onerror=alert(1)>"}
    template = "{{ event.origin }}|{{ event.origin|upper }}|{{ 'a' ~ ctx.name }}|{{ ctx.name|default('x') }}"
    html = compile_content(MessageContent(html=template)).render(event, HOSTILE).html
    assert "<" not in html.replace("&lt;", "")
    assert "&lt;IMG SRC=X ONERROR=ALERT(1)&gt;" in html


def test_markup_written_by_the_template_itself_is_kept():
    html = (
        compile_content(MessageContent(html="<a href='{{ ctx.url }}'>{{ '<b>bold</b>'|safe }}</a>"))
        .render(EVENT, load_ctx('{"url": "https://x.example/?a=1&b=2"}', "json"))
        .html
    )
    assert html == "<a href='https://x.example/?a=1&amp;b=2'><b>bold</b></a>"


def test_the_template_sees_the_event_fields():
    template = (
        "{{ event.id }} {{ event.type }} {{ event.email }} {{ event.mobile_phone }} {{ event.external_id }} "
        "{{ event.origin }} {{ event.language }} {{ event.country }} {{ event.correlation_id }} "
        "{{ event.wished_channel }} {{ event.email_format }} {{ event.created }} [{{ event.scheduled }}] "
        "{{ event.campaign }} [{{ event.unknown }}]"
    )
    text = compile_content(MessageContent(text=template)).render(EVENT, HOSTILE).text
    assert text == (
        "981 order_confirmation ann@example.com +33612345678 C-77 shop fr FR corr-1 "
        "email html 2026-03-14T09:30:00+00:00 [] spring []"
    )


def test_whitespace_control_keeps_text_parts_clean():
    template = "Items:\n{% for a in ctx.a %}\n- {{ a }}\n{% endfor %}\nEnd"
    text = (
        compile_content(MessageContent(text=template))
        .render(EVENT, load_ctx('{"a": [1, 2]}', "json"))
        .text
    )
    assert text == "Items:\n- 1\n- 2\nEnd"


def test_a_compiled_content_renders_many_events():
    compiled = compile_content(MessageContent(subject="Hi {{ ctx.n }}"))
    subjects = [
        compiled.render(EVENT, load_ctx(f'{{"n": {i}}}', "json")).subject for i in range(50)
    ]
    assert subjects == [f"Hi {i}" for i in range(50)]


# -- personalisation blocks ---------------------------------------------------------------

BLOCKS = {
    "header": "<h1>Shop</h1> {{ ctx.name }}",
    "footer": '{% include "legal" %} sent to {{ event.email }}',
    "legal": "© Shop & Co",
    "unused": "{{ broken",
}


def test_blocks_are_included_by_name_with_the_escaping_of_their_part():
    content = MessageContent(
        html='{% include "header" %}|{% include "footer" %}',
        text='{% include "header" %}|{% include "footer" %}',
    )
    compiled = compile_content(content, BLOCKS)
    message = compiled.render(EVENT, HOSTILE)
    assert message.html.startswith("<h1>Shop</h1> &lt;script&gt;")
    assert message.text.startswith("<h1>Shop</h1> <script>")
    assert message.html.endswith("© Shop & Co sent to ann@example.com")
    assert compiled.blocks_used == {"header", "footer", "legal"}


def test_blocks_can_hold_macros():
    blocks = {"macros": "{% macro price(v) %}{{ v|currency('EUR') }}{% endmacro %}"}
    compiled = compile_content(
        MessageContent(text='{% import "macros" as m %}{{ m.price(ctx.p) }}'), blocks
    )
    assert compiled.render(EVENT, load_ctx('{"p": "3.5"}', "json")).text == "3,50\xa0€"


def test_the_blocks_are_frozen_at_compilation():
    blocks = {"footer": "v1"}
    compiled = compile_content(MessageContent(text='{% include "footer" %}'), blocks)
    blocks["footer"] = "v2"
    assert compiled.render(EVENT, HOSTILE).text == "v1"


def test_an_unknown_block_is_a_compile_error_with_its_line():
    with pytest.raises(TemplateSyntaxProblem) as caught:
        compile_content(MessageContent(html='<p>\n</p>\n{% include "footr" %}'), BLOCKS)
    problem = caught.value
    assert (problem.part, problem.line) == ("html", 3)
    assert "unknown block 'footr'" in problem.reason and "footer" in problem.reason
    assert isinstance(problem, InvalidInputError)


def test_an_unknown_block_inside_a_block_names_that_block():
    with pytest.raises(TemplateSyntaxProblem) as caught:
        compile_content(MessageContent(text='{% include "a" %}'), {"a": 'x\n{% include "zzz" %}'})
    assert (caught.value.part, caught.value.line) == ("block:a", 2)


def test_a_block_including_itself_is_refused():
    with pytest.raises(TemplateSyntaxProblem) as caught:
        compile_content(
            MessageContent(text='{% include "a" %}'),
            {"a": '{% include "b" %}', "b": '{% include "a" %}'},
        )
    assert "includes itself (a → b → a)" in caught.value.reason


def test_a_block_name_must_be_literal():
    with pytest.raises(TemplateSyntaxProblem) as caught:
        compile_content(MessageContent(text="{% include ctx.block %}"), BLOCKS)
    assert "in quotes" in caught.value.reason


def test_a_syntax_error_in_a_block_names_the_block():
    with pytest.raises(TemplateSyntaxProblem) as caught:
        compile_content(MessageContent(text='{% include "unused" %}'), BLOCKS)
    assert caught.value.part == "block:unused" and caught.value.line == 1


# -- syntax errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "part", "line", "fragment"),
    [
        (MessageContent(subject="Hello {{ ctx.name"), "subject", 1, "unexpected end"),
        (MessageContent(html="<p>\n{% for a in ctx.a %}\n</p>"), "html", 3, "endfor"),
        (
            MessageContent(text="a\nb\n{{ ctx.x|nosuchfilter }}"),
            "text",
            3,
            "No filter named 'nosuchfilter'",
        ),
        (MessageContent(sms="{% if %}"), "sms", 1, ""),
        (MessageContent(push_body="{{ 1 + }}"), "push_body", 1, ""),
        (MessageContent(push_title="{% endif %}"), "push_title", 1, "endif"),
    ],
)
def test_a_syntax_error_names_the_part_and_line(content, part, line, fragment):
    with pytest.raises(TemplateSyntaxProblem) as caught:
        compile_content(content)
    assert (caught.value.part, caught.value.line) == (part, line)
    assert fragment in caught.value.reason
    assert f"{part}, line {line}" in caught.value.detail


def test_errors_belong_to_the_msgcenter_tree():
    assert issubclass(TemplateSyntaxProblem, InvalidInputError)
    assert issubclass(RenderProblem, MsgcenterError) and not issubclass(
        RenderProblem, InvalidInputError
    )


def test_limits_are_kept_with_the_compiled_content():
    limits = RenderLimits(max_output_bytes=4096, max_range=50, max_iterations=500)
    assert compile_content(MessageContent(text="x"), limits=limits).limits == limits
    with pytest.raises(ValueError):
        RenderLimits(max_output_bytes=0)


def test_an_unreadable_event_is_a_render_problem():
    class Odd:
        def __str__(self):
            raise ValueError("no text")

    with pytest.raises(RenderProblem) as caught:
        compile_content(MessageContent(text="x")).render({"origin": Odd()}, {})
    assert caught.value.part == "event"
