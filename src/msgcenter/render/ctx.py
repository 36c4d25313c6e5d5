"""``ctx``: an event's personalisation data, navigable the same way from XML or JSON (SPEC §3.6).

XML ``<ctx><client firstname="Ann"/></ctx>`` and JSON ``{"client": {"firstname":
"Ann"}}`` load into the same :class:`Ctx` tree. In a template:

- ``ctx.client.firstname`` (or ``ctx["client"]["firstname"]``) reaches a child
  element, an XML attribute or a JSON key alike; a leaf's value is its text;
- a repeated element (``<article>`` twice, a JSON list) is one value with several
  occurrences: ``{% for a in ctx.order.article %}`` yields each, ``|length``
  counts them, ``[0]`` picks one, and reading it as text or navigating further
  uses all of them in order (``ctx.order.article.sku`` renders the first sku and
  iterates over every sku). A single element is a one-occurrence value;
- a missing path is an empty value: it renders as ``""``, is false, iterates as
  nothing and can be navigated further;
- leaves compare and compute as numbers when they look like numbers
  (``ctx.order.total > 100``, ``ctx.qty * ctx.price``) and as text otherwise;
  a leaf is false when it is empty, ``false`` or a number equal to zero;
- ``x in value`` tests a substring of a single value, membership in a repeated one.

JSON follows the usual XML-to-JSON conventions too: a key ``"@name"`` is the
attribute ``name`` and ``"#text"`` is an element's own text. ``null`` is missing.
"""

from __future__ import annotations

import enum
import json
import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from lxml import etree

from msgcenter.errors import MsgcenterError
from msgcenter.events.xml import parse_document
from msgcenter.render.errors import RenderProblem, TemplateFault

#: deepest ctx accepted (elements or JSON objects and lists)
MAX_DEPTH = 200
#: largest integer a template may compute; beyond it arithmetic would cost real CPU time
MAX_INT_BITS = 4096
#: the most decimal digits an integer of ``MAX_INT_BITS`` bits has
MAX_INT_DIGITS = int(MAX_INT_BITS * math.log10(2)) + 1

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_INTEGER = re.compile(r"[+-]?[0-9]{1,4000}")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,6})?")
_NUMBER_TYPES = (int, float, Decimal)


_UNPARSED = object()


class _Node:
    """One element, attribute or JSON value: its own value and its named children."""

    __slots__ = ("raw", "text", "children", "number")

    def __init__(self, raw: Any, text: str, children: dict[str, tuple[_Node, ...]] | None):
        self.raw = raw
        self.text = text
        self.children = children
        #: the value as a number (None if it is not one), parsed on first use
        self.number: Any = _UNPARSED


class Ctx:
    """A navigable value of a ctx (or of an event's fields): zero, one or several occurrences.

    Templates reach children as attributes (``ctx.client``); Python code uses
    ``ctx["client"]``. ``str()``, ``bool()``, ``len()``, iteration and
    comparisons behave as described in the module documentation. The class has
    no public attributes on purpose: every name a template writes is data.
    """

    __slots__ = ("_nodes", "_parent", "_name", "_kids")

    def __init__(
        self, nodes: tuple[_Node, ...] = (), parent: Ctx | None = None, name: Any = "ctx"
    ) -> None:
        self._nodes = nodes
        self._parent = parent
        self._name = name
        #: children already reached, by name: a template reads the same paths many times
        self._kids: dict[str, Ctx] | None = None

    # -- navigation --------------------------------------------------------------------

    def _child(self, name: str) -> Ctx:
        kids = self._kids
        if kids is None:
            kids = self._kids = {}
        else:
            found = kids.get(name)
            if found is not None:
                return found
        nodes = self._nodes
        if len(nodes) == 1:
            children = nodes[0].children
            occurrences = children.get(name, ()) if children else ()
        else:
            occurrences = tuple(c for n in nodes if n.children for c in n.children.get(name, ()))
        found = kids[name] = Ctx(occurrences, self, name)
        return found

    def __getitem__(self, key: Any) -> Ctx:
        if type(key) is str:
            return self._child(key)
        if type(key) is Ctx:
            return self._child(str(key))
        if isinstance(key, int) and not isinstance(key, bool):
            nodes = self._nodes
            found = (nodes[key],) if -len(nodes) <= key < len(nodes) else ()
            return Ctx(found, self, key)
        if isinstance(key, slice):
            return Ctx(self._nodes[key], self, key)
        return Ctx((), self, str(key))

    def __iter__(self) -> Iterator[Ctx]:
        for index, node in enumerate(self._nodes):
            yield Ctx((node,), self, index)

    def __reversed__(self) -> Iterator[Ctx]:
        for index in range(len(self._nodes) - 1, -1, -1):
            yield Ctx((self._nodes[index],), self, index)

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, item: Any) -> bool:
        if len(self._nodes) == 1 and isinstance(item, str):
            return item in self._nodes[0].text
        return any(occurrence == item for occurrence in self)

    def _items(self) -> list[tuple[str, Ctx]]:
        """The named children of the first occurrence, in document order."""
        if not self._nodes or not self._nodes[0].children:
            return []
        return [(name, Ctx(nodes, self, name)) for name, nodes in self._nodes[0].children.items()]

    def _path(self) -> str:
        """Where this value is, as a template would write it (``ctx.order.article[1].sku``)."""
        parts = []
        value: Ctx | None = self
        while value is not None:
            name = value._name
            if isinstance(name, int):
                parts.append(f"[{name}]")
            elif isinstance(name, slice):
                parts.append(
                    f"[{'' if name.start is None else name.start}:{'' if name.stop is None else name.stop}]"
                )
            elif value._parent is None:
                parts.append(name)
            elif _IDENTIFIER.fullmatch(name):
                parts.append("." + name)
            else:
                parts.append(f"[{json.dumps(name)}]")
            value = value._parent
        return "".join(reversed(parts))

    def _is_blank(self) -> bool:
        """Missing, or one occurrence with no children and only whitespace as text."""
        nodes = self._nodes
        if not nodes:
            return True
        return len(nodes) == 1 and not nodes[0].children and not nodes[0].text.strip()

    # -- as a value --------------------------------------------------------------------

    def __str__(self) -> str:
        return self._nodes[0].text if self._nodes else ""

    def __repr__(self) -> str:
        if len(self._nodes) > 1:
            return f"<Ctx {self._path()} ({len(self._nodes)} occurrences)>"
        return f"<Ctx {self._path()}={str(self)!r}>"

    def __bool__(self) -> bool:
        nodes = self._nodes
        if len(nodes) != 1:
            return bool(nodes)
        node = nodes[0]
        if node.children:
            return True
        if isinstance(node.raw, bool):
            return node.raw
        number = _node_number(node)
        if number is not None:
            return number != 0
        text = node.text.strip()
        return bool(text) and text.lower() != "false"

    def _number(self) -> int | float | Decimal | None:
        return _node_number(self._nodes[0]) if self._nodes else None

    def _operand(self) -> int | float | Decimal:
        number = self._number()
        if number is None:
            raise TypeError(
                f"{self._path()} ({str(self)!r}) is not a number (use ~ to join text)"
                if self._nodes
                else f"{self._path()} is missing, not a number"
            )
        return number

    def __eq__(self, other: object) -> bool:
        if type(other) is Ctx:
            mine, theirs = self._number(), other._number()
            if mine is not None and theirs is not None:
                return mine == theirs
            return str(self) == str(other)
        if isinstance(other, bool):
            return _boolean(self) is other
        if isinstance(other, _NUMBER_TYPES):
            number = self._number()
            return number is not None and number == other
        if isinstance(other, str):
            return str(self) == other
        if other is None:
            return not self._nodes
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        number = self._number()
        return hash(number if number is not None else str(self))

    def _order(self, other: Any, compare: Callable[[Any, Any], bool]) -> bool:
        if type(other) is Ctx:
            mine, theirs = self._number(), other._number()
            if mine is not None and theirs is not None:
                return compare(mine, theirs)
            return compare(str(self), str(other))
        if isinstance(other, _NUMBER_TYPES) and not isinstance(other, bool):
            return compare(self._operand(), other)
        if isinstance(other, str):
            return compare(str(self), other)
        return NotImplemented  # type: ignore[no-any-return] # typeshed types it Any

    def __lt__(self, other: Any) -> bool:
        return self._order(other, operator.lt)

    def __le__(self, other: Any) -> bool:
        return self._order(other, operator.le)

    def __gt__(self, other: Any) -> bool:
        return self._order(other, operator.gt)

    def __ge__(self, other: Any) -> bool:
        return self._order(other, operator.ge)

    def __int__(self) -> int:
        number = self._number()
        if number is None:
            raise ValueError(f"{self._path()} is not a number")
        # a decimal such as 1E+999999 is cheap as itself, but as an int it takes minutes
        if (
            isinstance(number, Decimal)
            and number.is_finite()
            and number.adjusted() >= MAX_INT_DIGITS
        ):
            raise TemplateFault(f"{self._path()} is a number of more than {MAX_INT_BITS} bits")
        return int(number)

    def __float__(self) -> float:
        number = self._number()
        if number is None:
            raise ValueError(f"{self._path()} is not a number")
        return float(number)

    def __round__(self, digits: int | None = None) -> Any:
        return round(self._operand(), digits)

    def __abs__(self) -> Any:
        return abs(self._operand())

    def __neg__(self) -> Any:
        return -self._operand()

    def __pos__(self) -> Any:
        return self._operand()

    def __add__(self, other: Any) -> Any:
        return arith("+", self, other)

    def __radd__(self, other: Any) -> Any:
        return arith("+", other, self)

    def __sub__(self, other: Any) -> Any:
        return arith("-", self, other)

    def __rsub__(self, other: Any) -> Any:
        return arith("-", other, self)

    def __mul__(self, other: Any) -> Any:
        return arith("*", self, other)

    def __rmul__(self, other: Any) -> Any:
        return arith("*", other, self)

    def __truediv__(self, other: Any) -> Any:
        return arith("/", self, other)

    def __rtruediv__(self, other: Any) -> Any:
        return arith("/", other, self)

    def __floordiv__(self, other: Any) -> Any:
        return arith("//", self, other)

    def __rfloordiv__(self, other: Any) -> Any:
        return arith("//", other, self)

    def __mod__(self, other: Any) -> Any:
        return arith("%", self, other)

    def __rmod__(self, other: Any) -> Any:
        return arith("%", other, self)

    def __pow__(self, other: Any) -> Any:
        return arith("**", self, other)

    def __rpow__(self, other: Any) -> Any:
        return arith("**", other, self)


_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": operator.pow,
}


def arith(symbol: str, left: Any, right: Any) -> Any:
    """``left <symbol> right`` with ctx leaves taken as numbers, bounded in size.

    Decimal (ctx numbers) mixed with float (template literals) computes in float.
    """
    if type(left) is Ctx or type(right) is Ctx:
        left = left._operand() if type(left) is Ctx else left
        right = right._operand() if type(right) is Ctx else right
        # A ctx number only meets numbers: "x" * ctx.n would build text of any size.
        for operand in (left, right):
            if not isinstance(operand, _NUMBER_TYPES):
                raise TypeError(f"cannot {symbol} a number and a {type(operand).__name__}")
    if isinstance(left, Decimal) and isinstance(right, float):
        left = float(left)
    elif isinstance(right, Decimal) and isinstance(left, float):
        right = float(right)
    if (
        symbol == "**"
        and isinstance(left, int)
        and isinstance(right, int)
        and right > 0
        and abs(left) > 1
        and abs(left).bit_length() * right > MAX_INT_BITS
    ):
        raise TemplateFault(f"{left} ** {right} is too large a number")
    result = _OPERATORS[symbol](left, right)
    if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
        raise TemplateFault(f"a number of more than {MAX_INT_BITS} bits")
    return result


def number_of(value: Any) -> int | float | Decimal | None:
    """``value`` as a number, or ``None`` when it is not one (ctx leaves are parsed)."""
    if type(value) is Ctx:
        return value._number()
    if isinstance(value, _NUMBER_TYPES) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _parse_number(value)
    return None


def path_of(value: Ctx) -> str:
    """Where ``value`` is in its tree, for error messages (``ctx.order.total``)."""
    return value._path()


def is_blank(value: Ctx) -> bool:
    """Whether ``value`` is missing or holds only whitespace (what ``|required`` refuses)."""
    return value._is_blank()


def items_of(value: Ctx) -> list[tuple[str, Ctx]]:
    """The named children of ``value`` (its first occurrence), for ``|items``."""
    return value._items()


def raw_of(value: Ctx) -> Any:
    """The value as it was given (a datetime for ``event.created``, text for XML leaves)."""
    return value._nodes[0].raw if value._nodes else None


def _node_number(node: _Node) -> int | float | Decimal | None:
    number: Any = node.number
    if number is _UNPARSED:
        raw = node.raw
        if isinstance(raw, _NUMBER_TYPES) and not isinstance(raw, bool | enum.Enum):
            number = raw
        elif isinstance(raw, str):
            number = _parse_number(raw)
        else:
            number = None
        node.number = number
    return cast(int | float | Decimal | None, number)


def _parse_number(text: str) -> int | Decimal | None:
    text = text.strip()
    if _INTEGER.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text):
        return Decimal(text)
    return None


def _boolean(value: Ctx) -> bool | None:
    """``true``/``false`` from a JSON boolean or its text; ``None`` for anything else."""
    if not value._nodes:
        return None
    raw = value._nodes[0].raw
    if isinstance(raw, bool):
        return raw
    text = value._nodes[0].text.strip().lower()
    return True if text == "true" else False if text == "false" else None


# -- loading ------------------------------------------------------------------------------


def load_ctx(text: str, ctx_format: str) -> Ctx:
    """Load an event's ctx as stored (exclusive C14N ``<ctx>`` XML, or a JSON object).

    Raises :class:`RenderProblem` (part ``ctx``) when the text cannot be read: the
    event then fails alone with that reason.
    """
    if ctx_format == "xml":
        try:
            root = parse_document(text.encode("utf-8"), max_depth=MAX_DEPTH)
        except MsgcenterError as exc:
            raise RenderProblem("ctx", f"the ctx is not usable XML: {exc.detail}") from None
        return Ctx((_from_element(root),))
    if ctx_format == "json":
        try:
            data = json.loads(text, parse_float=Decimal)
        except (ValueError, RecursionError) as exc:
            raise RenderProblem("ctx", f"the ctx is not valid JSON: {exc}") from None
        except InvalidOperation:
            # a number whose exponent no Decimal can hold (1e999999999999999999)
            raise RenderProblem("ctx", "the ctx holds a number out of range") from None
        if not isinstance(data, dict):
            raise RenderProblem("ctx", f"the ctx must be a JSON object, not {type(data).__name__}")
        return ctx_from_data(data)
    raise ValueError(f"unknown ctx format {ctx_format!r} (xml or json)")


def ctx_from_data(data: Mapping[str, Any], name: str = "ctx") -> Ctx:
    """A :class:`Ctx` over decoded JSON-like data (also used for an event's fields)."""
    try:
        if not any(str(key)[:1] in ("@", "#") for key in data):
            # The usual shape (an event's flat fields, plain JSON): skip the generic walk.
            children: dict[str, tuple[_Node, ...]] = {}
            for key, value in data.items():
                if type(value) is str:
                    children[str(key)] = (_Node(value, value, None),)
                elif value is not None:
                    occurrences = _from_data(value, 1)
                    if occurrences:
                        children[str(key)] = occurrences
            return Ctx((_Node("", "", children or None),), None, name)
        return Ctx(_from_data(data, 0), None, name)
    except RecursionError:
        raise RenderProblem("ctx", f"the ctx is nested deeper than {MAX_DEPTH} levels") from None


def _from_element(element: etree._Element) -> _Node:
    children: dict[str, list[_Node]] = {}
    for name, value in element.attrib.items():
        text = str(value)
        children.setdefault(etree.QName(name).localname, []).append(_Node(text, text, None))
    has_elements = False
    for child in element.iterchildren(etree.Element):
        children.setdefault(etree.QName(child).localname, []).append(_from_element(child))
        has_elements = True
    # the element's own text, with what follows its comments and processing instructions
    text = (element.text or "") + "".join(child.tail or "" for child in element)
    if has_elements:
        # Structure (indentation between children) has no value; mixed content reads as its text.
        text = (
            etree.tostring(element, method="text", encoding=str, with_tail=False)
            if text.strip()
            else ""
        )
    frozen = {name: tuple(nodes) for name, nodes in children.items()}
    return _Node(text, text, frozen or None)


def _from_data(value: Any, depth: int) -> tuple[_Node, ...]:
    """The occurrences ``value`` stands for: none for null, each item of a list, else one."""
    if depth > MAX_DEPTH:
        raise RecursionError
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return tuple(node for item in value for node in _from_data(item, depth + 1))
    if isinstance(value, Mapping):
        children: dict[str, tuple[_Node, ...]] = {}
        text = ""
        for key, item in value.items():
            key = str(key)
            if key == "#text":
                text = _leaf(item).text if item is not None else ""
                continue
            if key.startswith("@") and len(key) > 1:
                key = key[1:]
            occurrences = _from_data(item, depth + 1)
            if occurrences:
                children[key] = children.get(key, ()) + occurrences
        return (_Node(text, text, children or None),)
    return (_leaf(value),)


def _leaf(raw: Any) -> _Node:
    if isinstance(raw, str):
        return _Node(raw, raw, None)
    if isinstance(raw, enum.Enum):
        text = getattr(raw, "label", None) or raw.name.lower()
    elif isinstance(raw, bool):
        text = "true" if raw else "false"
    elif isinstance(raw, float):
        text = repr(raw)
    elif isinstance(raw, datetime | date | time):
        text = raw.isoformat()
    else:
        text = str(raw)
    return _Node(raw, text, None)
