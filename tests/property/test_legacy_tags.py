"""The legacy-tag translator (SPEC §3.6), by property: a tag renders what the same path
written in Jinja renders, text around tags is kept, line numbers stay right, and a tag
that cannot be translated is refused at the tag's own line and column."""

from __future__ import annotations

import contextlib
import json
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from msgcenter.render import (
    MessageContent,
    TemplateSyntaxProblem,
    compile_content,
    load_ctx,
    translate_legacy,
)
from msgcenter.render.ctx import Ctx

from .strategies import ctx_trees, to_xml

blank = st.text(" \t\n", max_size=2)
#: names as the model product writes them after a dot, and any name in brackets
dotted = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
quoted = st.text(st.characters(codec="utf-8", exclude_characters="\"'"), max_size=8).filter(
    lambda name: "%>" not in name
)
steps = st.one_of(
    st.tuples(st.just("name"), dotted, st.booleans()),
    st.tuples(st.just("index"), st.integers(0, 3), st.just(False)),
    st.tuples(st.just("quoted"), quoted, st.booleans()),
)


@st.composite
def legacy_paths(draw: st.DrawFn) -> tuple[str, str]:
    """(``rtEvent.ctx…`` as the model product writes it, the same path written in Jinja)."""
    legacy = draw(st.sampled_from(["rtEvent", "batchEvent"])) + draw(blank) + "." + "ctx"
    jinja = "ctx"
    for kind, value, variant in draw(st.lists(steps, max_size=4)):
        legacy += draw(blank)
        if kind == "name":
            legacy += "." + draw(blank) + ("@" if variant else "") + value
            jinja += f"[{json.dumps(value)}]"
        elif kind == "index":
            legacy += f"[{draw(blank)}{value}{draw(blank)}]"
            jinja += f"[{value}]"
        else:
            mark = '"' if variant else "'"
            legacy += f"[{mark}{value}{mark}]"
            jinja += f"[{json.dumps(value)}]"
    return legacy, jinja


def render(source: str, ctx: Ctx, event: dict[str, str] | None = None) -> str:
    return compile_content(MessageContent(text=source)).render(event or {}, ctx).text


@given(ctx_trees, legacy_paths(), st.sampled_from(["", "escapeUrl", "escapeXmlStr"]), blank)
def test_a_ctx_tag_renders_what_its_jinja_path_renders(tree, path, function, space):
    legacy, jinja = path
    ctx = load_ctx(to_xml(tree), "xml")
    if function:
        legacy, jinja = (
            f"{function}({space}{legacy}{space})",
            f"({jinja})|" + ("urlencode" if function == "escapeUrl" else "e"),
        )
    assert render(f"<%={space}{legacy}{space}%>", ctx) == render(f"{{{{ {jinja} }}}}", ctx)


@given(ctx_trees, legacy_paths())
def test_a_ctx_tag_renders_the_value_at_its_path(tree, path):
    legacy, jinja = path
    ctx = load_ctx(to_xml(tree), "xml")
    value = ctx
    for step in (
        json.loads("[" + jinja[3:].replace("][", ",").strip("[]") + "]") if jinja != "ctx" else []
    ):
        value = value[step]
    assert render(f"<%= {legacy} %>", ctx) == str(value)
    assert render(f"<%= escapeUrl({legacy}) %>", ctx) == quote(str(value).encode(), safe="/")


@given(
    # camel case as the model product's attributes are (externalId, mobilePhone)
    st.from_regex(r"[a-z][a-z0-9]{0,5}(?:[A-Z][a-z0-9]{1,5}){0,3}", fullmatch=True),
    st.text(st.characters(codec="utf-8"), max_size=10),
)
def test_an_attribute_tag_reads_the_event_field_in_snake_case(attribute, value):
    field = "".join("_" + c.lower() if c.isupper() else c for c in attribute)
    assert render(f"<%= rtEvent.@{attribute} %>", Ctx(), {field: value}) == value


#: text with tags of every kind, well-formed or not
fragments = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="<%"), max_size=10),
    st.sampled_from(["<", "%", ">", "\n", "<%", "%>", "{{", "}}", "{%", "%}", "<%=", "<%@"]),
    legacy_paths().map(lambda p: f"<%= {p[0]} %>"),
    st.sampled_from(
        [
            '<%@ include view="footer" %>',
            "<%= rtEvent.@email %>",
            "<% if (x) { %>",
            "<%= rtEvent.ctx.a(1) %>",
            "<%= rtEvent.ctx. %>",
            "<%= other.ctx.a %>",
            "<%= rtEvent.foo %>",
            "<%= escapeUrl(rtEvent.@email %>",
            "<%= rtEvent.ctx\n.a\n %>",
        ]
    ),
)


@given(st.lists(fragments, max_size=12).map("".join))
def test_translation_keeps_lines_and_locates_refusals(source):
    try:
        translated = translate_legacy(source, "html")
    except TemplateSyntaxProblem as refused:
        assert refused.part == "html"
        assert refused.line is not None and refused.column is not None
        line = source.split("\n")[refused.line - 1]
        assert line[refused.column - 1 :].startswith("<%"), (line, refused.column)
        return
    assert translated.count("\n") == source.count("\n")
    if "<%" not in source:
        assert translated == source
    # what the translation is, a template compiles or is refused, and nothing else
    with contextlib.suppress(TemplateSyntaxProblem):
        compile_content(MessageContent(html=translated), {"footer": "f"})


@given(st.lists(fragments, max_size=8).map("".join))
def test_text_outside_tags_is_kept(source):
    try:
        translated = translate_legacy(source)
    except TemplateSyntaxProblem:
        return
    outside = source.split("<%")[0]
    assert translated.startswith(outside)
    last = source.rsplit("%>", 1)[-1] if "<%" in source else source
    assert translated.endswith(last)
