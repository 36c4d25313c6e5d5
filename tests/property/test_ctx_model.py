"""The ctx model (SPEC §3.6), by property: one tree written in XML (as sent, or as intake
stores it, exclusive C14N) or in any JSON spelling of it navigates, compares and renders
the same."""

from __future__ import annotations

import json
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from msgcenter.events.model import Queue
from msgcenter.events.xml import parse_document
from msgcenter.intake.rest import _events_of, _fingerprint, _parse_json
from msgcenter.render import Ctx, MessageContent, RenderProblem, compile_content, load_ctx
from msgcenter.render.ctx import ctx_from_data, is_blank, items_of, number_of

from .strategies import Tree, ctx_trees, to_json, to_xml

#: every value of the tree, in document order, with its text, size, truth and children
DUMP = compile_content(
    MessageContent(
        text="{% macro dump(v) %}[{{ v|length }}:{{ v }}:{{ 'T' if v else 'F' }}"
        "{% for k, c in v|items %} {{ k }}=({% for o in c %}{{ dump(o) }}{% endfor %})"
        "{% endfor %}]{% endmacro %}{{ dump(ctx) }}"
    )
)


def stored_xml(tree: Tree) -> str:
    """The XML ctx as SOAP intake stores it: the parsed element in exclusive C14N (which
    writes attributes sorted by name: ``|items`` lists them in that order)."""
    element = parse_document(to_xml(tree).encode("utf-8"), max_depth=64)
    return etree.tostring(element, method="c14n", exclusive=True).decode()


def assert_same(mine: Ctx, theirs: Ctx, path: str = "ctx") -> None:
    assert len(mine) == len(theirs), path
    assert str(mine) == str(theirs), path
    assert bool(mine) == bool(theirs), path
    assert number_of(mine) == number_of(theirs), path
    assert is_blank(mine) == is_blank(theirs), path
    assert (mine == theirs) is True, path
    for index, (one, other) in enumerate(zip(mine, theirs, strict=True)):
        children, others = items_of(one), items_of(other)
        assert [name for name, _ in children] == [name for name, _ in others], path
        for (name, child), (_, twin) in zip(children, others, strict=True):
            assert_same(child, twin, f"{path}[{index}].{name}")


@given(ctx_trees, st.data())
def test_xml_and_every_json_spelling_load_to_the_same_ctx(tree, data):
    spelled = data.draw(to_json(tree))
    from_xml = load_ctx(to_xml(tree), "xml")
    for other in (
        load_ctx(spelled, "json"),
        ctx_from_data(json.loads(spelled, parse_float=Decimal)),
    ):
        assert_same(from_xml, other)
    assert_same(load_ctx(to_xml(canonical(tree)), "xml"), load_ctx(stored_xml(tree), "xml"))


def canonical(tree: Tree) -> Tree:
    """``tree`` with its attributes in C14N order (XML C14N 1.0 §2.2: by name)."""
    return Tree(
        tree.name,
        dict(sorted(tree.attributes.items(), key=lambda item: item[0].encode("utf-8"))),
        tree.text,
        [canonical(child) for child in tree.children],
    )


@given(ctx_trees, st.data())
def test_xml_and_json_render_the_same(tree, data):
    spelled = data.draw(to_json(tree))
    expected = DUMP.render({}, load_ctx(to_xml(tree), "xml")).text
    assert DUMP.render({}, load_ctx(spelled, "json")).text == expected


@st.composite
def paths(draw: st.DrawFn, tree: Tree) -> list[str | int]:
    """A path that exists in ``tree`` (names and indexes), or that leaves it somewhere."""
    path: list[str | int] = []
    node = tree
    while draw(st.booleans()):
        names = list(node.attributes) + [c.name for c in node.children]
        name = draw(st.sampled_from(names + ["missing"]))
        path.append(name)
        matches = [c for c in node.children if c.name == name]
        if not matches:
            break
        index = draw(st.integers(-len(matches) - 1, len(matches)))
        if draw(st.booleans()):
            path.append(index)
            if not -len(matches) <= index < len(matches):
                break
            node = matches[index]
        else:
            node = matches[0]
    return path


@given(ctx_trees, st.data())
def test_any_path_reads_the_same_from_xml_and_json_in_a_template(tree, data):
    path = data.draw(paths(tree))
    expression = "ctx" + "".join(f"[{json.dumps(step)}]" for step in path)
    template = compile_content(
        MessageContent(
            text=f"{{{{ {expression} }}}}|{{{{ {expression}|length }}}}|"
            f"{{% for o in {expression} %}}<{{{{ o }}}}>{{% endfor %}}|"
            f"{{{{ {expression} is defined }}}}|{{{{ {expression} == 0 }}}}"
        )
    )
    spelled = data.draw(to_json(tree))
    rendered = template.render({}, load_ctx(to_xml(tree), "xml")).text
    assert template.render({}, load_ctx(spelled, "json")).text == rendered


@given(st.one_of(st.text(max_size=40), st.binary(max_size=40).map(lambda b: b.decode("latin-1"))))
def test_any_ctx_text_loads_or_is_a_render_problem(text):
    for ctx_format in ("xml", "json"):
        try:
            load_ctx(text, ctx_format)
        except RenderProblem as problem:
            assert problem.part == "ctx"


# -- what REST intake stores -----------------------------------------------------------------

numbers = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=2, max_value=10**6, min_value=0),
    st.integers(2**64, 2**80),
)


@given(numbers)
def test_a_rest_ctx_number_keeps_its_text_as_in_xml(number):
    literal = str(number)
    body = _parse_json(
        f'{{"type": "t", "email": "a@example.com", "ctx": {{"n": {literal}}}}}'.encode()
    )
    (event,) = _events_of(body, None, 64 * 1024)
    from_rest = load_ctx(event.ctx, "json")
    from_soap = load_ctx(stored_xml(Tree("ctx", {"n": literal})), "xml")
    assert str(from_rest["n"]) == str(from_soap["n"]) == literal


def test_long_integers_and_fractions_deep_in_a_ctx_keep_their_text_and_their_fingerprint():
    data = (
        b'[{"type": "t", "email": "a@example.com", "ctx": {"rows": [{"n": -123456789012345678901}],'
        b' "price": 19.90, "big": 18446744073709551616}}]'
    )
    body = _parse_json(data)
    (event,) = _events_of(body, "key", 64 * 1024)
    assert (
        event.ctx
        == '{"rows":[{"n":-123456789012345678901}],"price":19.90,"big":18446744073709551616}'
    )
    assert _fingerprint(Queue.RT, body[0]) == _fingerprint(Queue.RT, _parse_json(data)[0])
