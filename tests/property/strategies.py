"""Hypothesis strategies shared by the property tests: XML-safe text, element trees, ctx.

A :class:`Tree` is the model of one ctx element: its attributes, and either its
text or its child elements (never both: mixed content reads as its text in XML
and has no JSON equivalent). :func:`to_xml` and :func:`to_json` write the same
tree in each format following the conventions of :mod:`msgcenter.render.ctx`,
choosing among the equivalent JSON spellings with a draw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal

from hypothesis import strategies as st
from lxml import etree


def _xml_char(c: str) -> bool:
    # XML 1.0 §2.2 Char, minus the C1 controls that lxml accepts but are best avoided
    code = ord(c)
    return c in "\t\n\r" or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or code >= 0x10000


#: any character an XML document can carry (tab, line breaks, no other C0 control, no surrogate)
xml_chars = st.characters(codec="utf-8").filter(_xml_char)
#: text as an XML document can carry it, with a bias towards the characters XML escapes
xml_text = st.text(
    st.one_of(xml_chars, st.sampled_from(list("<>&'\"\r\n\t ]]>;#@%="))), max_size=24
)
#: names that XML and templates both accept (no colon: ctx ignores namespaces)
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,7}", fullmatch=True).filter(
    lambda n: not n.lower().startswith("xml")  # reserved (XML 1.0 §2.3), xmlns declares
)
#: leaf text that JSON can also write as a number or a boolean
numeric_text = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.decimals(
        allow_nan=False, allow_infinity=False, places=2, max_value=10**9, min_value=-(10**9)
    ).map(str),
    st.sampled_from(["true", "false", "0", "-0", "0.0", "1.50", "007"]),
)
leaf_text = st.one_of(xml_text, numeric_text)


@dataclass
class Tree:
    """One element: ``attributes`` (in order), then ``text`` or ``children`` (in order)."""

    name: str
    attributes: dict[str, str] = field(default_factory=dict)
    text: str = ""
    children: list[Tree] = field(default_factory=list)

    def depth(self) -> int:
        return 1 + max((c.depth() for c in self.children), default=0)


def trees(max_leaves: int = 12, name: st.SearchStrategy[str] = names) -> st.SearchStrategy[Tree]:
    """Element trees: leaves with text, inner elements with children, attributes on either."""
    attributes = st.dictionaries(names, leaf_text, max_size=3)
    leaves = st.builds(Tree, name, attributes, leaf_text)

    def extend(inner: st.SearchStrategy[Tree]) -> st.SearchStrategy[Tree]:
        # small name pools, so that repeated elements (and attribute/element clashes) occur
        return st.builds(
            Tree,
            name,
            attributes,
            st.just(""),
            st.lists(inner, min_size=1, max_size=4),
        )

    return st.recursive(leaves, extend, max_leaves=max_leaves)


#: ctx roots: the element is called ``ctx``, as intake stores it
ctx_trees = trees(name=st.sampled_from(["a", "b", "c", "_d", "e-f", "g.h", "ctx"])).map(
    lambda t: Tree("ctx", t.attributes, t.text, t.children)
)


def to_element(tree: Tree) -> etree._Element:
    element = etree.Element(tree.name, tree.attributes)
    if tree.children:
        element.extend(to_element(child) for child in tree.children)
    else:
        element.text = tree.text
    return element


def to_xml(tree: Tree) -> str:
    """The tree as an XML document (lxml escapes what needs escaping)."""
    return etree.tostring(to_element(tree), encoding="unicode")


def _json_number(text: str) -> str | None:
    """``text`` as a JSON number literal of the same text, when it is one."""
    try:
        if text != text.strip() or text.startswith(("+", ".")) or "e" in text.lower():
            return None
        decoded = json.loads(text, parse_float=Decimal)
    except ValueError:
        return None
    if isinstance(decoded, bool) or not isinstance(decoded, int | Decimal):
        return None
    return text if str(decoded) == text else None


@st.composite
def to_json(draw: st.DrawFn, tree: Tree) -> str:
    """The tree as a JSON object text, in one of its equivalent spellings."""
    return _object(draw, tree)


def _leaf(draw: st.DrawFn, text: str) -> str:
    number = _json_number(text)
    if number is not None and draw(st.booleans()):
        return number
    if text in ("true", "false") and draw(st.booleans()):
        return text
    return json.dumps(text, ensure_ascii=draw(st.booleans()))


def _object(draw: st.DrawFn, tree: Tree) -> str:
    groups: dict[str, list[Tree]] = {}
    for child in tree.children:
        groups.setdefault(child.name, []).append(child)
    members = []
    for name, value in tree.attributes.items():
        # "@name" is the attribute; a plain key works too unless an element has the name
        plain = name not in groups and name != "#text" and draw(st.booleans())
        members.append((name if plain else "@" + name, _leaf(draw, value)))
    if tree.children:
        for name, group in groups.items():
            values = [_value(draw, child) for child in group]
            single = len(values) == 1 and draw(st.booleans())
            members.append((name, values[0] if single else "[" + ", ".join(values) + "]"))
    elif tree.text or draw(st.booleans()):
        members.append(("#text", _leaf(draw, tree.text)))
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in members) + "}"


def _value(draw: st.DrawFn, tree: Tree) -> str:
    if not tree.attributes and not tree.children and draw(st.booleans()):
        return _leaf(draw, tree.text)
    return _object(draw, tree)
