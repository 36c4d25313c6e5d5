"""The model product's personalisation tags, translated to Jinja at publication (SPEC §3.6).

Accepted, in any part or block (left: the model product; right: what it becomes):

- ``<%= rtEvent.ctx.client.firstname %>`` → ``{{ ctx.client.firstname }}``; an
  attribute step ``.@firstname`` is the same as ``.firstname`` (ctx navigation
  reaches both), ``[0]`` picks an occurrence, ``["order-id"]`` any name;
- ``<%= rtEvent.@email %>`` → ``{{ event.email }}``, and every other event
  attribute in snake case: ``@externalId`` → ``event.external_id``,
  ``@mobilePhone`` → ``event.mobile_phone``, ``@correlationId`` → ``event.correlation_id``;
- ``<%= escapeUrl(rtEvent.ctx.token) %>`` → ``{{ (ctx.token)|urlencode }}`` and
  ``<%= escapeXmlStr(…) %>`` → ``{{ (…)|e }}``;
- ``<%@ include view="footer" %>`` → ``{% include "footer" %}`` (a personalisation block).

``batchEvent.`` works like ``rtEvent.``. The output is escaped like any Jinja
expression: autoescaped in the HTML part, as is elsewhere. Any other code between
``<%`` and ``%>`` (the model product's JavaScript) is refused with its line and
column. Line numbers are kept, so later errors point at the original source.
"""

from __future__ import annotations

import json
import re
from typing import NoReturn

from msgcenter.render.errors import TemplateSyntaxProblem

#: a path up to a parenthesis, which may still occur inside a quoted name (``["a (b)"]``)
_PATH = r"""(?:[^()"']|"[^"]*"|'[^']*')*?"""
_EXPRESSION = re.compile(
    rf"""\s*(?:(?P<function>escapeUrl|escapeXmlStr)\s*\(\s*(?P<inner>{_PATH})\s*\)|(?P<plain>{_PATH}))\s*""",
    re.S,
)
_ROOT = re.compile(r"(?:rtEvent|batchEvent)\b")
_STEP = re.compile(
    r"""\s*(?:\.\s*(?P<attr>@?)(?P<name>[A-Za-z_][A-Za-z0-9_]*)|\[\s*(?:(?P<index>[0-9]+)|"(?P<dq>[^"]*)"|'(?P<sq>[^']*)')\s*\])"""
)
_INCLUDE = re.compile(r"""@\s*include\s+view\s*=\s*(?:"([^"]+)"|'([^']+)')\s*""", re.S)
_SAFE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_FILTERS = {"escapeUrl": "urlencode", "escapeXmlStr": "e"}


def translate_legacy(source: str, part: str = "template") -> str:
    """``source`` with every model-product tag replaced by its Jinja equivalent.

    Raises :class:`TemplateSyntaxProblem` (naming ``part``, line and column) for a
    tag that cannot be translated.
    """
    if "<%" not in source:
        return source
    out: list[str] = []
    position = 0
    while (start := source.find("<%", position)) != -1:
        end = source.find("%>", start + 2)
        if end == -1:
            _refuse(source, start, part, "'<%' is never closed by '%>'")
        out.append(source[position:start])
        body = source[start + 2 : end]
        # Keep the tag's line breaks inside the Jinja tag: later line numbers stay right.
        breaks = "\n" * body.count("\n")
        if body.startswith("="):
            out.append("{{ " + _expression(body[1:], source, start, part) + breaks + " }}")
        elif (include := _INCLUDE.fullmatch(body)) is not None:
            name = include.group(1) or include.group(2)
            out.append("{% include " + json.dumps(name) + breaks + " %}")
        else:
            _refuse(
                source,
                start,
                part,
                "only <%= rtEvent.ctx… %>, <%= rtEvent.@attribute %> and "
                '<%@ include view="block" %> are translated; write other logic with '
                "Jinja tags ({% if %}, {% for %})",
            )
        position = end + 2
    out.append(source[position:])
    return "".join(out)


def _expression(text: str, source: str, start: int, part: str) -> str:
    found = _EXPRESSION.fullmatch(text)
    path = None if found is None else found["inner"] if found["function"] else found["plain"]
    jinja = _path(path, source, start, part) if path else None
    if found is None or jinja is None:
        _refuse(
            source,
            start,
            part,
            f"cannot translate <%={text}%>: expected rtEvent.ctx.<path> or rtEvent.@<attribute>, "
            "optionally inside escapeUrl() or escapeXmlStr()",
        )
    if found.group("function"):
        return f"({jinja})|{_FILTERS[found.group('function')]}"
    return jinja


def _path(text: str, source: str, start: int, part: str) -> str | None:
    """The Jinja expression for ``rtEvent.…``, or ``None`` when ``text`` is not such a path."""
    root = _ROOT.match(text)
    if root is None:
        return None
    steps = []
    position = root.end()
    while position < len(text):
        step = _STEP.match(text, position)
        if step is None:
            return None
        steps.append(step)
        position = step.end()
    if not steps or steps[0].group("name") is None:
        return None
    first = steps[0]
    if first.group("attr"):
        if len(steps) != 1:
            return None
        return "event." + _snake(first.group("name"))
    if first.group("name") != "ctx":
        _refuse(
            source,
            start,
            part,
            f"{text.strip()}: only rtEvent.ctx… and rtEvent.@attribute can be translated",
        )
    out = "ctx"
    for step in steps[1:]:
        if step.group("index") is not None:
            out += f"[{int(step.group('index'))}]"
            continue
        name = step.group("name") or step.group("dq") or step.group("sq") or ""
        # Names starting with "_" are data, reached by subscript (the sandbox refuses ._x).
        out += f".{name}" if _SAFE_NAME.fullmatch(name) else f"[{json.dumps(name)}]"
    return out


def _snake(name: str) -> str:
    """``externalId`` → ``external_id``: the model product's attribute as an event field."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _refuse(source: str, offset: int, part: str, reason: str) -> NoReturn:
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    raise TemplateSyntaxProblem(part, reason, line=line, column=column)
