"""The sandbox: no internals, no files, bounded work and output; one error type (SPEC §3.6).

Every attempt must end as a RenderProblem (or, when the template cannot even be
compiled, a TemplateSyntaxProblem) within moments: never a hang, a MemoryError
or any other exception escaping ``render()``.
"""

import pytest

from msgcenter.render import (
    MessageContent,
    RenderLimits,
    RenderProblem,
    TemplateSyntaxProblem,
    compile_content,
    load_ctx,
)

CTX = load_ctx('{"name": "Ann", "n": "1000000000", "nine": "9", "items": [1, 2, 3]}', "json")
EVENT = {"email": "ann@example.com", "language": "en"}


def problem(template, *, part="text", limits=None, ctx=CTX):
    """Render ``template`` as ``part`` and return the RenderProblem it must raise."""
    compiled = compile_content(MessageContent(**{part: template}), limits=limits)
    with pytest.raises(RenderProblem) as caught:
        compiled.render(EVENT, ctx)
    assert caught.value.part == part
    return caught.value


ESCAPES = [
    "{{ ctx.__class__ }}",
    "{{ event.__dict__ }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ range.__self__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ loop.__class__ }}",
    "{{ ctx|attr('__class__') }}",
    "{{ ''|attr('__class__') }}",
    "{{ ctx.items|attr('_nodes') }}",
    "{{ ctx._nodes }}",
    "{{ 'a'.upper.__self__ }}",
    "{{ '{0.__class__}'.format(ctx) }}",
    "{{ [].pop() }}",
    "{% set d = {} %}{{ d.update(a=1) }}",
    "{% if ctx.__class__ %}x{% endif %}",
    "{% for c in ''.__class__.__mro__ %}{{ c }}{% endfor %}",
]


@pytest.mark.parametrize("template", ESCAPES)
def test_reaching_python_internals_is_a_sandbox_violation(template):
    reason = problem(template).reason
    assert "sandbox violation" in reason, reason


def test_data_named_like_internals_is_only_data():
    ctx = load_ctx('{"__class__": "data", "_id": "42", "items": "i"}', "json")
    text = compile_content(
        MessageContent(text='{{ ctx["__class__"] }} {{ ctx["_id"] }} {{ ctx.items }}')
    ).render(EVENT, ctx)
    assert text.text == "data 42 i"


@pytest.mark.parametrize(
    "template",
    [
        '{% include "/etc/passwd" %}',
        '{% import "os" as os %}',
        '{% extends "http://example.com/x" %}',
        "{% include ctx.name %}",
    ],
)
def test_no_file_or_network_template_can_be_loaded(template):
    with pytest.raises(TemplateSyntaxProblem):
        compile_content(MessageContent(text=template))


@pytest.mark.parametrize("name", ["lipsum", "config", "request", "os", "open", "__builtins__"])
def test_no_dangerous_global_is_available(name):
    compiled = compile_content(MessageContent(text="[{{ " + name + " }}]"))
    assert compiled.render(EVENT, CTX).text == "[]"


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{{ range(10**9)|length }}", "range() of 1000000000 items"),
        ("{{ range(ctx.n)|length }}", "range() of 1000000000 items"),
        (
            "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
            "loop iterations",
        ),
        (
            "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}",
            "macro calls",
        ),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursion"),
        ("{% for i in range(3) recursive %}{{ loop(range(3)) }}{% endfor %}", "recursion"),
        ("{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}", "exceeds"),
        ("{{ 'x' * 10**9 }}", "a string of 1000000000 characters"),
        ("{{ 'x' * ctx.n }}", "a string of 1000000000 characters"),
        ("{{ ctx.n * 'x' }}", "a string of 1000000000 characters"),
        ("{{ ['x'] * 10**9 }}", "a list of 1000000000 items"),
        ("{{ 9 ** (9 ** 9) }}", "too large a number"),
        ("{{ 2 ** ctx.n }}", "too large a number"),
        ("{{ 'x'|center(10**9) }}", "centred string"),
        ("{{ 'x'.ljust(10**9) }}", "not available"),
        ("{{ 'x'.zfill(10**9) }}", "not available"),
        ("{{ '{:>999999999}'.format(1) }}", "not available"),
        ("{{ '%999999999s'|format(1) }}", "formatted string"),
        ("{{ '%999999999s' % 1 }}", "formatted string"),
        ("{{ '%*s' % (999999999, 1) }}", "'*' widths"),
        ("{{ range(10)|batch(10**9, 'x')|list|length }}", "a list of 1000000000 items"),
        ("{{ range(10)|slice(10**9)|list|length }}", "a list of 1000000000 items"),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "exceeds",
        ),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
            "exceeds",
        ),
        (
            "{% macro f(s, n) %}{% if n %}{{ f(s ~ s, n - 1) }}{% endif %}{% endmacro %}{{ f('x', 60) }}",
            "exceeds",
        ),
        (
            "{% set s %}{% for i in range(9999) %}{{ 'y' * 100000 }}{% endfor %}{% endset %}{{ s|length }}",
            "intermediate text",
        ),
        (
            "{% filter upper %}{% for i in range(9999) %}{{ 'y' * 100000 }}{% endfor %}{% endfilter %}",
            "intermediate text",
        ),
        ("{% set big = 'x' * 1000000 %}{{ ([big] * 10000)|join }}", "joined string"),
        ("{% set big = 'x' * 1000000 %}{{ big ~ big }}", "exceeds"),
        ("{% set big = 'x' * 100000 %}{{ big|replace('x', big) }}", "replaced string"),
        ("{% set big = 'x' * 100000 %}{{ big|wordwrap(1, wrapstring=big) }}", "wrapped string"),
        ("{% set big = '&' * 1000000 %}{{ big|forceescape }}", "exceeds"),
        ("{{ [1, 2] }}", "a list cannot be written out"),
        ("{{ namespace(a='x' * 1000000) }}", "a Namespace cannot be written out"),
        ("{{ range(10)|list|sum(start=[]) }}", "only numbers"),
    ],
)
def test_runaway_templates_stop_with_a_render_problem(template, fragment):
    reason = problem(template).reason
    assert fragment in reason, reason


@pytest.mark.timeout(20)
@pytest.mark.parametrize("template", ["{{ ctx.n|int }}", "{{ 'x'|center(ctx.n) }}"])
def test_a_huge_ctx_decimal_is_refused_as_an_int(template):
    """1E+999999 is a cheap Decimal but an int of 3.3 million bits, minutes of CPU to build
    (found by the fuzzing pass of ``ctx``); it is refused like a computed one."""
    reason = problem(template, ctx=load_ctx('{"n": "1E+999999"}', "json")).reason
    assert "ctx.n is a number of more than 4096 bits" in reason, reason


@pytest.mark.timeout(20)
def test_the_output_limit_is_configurable_and_counts_bytes():
    limits = RenderLimits(max_output_bytes=2048)
    compiled = compile_content(
        MessageContent(html="{{ 'é' * 1500 }}", text="{{ 'e' * 1500 }}"), limits=limits
    )
    with pytest.raises(RenderProblem) as caught:
        compiled.render(EVENT, CTX)
    assert caught.value.part == "html"
    assert "exceeds 2048 bytes" in caught.value.reason
    assert (
        compile_content(MessageContent(text="{{ 'e' * 2048 }}"), limits=limits)
        .render(EVENT, CTX)
        .text
        == "e" * 2048
    )


def test_range_and_iteration_limits_are_configurable():
    limits = RenderLimits(max_range=100, max_iterations=1000)
    assert (
        "range() of 101 items exceeds the limit of 100"
        in problem("{{ range(101)|list|length }}", limits=limits).reason
    )
    loops = "{% for i in range(100) %}{% for j in range(100) %}{% endfor %}{% endfor %}"
    assert "more than 1000 loop iterations" in problem(loops, limits=limits).reason


def test_ordinary_loops_and_arithmetic_are_untouched():
    template = "{% for i in range(3) %}{{ i * 2 }}{{ loop.cycle('a', 'b') }}{% endfor %} {{ 2 ** 10 }} {{ 'ab' * 3 }} {{ 7 // 2 }} {{ 7 % 3 }}"
    assert (
        compile_content(MessageContent(text=template)).render(EVENT, CTX).text
        == "0a2b4a 1024 ababab 3 1"
    )


@pytest.mark.parametrize(
    "template",
    [
        "{{ 1 / 0 }}",
        "{{ ctx.name + 1 }}",
        "{{ ctx.name|number(99) }}",
        "{{ ctx.name|currency('EUR') }}",
        "{{ ctx.name|date }}",
        "{{ ctx.name|date(tz='Nowhere/Land') }}",
        "{{ ctx.items[0] < [1] }}",
        "{{ none.attr.call() }}",
        "{{ ctx.name() }}",
        "{{ range('a') }}",
        "{{ ctx.missing|required }}",
        "{{ ctx|dictsort(by='size') }}",
        "{{ {'a': 1}['b'].c.d() }}",
        "{{ ctx.items|first|currency('XX') }}",
        "{{ ctx.items|first|date }}",
        "{% for a, b in ctx.items %}{% endfor %}",
        "{{ caller() }}",
    ],
)
def test_any_template_error_is_a_render_problem(template):
    reason = problem(template).reason
    assert reason and "Traceback" not in reason


def test_a_render_problem_names_the_line():
    caught = problem("line one\nline two\n{{ 1 / 0 }}\n")
    assert caught.line == 3
    assert "line 3" in caught.detail and "ZeroDivisionError" in caught.reason


def test_a_render_problem_in_a_block_names_the_block():
    compiled = compile_content(
        MessageContent(text='a\n{% include "footer" %}'),
        {"footer": "ok\n{{ ctx.missing|required }}"},
    )
    with pytest.raises(RenderProblem) as caught:
        compiled.render(EVENT, CTX)
    assert caught.value.line == 2
    assert "in block:footer, line 2" in caught.value.reason
    assert "ctx.missing" in caught.value.reason


def test_one_bad_event_fails_alone():
    compiled = compile_content(MessageContent(subject="{{ ctx.total|currency('EUR') }}"))
    good, bad = load_ctx('{"total": "3.5"}', "json"), load_ctx('{"total": "lots"}', "json")
    assert compiled.render(EVENT, good).subject == "€3.50"
    with pytest.raises(RenderProblem) as caught:
        compiled.render(EVENT, bad)
    assert "ctx.total ('lots') is not a number" in caught.value.reason
    assert compiled.render(EVENT, good).subject == "€3.50"
