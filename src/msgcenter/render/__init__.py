"""Personalisation: sandboxed Jinja templates over an event and its ctx (SPEC §3.6).

One module for both roles: the execution instance renders messages to send, the
control instance renders previews and proofs, through the same code::

    compiled = compile_content(MessageContent(subject=..., html=..., text=...), blocks)
    message = compiled.render(event_fields, load_ctx(event_ctx_text, "xml"))

Compile once per publication; render per event. Compilation raises
:class:`TemplateSyntaxProblem`; rendering raises only :class:`RenderProblem`.
"""

from msgcenter.render.ctx import Ctx, ctx_from_data, load_ctx
from msgcenter.render.errors import RenderProblem, TemplateSyntaxProblem
from msgcenter.render.legacy import translate_legacy
from msgcenter.render.limits import RenderLimits
from msgcenter.render.templates import (
    PARTS,
    CompiledContent,
    MessageContent,
    RenderedMessage,
    compile_content,
)

__all__ = [
    "PARTS",
    "CompiledContent",
    "Ctx",
    "MessageContent",
    "RenderLimits",
    "RenderProblem",
    "RenderedMessage",
    "TemplateSyntaxProblem",
    "compile_content",
    "ctx_from_data",
    "load_ctx",
    "translate_legacy",
]
