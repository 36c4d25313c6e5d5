"""ctx navigation: one navigable value whether the ctx came as XML or JSON (SPEC §3.6)."""

from decimal import Decimal

import pytest

from msgcenter.render import (
    Ctx,
    MessageContent,
    RenderProblem,
    compile_content,
    ctx_from_data,
    load_ctx,
)

XML = """<ctx>
  <client firstname="Ann" vip="false"><lastname>Lee</lastname><points>0</points></client>
  <order id="7"><total currency="EUR">12.50</total>
    <article sku="A" qty="2"/><article sku="B" qty="1"/>
  </order>
  <note>Hello <b>you</b></note>
  <empty/>
</ctx>"""

JSON = """{
  "client": {"firstname": "Ann", "vip": false, "lastname": "Lee", "points": 0},
  "order": {"id": 7, "total": {"@currency": "EUR", "#text": "12.50"},
            "article": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}]},
  "empty": {}, "nothing": null
}"""


def render(template, ctx, **event):
    """Render ``template`` as a text part."""
    return compile_content(MessageContent(text=template)).render(event, ctx).text


@pytest.fixture(params=["xml", "json"])
def ctx(request):
    return load_ctx(XML if request.param == "xml" else JSON, request.param)


# -- reaching values -----------------------------------------------------------------------


def test_attribute_child_element_and_json_key_are_reached_alike(ctx):
    assert render("{{ ctx.client.firstname }} {{ ctx.client.lastname }}", ctx) == "Ann Lee"
    assert render('{{ ctx["client"]["firstname"] }}', ctx) == "Ann"
    assert render("{{ ctx.order.total }} {{ ctx.order.total.currency }}", ctx) == "12.50 EUR"


def test_python_code_navigates_by_subscript(ctx):
    assert str(ctx["client"]["firstname"]) == "Ann"
    assert str(ctx["order"]["article"][1]["sku"]) == "B"
    assert isinstance(ctx["order"], Ctx)


def test_repeated_elements_iterate_and_count(ctx):
    loop = "{% for a in ctx.order.article %}[{{ a.sku }}x{{ a.qty }}]{% endfor %}"
    assert render(loop, ctx) == "[Ax2][Bx1]"
    assert render("{{ ctx.order.article|length }}", ctx) == "2"
    assert render("{{ ctx.order.article[1].sku }} {{ ctx.order.article[-1].sku }}", ctx) == "B B"


def test_a_repeated_value_reads_as_its_first_occurrence_and_navigates_through_all(ctx):
    assert render("{{ ctx.order.article.sku }}", ctx) == "A"
    assert render("{{ ctx.order.article.sku|join(',') }}", ctx) == "A,B"
    assert render("{{ 'B' in ctx.order.article.sku }}", ctx) == "True"


@pytest.mark.parametrize(
    ("text", "ctx_format"),
    [
        ('<ctx><order><article sku="A"/></order></ctx>', "xml"),
        ('{"order": {"article": {"sku": "A"}}}', "json"),
        ('{"order": {"article": [{"sku": "A"}]}}', "json"),
    ],
)
def test_a_single_element_is_a_one_item_sequence(text, ctx_format):
    ctx = load_ctx(text, ctx_format)
    template = (
        "{% for a in ctx.order.article %}<{{ a.sku }}>{% endfor %} {{ ctx.order.article|length }}"
    )
    assert render(template, ctx) == "<A> 1"
    assert render("{% for a in ctx.order.article.sku %}{{ a }}{% endfor %}", ctx) == "A"


def test_a_json_list_of_scalars_iterates():
    ctx = load_ctx('{"tags": ["new", "sale"]}', "json")
    assert render("{% for t in ctx.tags %}#{{ t }}{% endfor %}", ctx) == "#new#sale"


# -- missing values ------------------------------------------------------------------------


def test_missing_paths_render_empty_are_false_and_iterate_as_nothing(ctx):
    assert (
        render("[{{ ctx.nobody }}][{{ ctx.a.b.c.d }}][{{ ctx.client.nickname }}]", ctx) == "[][][]"
    )
    assert render("{% if ctx.a.b %}yes{% else %}no{% endif %}", ctx) == "no"
    assert render("{% for x in ctx.a.b %}x{% else %}none{% endfor %}", ctx) == "none"
    assert render("{{ ctx.a.b|length }} {{ ctx.nothing|length }}", ctx) == "0 0"
    assert render('{{ ctx.a["b"].c }}{{ ctx.order.article[9].sku }}', ctx) == ""


def test_missing_values_take_defaults_and_fail_the_defined_test(ctx):
    assert render('{{ ctx.client.nickname|default("friend") }}', ctx) == "friend"
    assert render('{{ ctx.client.firstname|default("friend") }}', ctx) == "Ann"
    assert render("{{ ctx.a is defined }} {{ ctx.client is defined }}", ctx) == "False True"


def test_unknown_variables_render_empty_too(ctx):
    assert render("[{{ nothing.at.all }}]", ctx) == "[]"


def test_an_empty_element_exists_but_is_empty(ctx):
    assert (
        render("[{{ ctx.empty }}] {{ ctx.empty is defined }} {{ ctx.empty|length }}", ctx)
        == "[] True 1"
    )
    assert render("{% if ctx.empty %}yes{% else %}no{% endif %}", ctx) == "no"


# -- values as numbers, booleans and text --------------------------------------------------


def test_leaves_compare_and_compute_as_numbers(ctx):
    assert render("{{ ctx.order.total > 10 }} {{ ctx.order.total < 12.6 }}", ctx) == "True True"
    assert render("{{ ctx.order.id == 7 }} {{ ctx.order.id == '7' }}", ctx) == "True True"
    assert render("{{ ctx.order.article[0].qty * ctx.order.total }}", ctx) == "25.00"
    assert render("{{ ctx.order.total + 0.5 }}", ctx) == "13.0"
    assert render("{{ (ctx.order.total|float) + 1 }} {{ ctx.order.total|int }}", ctx) == "13.5 12"
    assert (
        render("{{ ctx.order.total|round }} {{ ctx.order.article|sum(attribute='qty') }}", ctx)
        == "12 3"
    )
    assert render("{{ ctx.order.article|map(attribute='qty')|max }}", ctx) == "2"
    assert (
        render("{{ ctx.order.article|sort(attribute='qty')|map(attribute='sku')|join }}", ctx)
        == "BA"
    )


def test_falsy_leaves_are_the_same_from_xml_and_json(ctx):
    template = "{{ ctx.client.vip|string }}:{{ 'y' if ctx.client.vip else 'n' }} {{ 'y' if ctx.client.points else 'n' }}"
    assert render(template, ctx) == "false:n n"
    assert render("{{ ctx.client.vip == false }}", ctx) == "True"


def test_text_leaves_compare_as_text(ctx):
    assert (
        render("{{ ctx.client.firstname == 'Ann' }} {{ ctx.client.firstname < 'Bob' }}", ctx)
        == "True True"
    )
    assert (
        render("{{ 'nn' in ctx.client.firstname }} {{ ctx.client.firstname|upper }}", ctx)
        == "True ANN"
    )
    assert (
        render("{{ ctx.client.firstname|length }} {{ ctx.client.firstname|string|length }}", ctx)
        == "1 3"
    )


def test_text_is_not_a_number():
    ctx = load_ctx('{"name": "Ann", "n": "3"}', "json")
    with pytest.raises(RenderProblem) as caught:
        render("{{ ctx.name + 1 }}", ctx)
    assert "ctx.name ('Ann') is not a number" in caught.value.reason
    assert render("{{ ctx.name ~ 1 }} {{ ctx.n + 1 }}", ctx) == "Ann1 4"


def test_items_lists_the_children_of_an_element(ctx):
    assert render("{% for k, v in ctx.client|items %}{{ k }}={{ v }};{% endfor %}", ctx).startswith(
        "firstname=Ann;"
    )


# -- loading -------------------------------------------------------------------------------


def test_xml_mixed_content_reads_as_its_text_and_namespaces_are_ignored():
    ctx = load_ctx(
        '<ctx xmlns:x="urn:x"><note>Hello <b>you</b>!</note><x:code x:kind="k">1</x:code></ctx>',
        "xml",
    )
    assert (
        render("{{ ctx.note }}|{{ ctx.note.b }}|{{ ctx.code }}|{{ ctx.code.kind }}", ctx)
        == "Hello you!|you|1|k"
    )


def test_comments_and_processing_instructions_do_not_hide_text():
    ctx = load_ctx(
        "<ctx><c><!--x-->one</c><d>t<?pi x?>wo</d><e><!--y--><f>3</f></e><g>a<!--z-->b<h/></g></ctx>",
        "xml",
    )
    assert render("{{ ctx.c }}|{{ ctx.d }}|{{ ctx.e }}|{{ ctx.e.f }}|{{ ctx.g }}", ctx) == (
        "one|two||3|ab"
    )


def test_json_numbers_keep_their_text():
    ctx = load_ctx('{"price": 19.90, "qty": 3, "big": 12345678901234567890}', "json")
    assert (
        render("{{ ctx.price }} {{ ctx.qty }} {{ ctx.big }}", ctx) == "19.90 3 12345678901234567890"
    )


def test_ctx_from_data_accepts_decoded_json():
    ctx = ctx_from_data({"client": {"firstname": "Ann"}, "total": Decimal("2.5")})
    assert render("{{ ctx.client.firstname }} {{ ctx.total * 2 }}", ctx) == "Ann 5.0"


@pytest.mark.parametrize(
    ("text", "ctx_format", "fragment"),
    [
        ("<ctx><a></ctx>", "xml", "not usable XML"),
        ('<!DOCTYPE x [<!ENTITY e "boom">]><ctx>&e;</ctx>', "xml", "not usable XML"),
        ('<!DOCTYPE x SYSTEM "file:///etc/passwd"><ctx/>', "xml", "not usable XML"),
        ("{", "json", "not valid JSON"),
        ("[1, 2]", "json", "must be a JSON object"),
        # found by bench/fuzz (ctx): decimal.InvalidOperation escaped load_ctx
        ('{"n": 1948e6444444444444444444444}', "json", "number out of range"),
        ("[" * 100_000 + "]" * 100_000, "json", ""),
    ],
)
def test_an_unreadable_ctx_is_a_render_problem(text, ctx_format, fragment):
    with pytest.raises(RenderProblem) as caught:
        load_ctx(text, ctx_format)
    assert caught.value.part == "ctx"
    assert fragment in caught.value.reason


def test_a_deeply_nested_json_ctx_is_refused():
    deep = '{"a":' * 500 + "1" + "}" * 500
    with pytest.raises(RenderProblem) as caught:
        load_ctx(deep, "json")
    assert "nested deeper" in caught.value.reason
