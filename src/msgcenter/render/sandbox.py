"""The Jinja environment templates run in: Jinja's immutable sandbox, bounded (SPEC §3.6).

On top of :class:`jinja2.sandbox.ImmutableSandboxedEnvironment` (no ``_``
attributes, no internals, no mutation of lists and dicts):

- an unsafe attribute is an error at once, not an empty value that renders as "";
- ``ctx`` and ``event`` values (:class:`Ctx`) expose data only, never Python
  attributes (``ctx.a.b.c`` is one call, the hottest path of a render);
- the generated code counts every loop iteration and macro call, and every
  character written into a buffer (macros, ``{% set %}`` and filter blocks), so
  nested loops and recursion stop at :class:`RenderLimits` instead of hanging;
- ``range()``, ``*``, ``+``, ``%``, ``**``, ``~`` and string methods that can
  multiply text check the size of their result before building it;
- only scalars (text, numbers, dates, ctx values) can be written out: a list or a
  dict has no meaning in a message and no bound on its text form;
- there is no file system or network: templates come from memory only
  (:mod:`msgcenter.render.templates` hands in the parts and blocks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from jinja2 import BaseLoader, ChainableUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Cycler, Joiner, Namespace
from markupsafe import Markup

from msgcenter.render.ctx import Ctx, arith
from msgcenter.render.errors import TemplateFault
from msgcenter.render.filters import build_filters, build_tests, check_printf
from msgcenter.render.limits import (
    RenderLimits,
    RenderState,
    as_text,
    check_list_size,
    check_result,
    check_text_size,
    current_state,
    is_scalar,
)

#: str methods that can make a string much longer than their inputs; the filters
#: of the same name (``|center``, ``|join``, ``|replace``, ``|format``) check sizes
_GROWING_STR_METHODS = frozenset(
    {
        "center",
        "expandtabs",
        "format",
        "format_map",
        "join",
        "ljust",
        "replace",
        "rjust",
        "translate",
        "zfill",
    }
)
_SEQUENCES = (str, list, tuple)


class _GuardedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with budget checks woven into the generated Python."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        _tick_first(node.body, node.lineno)
        super().visit_For(node, frame)

    def macro_body(self, node: nodes.Macro | nodes.CallBlock, frame: Frame) -> Any:
        _tick_first(node.body, node.lineno)
        return super().macro_body(node, frame)

    def visit_ExprStmt(self, node: nodes.ExprStmt, frame: Frame) -> None:
        if _is_tick(node):
            self.writeline("environment.guard_tick()", node)
        else:
            super().visit_ExprStmt(node, frame)

    @optimizeconst
    def visit_Getattr(self, node: nodes.Getattr, frame: Frame) -> None:
        attributes = []
        base: nodes.Node = node
        while isinstance(base, nodes.Getattr):
            attributes.append(base.attr)
            base = base.node
        if len(attributes) == 1:
            super().visit_Getattr(node, frame)
            return
        self.write("environment.getattr_path(")
        self.visit(base, frame)
        self.write(f", {tuple(reversed(attributes))!r})")

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        # One call per {{ … }}: finalize and escape together (see MessageEnvironment.write_html).
        if frame.eval_ctx.volatile:
            super()._output_child_pre(node, frame, finalize)
        elif frame.eval_ctx.autoescape:
            self.write("environment.write_html(")
        else:
            self.write("environment.write_text(")

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if frame.eval_ctx.volatile:
            super()._output_child_post(node, frame, finalize)
        else:
            self.write(")")

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.guard_buffer()")

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # As Jinja's, but the parts reach the size check before they are joined.
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"environment.guard_concat({join}, (")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write("))")


def _tick_first(body: list[nodes.Node], lineno: int) -> None:
    """Put a tick first in ``body`` (one unit of work), once."""
    # Jinja forbids new node types; a statement naming the hook marks the spot.
    if not (body and _is_tick(body[0])):
        body.insert(0, nodes.ExprStmt(nodes.EnvironmentAttribute("guard_tick"), lineno=lineno))


def _is_tick(node: nodes.Node) -> bool:
    return (
        isinstance(node, nodes.ExprStmt)
        and isinstance(node.node, nodes.EnvironmentAttribute)
        and node.node.name == "guard_tick"
    )


class _Buffer(list[str]):
    """A generated-code output buffer that charges what is written to the render's budget."""

    __slots__ = ("_state",)

    def __init__(self, state: RenderState) -> None:
        super().__init__()
        self._state = state

    def append(self, text: str) -> None:
        self._state.spend(len(text))
        super().append(text)

    def extend(self, texts: Any) -> None:
        texts = tuple(texts)
        self._state.spend(sum(len(text) for text in texts))
        super().extend(texts)


def _finalize(value: Any) -> Any:
    """What ``{{ value }}`` writes: a ctx value's text, ``""`` for ``None``; containers are refused."""
    kind = type(value)
    if kind is Ctx:
        # Its text, so that escaping takes markupsafe's fast path for str.
        return value._nodes[0].text if value._nodes else ""
    if kind is str or kind is Markup:
        return value
    if value is None:
        return ""
    if is_scalar(value):
        return value
    raise TemplateFault(
        f"a {type(value).__name__} cannot be written out; loop over it or use |join"
    )


def _escape(text: str) -> str:
    """HTML-escape ``text`` exactly as markupsafe does, without building a Markup object."""
    if "&" in text or "<" in text or ">" in text or '"' in text or "'" in text:
        return (
            text.replace("&", "&amp;")
            .replace("<", "&lt;")
            .replace(">", "&gt;")
            .replace('"', "&#34;")
            .replace("'", "&#39;")
        )
    return text


class MessageEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox for one compiled content: its limits, its in-memory loader, its escaping."""

    code_generator_class = _GuardedCodeGenerator
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(
        self,
        limits: RenderLimits,
        loader: BaseLoader,
        autoescape: Callable[[str | None], bool],
        join_path: Callable[[str, str], str],
    ) -> None:
        super().__init__(
            loader=loader,
            autoescape=autoescape,
            undefined=ChainableUndefined,
            finalize=_finalize,
            # Block tags on their own line leave no blank line behind (matters in text and SMS).
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
            cache_size=-1,
        )
        self.limits = limits
        self._join_path = join_path
        self.filters = build_filters(limits)
        self.tests = build_tests()  # type: ignore[assignment] # jinja2 infers dict[str, function]
        # No lipsum (unbounded text); range is msgcenter's, bounded by the limits.
        self.globals = {
            "range": self._range,
            "dict": dict,
            "cycler": Cycler,
            "joiner": Joiner,
            "namespace": Namespace,
        }

    def join_path(self, template: str, parent: str) -> str:
        return self._join_path(template, parent)

    # -- attribute access ----------------------------------------------------------------

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is Ctx:
            if attribute.startswith("_"):
                # Data keys starting with "_" are reached with ctx["_name"].
                raise SecurityError(f"access to attribute {attribute!r} of 'Ctx' object is unsafe")
            return obj._child(attribute)
        return super().getattr(obj, attribute)

    def getattr_path(self, obj: Any, attributes: tuple[str, ...]) -> Any:
        """``obj.a.b.c`` in one call (the generated code's most frequent operation)."""
        for attribute in attributes:
            if type(obj) is Ctx and attribute[0] != "_":
                kids = obj._kids
                found = kids.get(attribute) if kids is not None else None
                obj = found if found is not None else obj._child(attribute)
            else:
                obj = self.getattr(obj, attribute)
        return obj

    def getitem(self, obj: Any, argument: Any) -> Any:
        if type(obj) is Ctx:
            return obj[argument]
        return super().getitem(obj, argument)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        # Jinja returns an undefined value that renders as "": an attempt must fail instead.
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
        )

    # -- calls and operators -------------------------------------------------------------

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        # The sandbox hands out str.format wrapped; the bound method is in __wrapped__.
        method = getattr(obj, "__wrapped__", obj)
        owner = getattr(method, "__self__", None)
        if isinstance(owner, str) and getattr(method, "__name__", "") in _GROWING_STR_METHODS:
            raise SecurityError(
                f"str.{method.__name__}() is not available in templates; use the filter instead"
            )
        return check_result(super().call(context, obj, *args, **kwargs), self.limits)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        limits = self.limits
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if isinstance(sequence, _SEQUENCES):
                    if type(times) is Ctx:
                        times = int(times)
                    if not isinstance(times, int):
                        raise TypeError(
                            f"cannot repeat a {type(sequence).__name__} {times!r} times"
                        )
                    size = len(sequence) * max(times, 0)
                    if isinstance(sequence, str):
                        check_text_size(size, limits)
                    else:
                        check_list_size(size, limits)
                    return sequence * times
        elif operator == "+":
            if isinstance(left, str) and isinstance(right, str):
                check_text_size(len(left) + len(right), limits)
                return left + right
            if isinstance(left, list) and isinstance(right, list):
                check_list_size(len(left) + len(right), limits)
                return left + right
            if isinstance(left, tuple) and isinstance(right, tuple):
                check_list_size(len(left) + len(right), limits)
                return left + right
        elif operator == "%" and isinstance(left, str):
            check_printf(left, right, limits)
            return left % right
        return arith(operator, left, right)

    def _range(self, *args: Any) -> range:
        """``range()`` with at most ``max_range`` items."""
        numbers = [int(arg) if type(arg) is Ctx else arg for arg in args]
        items = range(*numbers)
        if len(items) > self.limits.max_range:
            raise TemplateFault(
                f"range() of {len(items)} items exceeds the limit of {self.limits.max_range}"
            )
        return items

    # -- hooks called by the generated code ----------------------------------------------

    def write_html(self, value: Any) -> str:
        """What ``{{ value }}`` writes in an HTML part: its text, escaped unless already markup."""
        kind = type(value)
        if kind is Ctx:
            text = value._nodes[0].text if value._nodes else ""
        elif kind is str:
            text = value
        elif kind is Markup:
            return cast(str, value)
        else:
            value = _finalize(value)
            if hasattr(value, "__html__"):
                return cast(str, value.__html__())
            text = str(value)
        return _escape(text)

    def write_text(self, value: Any) -> str:
        """What ``{{ value }}`` writes in a subject, text, SMS or push part."""
        kind = type(value)
        if kind is Ctx:
            return cast(str, value._nodes[0].text) if value._nodes else ""
        if kind is str:
            return cast(str, value)
        return str(_finalize(value))

    def guard_tick(self) -> None:
        current_state().tick()

    def guard_buffer(self) -> _Buffer:
        return _Buffer(current_state())

    def guard_concat(self, join: Callable[[Any], str], values: tuple[Any, ...]) -> str:
        size = 0
        for value in values:
            size += len(value) if isinstance(value, str) else len(as_text(value))
        check_text_size(size, self.limits)
        return join(values)
