"""Compile a message template once, render it for each event (SPEC §3.6, §4 "Preview").

The execution instance (sending) and the control instance (preview, proof) both
go through :func:`compile_content` and :meth:`CompiledContent.render`, so a
preview shows exactly what will be sent.

A template sees two variables: ``event`` (the event's fields of SPEC §3.1:
``event.type``, ``event.email``, ``event.external_id``, ``event.language``,
``event.created`` …, plus any unknown attribute the caller sent) and ``ctx``
(:mod:`msgcenter.render.ctx`). The HTML part autoescapes every value; the
subject, text, SMS, push and List-Unsubscribe parts are written as they are.
A push template's data (``push_data``) is a mapping of keys to small templates,
each rendered on its own as a plain-text part named ``push_data.<key>``. A line holding only
a block tag (``{% for %}``, ``{% if %}``) leaves no blank line behind
(``trim_blocks`` and ``lstrip_blocks``), which keeps text and SMS parts tidy.

Personalisation blocks are included by name, ``{% include "footer" %}`` (the
name in quotes; ``{% import "macros" as m %}`` and ``{% extends "layout" %}``
name blocks the same way). A block takes the escaping of the part that includes
it. Blocks are resolved at compilation: an unknown block or a block that
includes itself is a :class:`TemplateSyntaxProblem`, and the sources passed in
are all a compiled template will ever use (freeze :attr:`CompiledContent.blocks_used`
into the publication).
"""

from __future__ import annotations

import traceback
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from jinja2 import BaseLoader, Environment, Template, TemplateNotFound, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError

from msgcenter.render.ctx import Ctx, ctx_from_data
from msgcenter.render.errors import RenderProblem, TemplateFault, TemplateSyntaxProblem
from msgcenter.render.formats import locale_for
from msgcenter.render.legacy import translate_legacy
from msgcenter.render.limits import (
    LimitExceeded,
    RenderLimits,
    RenderState,
    enter_state,
    leave_state,
)
from msgcenter.render.sandbox import MessageEnvironment

#: the parts of a message, in the order they are rendered
PARTS = (
    "subject",
    "html",
    "text",
    "sms",
    "push_title",
    "push_body",
    "list_unsubscribe",
    "push_sound",
    "push_badge",
    "push_collapse_id",
)
#: the name of one ``push_data`` value's part: ``push_data.<key>``
PUSH_DATA_PART = "push_data."
_REFERENCES = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)


@dataclass(frozen=True)
class MessageContent:
    """A message template's sources, as designed and published; an empty part is not rendered."""

    subject: str = ""
    html: str = ""
    text: str = ""
    sms: str = ""
    push_title: str = ""
    push_body: str = ""
    #: an email's List-Unsubscribe URIs, rendered per recipient like the subject
    list_unsubscribe: str = ""
    #: a push notification's sound name, badge (renders to a whole number) and collapse id
    push_sound: str = ""
    push_badge: str = ""
    push_collapse_id: str = ""
    #: a push notification's custom data: each value a template rendered to a string
    push_data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RenderedMessage:
    """One event's message: every part rendered (``""`` where the template has none)."""

    subject: str = ""
    html: str = ""
    text: str = ""
    sms: str = ""
    push_title: str = ""
    push_body: str = ""
    list_unsubscribe: str = ""
    push_sound: str = ""
    push_badge: str = ""
    push_collapse_id: str = ""
    push_data: Mapping[str, str] = field(default_factory=dict)


class CompiledContent:
    """A compiled template, ready to render any number of events (thread-safe, reusable)."""

    def __init__(
        self,
        templates: dict[str, Template],
        environment: MessageEnvironment,
        blocks_used: frozenset[str],
    ) -> None:
        # the message's own parts, and the push data values (``push_data.<key>`` parts) apart
        self._templates = {
            part: template
            for part, template in templates.items()
            if not part.startswith(PUSH_DATA_PART)
        }
        self._data = {
            part: template
            for part, template in templates.items()
            if part.startswith(PUSH_DATA_PART)
        }
        self._environment = environment
        # Jinja merges a template's globals (a ChainMap) into each part's context, twice
        # over; the environment's are fixed, so they are merged once here
        self._globals = dict(environment.globals)
        #: the blocks the template includes, directly or through other blocks
        self.blocks_used = blocks_used
        self.limits: RenderLimits = environment.limits

    def render(
        self, event: Mapping[str, Any], ctx: Ctx | Mapping[str, Any], *, mirror_url: str = ""
    ) -> RenderedMessage:
        """Render every part for one event, whose fields are ``event`` and data ``ctx``;
        ``{{ mirror_url }}`` shows ``mirror_url`` (the message's mirror page, or "").

        Raises :class:`RenderProblem` (and nothing else) when a part cannot be
        rendered: a sandbox violation, a missing required value, a limit exceeded,
        or any error while evaluating the template.
        """
        try:
            if not isinstance(ctx, Ctx):
                ctx = ctx_from_data(ctx)
            event_view = _event_view(event)
        except RenderProblem:
            raise
        except Exception as exc:
            raise RenderProblem("event", f"the event cannot be read: {exc}") from exc
        language, country = event.get("language"), event.get("country")
        locale = locale_for(str(language) if language else None, str(country) if country else None)
        variables = {
            **self._globals,
            "event": event_view,
            "ctx": ctx,
            "mirror_url": mirror_url,
        }
        rendered: dict[str, Any] = {
            part: self._render_part(part, template, variables, RenderState(self.limits, locale))
            for part, template in self._templates.items()
        }
        if not self._data:
            return RenderedMessage(**rendered)
        data = {
            part[len(PUSH_DATA_PART) :]: self._render_part(
                part, template, variables, RenderState(self.limits, locale)
            )
            for part, template in self._data.items()
        }
        return RenderedMessage(**rendered, push_data=data)

    def _render_part(
        self, part: str, template: Template, variables: dict[str, Any], state: RenderState
    ) -> str:
        limit = self.limits.max_output_bytes
        token = enter_state(state)
        # a generator: closed below, so that a part cut short runs no more template code
        stream = self._generate(template, variables)
        chunks: list[str] = []
        size = 0
        try:
            # Streamed and counted, so an oversized part stops early instead of being built.
            for chunk in stream:
                size += len(chunk)
                if size > limit:
                    raise LimitExceeded(f"the rendered {part} exceeds {limit} bytes")
                chunks.append(chunk)
        except RenderProblem:
            raise
        except Exception as exc:  # one event must fail alone, with a reason
            raise _problem(part, exc) from exc
        finally:
            stream.close()
            leave_state(token)
        text = "".join(chunks)
        # Characters were counted; a non-ASCII text may still be over the limit in bytes.
        if size * 4 > limit and len(text.encode("utf-8")) > limit:
            raise RenderProblem(part, f"the rendered {part} exceeds {limit} bytes")
        return text

    def _generate(
        self, template: Template, variables: dict[str, Any]
    ) -> Generator[str, None, None]:
        """``template.generate(variables)`` for ``variables`` that hold the globals already:
        the parts of a message share them as the context's parent (Jinja only reads it)."""
        environment = template.environment
        context = environment.context_class(
            environment, variables, template.name, template.blocks, globals=self._globals
        )
        try:
            yield from template.root_render_func(context)
        except Exception:
            # as Template.generate: the traceback rewritten to the template's lines
            yield environment.handle_exception()


def compile_content(
    content: MessageContent,
    blocks: Mapping[str, str] | None = None,
    *,
    limits: RenderLimits | None = None,
) -> CompiledContent:
    """Compile every non-empty part of ``content`` with the personalisation ``blocks`` it includes.

    Model-product tags are translated first (:mod:`msgcenter.render.legacy`).
    Raises :class:`TemplateSyntaxProblem` naming the part (or ``block:<name>``),
    the line and the reason: a syntax error, an unknown filter, an unknown or
    self-including block, a tag that cannot be translated.
    """
    limits = limits or RenderLimits()
    blocks = dict(blocks or {})
    parts = {part: getattr(content, part) for part in PARTS if getattr(content, part)}
    parts.update(
        (f"{PUSH_DATA_PART}{key}", source) for key, source in content.push_data.items() if source
    )
    sources = {f"part:{part}": translate_legacy(source, part) for part, source in parts.items()}
    environment = MessageEnvironment(limits, _Sources(sources), _is_html, _join_path)

    needed: set[str] = set()  # template names ("html:footer", "plain:footer") to compile
    translated: dict[str, str] = {}
    references: dict[str, list[tuple[str, int]]] = {}

    def block_source(name: str) -> str:
        if name not in translated:
            translated[name] = translate_legacy(blocks[name], f"block:{name}")
            sources[f"html:{name}"] = sources[f"plain:{name}"] = translated[name]
        return translated[name]

    def follow(label: str, source: str, mode: str, chain: tuple[str, ...]) -> None:
        if label not in references:
            references[label] = _references(environment, label, source)
        for name, line in references[label]:
            if name not in blocks:
                known = ", ".join(sorted(blocks)) or "none"
                raise TemplateSyntaxProblem(
                    label, f"unknown block {name!r} (blocks: {known})", line=line
                )
            if name in chain:
                loop = " → ".join((*chain, name))
                raise TemplateSyntaxProblem(
                    label, f"block {name!r} includes itself ({loop})", line=line
                )
            if f"{mode}:{name}" not in needed:
                needed.add(f"{mode}:{name}")
                follow(f"block:{name}", block_source(name), mode, (*chain, name))

    for part in parts:
        follow(part, sources[f"part:{part}"], "html" if part == "html" else "plain", ())

    templates = {part: _compile(environment, f"part:{part}") for part in parts}
    for name in sorted(needed):
        _compile(environment, name)
    return CompiledContent(templates, environment, frozenset(translated))


class _Sources(BaseLoader):
    """The parts and blocks of one content, by template name; nothing else exists."""

    def __init__(self, sources: dict[str, str]) -> None:
        self._sources = sources

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Any]:
        if template not in self._sources:
            raise TemplateNotFound(template)
        return self._sources[template], template, lambda: True


def _is_html(name: str | None) -> bool:
    """Autoescape the HTML part and the blocks it includes."""
    return name is not None and (name == "part:html" or name.startswith("html:"))


def _join_path(template: str, parent: str) -> str:
    # A block is compiled once per escaping mode and takes the mode of its includer.
    return ("html:" if _is_html(parent) else "plain:") + template


def _label(name: str | None) -> str:
    """``part:html`` → ``html``; ``plain:footer`` → ``block:footer``."""
    kind, _, key = (name or "").partition(":")
    return key if kind == "part" else f"block:{key}"


def _references(environment: Environment, label: str, source: str) -> list[tuple[str, int]]:
    """The blocks ``source`` includes, imports or extends, with their lines."""
    try:
        tree = environment.parse(source, name=label)
    except TemplateSyntaxError as exc:
        raise TemplateSyntaxProblem(label, exc.message or "syntax error", line=exc.lineno) from None
    except RecursionError:
        raise TemplateSyntaxProblem(label, "the template is nested too deeply", line=None) from None
    found = []
    for node in tree.find_all(_REFERENCES):
        target = cast(
            nodes.Include | nodes.Import | nodes.FromImport | nodes.Extends, node
        ).template
        if not (isinstance(target, nodes.Const) and isinstance(target.value, str)):
            raise TemplateSyntaxProblem(
                label, 'a block is named in quotes, e.g. {% include "footer" %}', line=node.lineno
            )
        found.append((target.value, node.lineno))
    return found


def _compile(environment: Environment, name: str) -> Template:
    try:
        return environment.get_template(name)
    except TemplateSyntaxError as exc:
        raise TemplateSyntaxProblem(
            _label(exc.name or name), exc.message or "syntax error", line=exc.lineno
        ) from None
    except RecursionError:
        raise TemplateSyntaxProblem(
            _label(name), "the template is nested too deeply", line=None
        ) from None


def _event_view(event: Mapping[str, Any]) -> Ctx:
    """The event's fields as a navigable value; unknown attributes (``extra``) join them."""
    values = {key: value for key, value in event.items() if key not in ("ctx", "extra")}
    extra = event.get("extra")
    if isinstance(extra, Mapping):
        for key, value in extra.items():
            values.setdefault(key, value)
    return ctx_from_data(values, name="event")


def _problem(part: str, exc: BaseException) -> RenderProblem:
    """The :class:`RenderProblem` for an error raised while rendering ``part``."""
    if isinstance(exc, TemplateFault):
        reason = str(exc)
    elif isinstance(exc, SecurityError):
        reason = f"sandbox violation: {exc}"
    elif isinstance(exc, UndefinedError):
        reason = str(exc)
    elif isinstance(exc, RecursionError):
        reason = "too much recursion (a macro calling itself without end?)"
    elif isinstance(exc, MemoryError):
        reason = "out of memory"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    line, where = _location(part, exc)
    if where is not None:
        reason = f"{where}: {reason}"
    return RenderProblem(part, reason, line=line)


def _location(part: str, exc: BaseException) -> tuple[int | None, str | None]:
    """The part's line where ``exc`` happened, and the block and line if it was inside one."""
    line = innermost = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        filename = frame.f_code.co_filename
        if filename == f"part:{part}":
            line, innermost = lineno, None
        elif filename.startswith(("html:", "plain:")):
            innermost = f"in {_label(filename)}, line {lineno}"
    return line, innermost
