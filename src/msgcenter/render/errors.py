"""The two errors personalisation raises (SPEC §3.6).

:class:`TemplateSyntaxProblem` is raised once, at publication or preview, when a
template cannot be compiled; :class:`RenderProblem` is raised for one event whose
message cannot be rendered, and fails that event alone.
"""

from __future__ import annotations

from msgcenter.errors import InvalidInputError, MsgcenterError


class TemplateSyntaxProblem(InvalidInputError):
    """A template part or block cannot be compiled.

    ``part`` is ``subject``, ``html``, ``text``, ``sms``, ``push_title``,
    ``push_body``, or ``block:<name>`` for a personalisation block; ``line`` and
    ``column`` (1-based, ``column`` when known) locate the problem in that source.
    """

    code = "template-syntax"

    def __init__(self, part: str, reason: str, *, line: int | None, column: int | None = None):
        where = part
        if line is not None:
            where += f", line {line}"
            if column is not None:
                where += f", column {column}"
        super().__init__(f"template error in {part}", detail=f"{where}: {reason}")
        self.part = part
        self.reason = reason
        self.line = line
        self.column = column


class RenderProblem(MsgcenterError):
    """One event's message cannot be rendered; permanent for that event, retrying won't help.

    ``part`` names the part being rendered (or ``ctx`` when the event's ctx cannot
    be read), ``reason`` says why, ``line`` is the template line when known.
    """

    code = "render-failed"

    def __init__(self, part: str, reason: str, *, line: int | None = None) -> None:
        where = f"{part}, line {line}" if line is not None else part
        super().__init__(f"cannot render {part}", detail=f"{where}: {reason}")
        self.part = part
        self.reason = reason
        self.line = line


class TemplateFault(Exception):
    """Raised inside a render by msgcenter's own guards and filters; its message is the reason.

    Internal: :meth:`CompiledContent.render` turns it into a :class:`RenderProblem`.
    """
