"""How much one render may do: the limits, and the per-render budget that enforces them.

A template is written by an operator, but it runs for every event with data the
operator does not control, so every way of making a lot of text or a lot of work
is bounded: loop iterations and macro calls, ``range()``, each string or list
built along the way, the text written into buffers (macros, ``{% set %}``
blocks) and the final output of each part.
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from jinja2 import Undefined
from pydantic import BaseModel, ConfigDict, Field

from msgcenter.render.ctx import Ctx
from msgcenter.render.errors import TemplateFault
from msgcenter.render.formats import FormatLocale

#: text written into intermediate buffers may reach this many times the output limit
WORK_FACTOR = 4


class RenderLimits(BaseModel):
    """Bounds on one rendered part (each part of a message has its own)."""

    model_config = ConfigDict(frozen=True)

    #: largest rendered part, in UTF-8 bytes; also the largest string built while rendering
    max_output_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: most items one ``range()`` may produce, and the longest list a template may build
    max_range: int = Field(default=10_000, ge=10)
    #: most loop iterations plus macro calls in one part
    max_iterations: int = Field(default=100_000, ge=100)


class LimitExceeded(TemplateFault):
    """A render went over one of its :class:`RenderLimits`."""


class RenderState:
    """What one part's render may still spend, and the locale it formats with."""

    __slots__ = ("limits", "locale", "ticks_left", "work_left")

    def __init__(self, limits: RenderLimits, locale: FormatLocale) -> None:
        self.limits = limits
        self.locale = locale
        self.ticks_left = limits.max_iterations
        self.work_left = limits.max_output_bytes * WORK_FACTOR

    def tick(self) -> None:
        """Count one loop iteration or macro call."""
        self.ticks_left -= 1
        if self.ticks_left < 0:
            raise LimitExceeded(
                f"more than {self.limits.max_iterations} loop iterations and macro calls"
            )

    def spend(self, chars: int) -> None:
        """Count ``chars`` characters written into an intermediate buffer."""
        self.work_left -= chars
        if self.work_left < 0:
            raise LimitExceeded(
                f"the template builds more than {self.limits.max_output_bytes * WORK_FACTOR} "
                "characters of intermediate text (macros, set blocks, filter blocks)"
            )


#: the state of the render running in this thread or task (set by CompiledContent.render)
_STATE: ContextVar[RenderState] = ContextVar("msgcenter_render_state")


def current_state() -> RenderState:
    """The running render's state; ``LookupError`` outside a render (e.g. constant folding)."""
    return _STATE.get()


def enter_state(state: RenderState) -> Any:
    """Make ``state`` current; returns the token :func:`leave_state` needs."""
    return _STATE.set(state)


def leave_state(token: Any) -> None:
    _STATE.reset(token)


#: values that may be written out or used as text; anything else (lists, dicts,
#: namespaces) is refused because its text form has no useful meaning in a
#: message and no bound on its size
_SCALARS = (str, int, float, Decimal, date, datetime, time, Undefined)


def is_scalar(value: Any) -> bool:
    """Whether ``value`` may be written out or used as text."""
    return value is None or isinstance(value, _SCALARS) or type(value) is Ctx


def as_text(value: Any) -> str:
    """``value`` as text for a string filter; refuses containers (see ``_SCALARS``)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if is_scalar(value):
        return str(value)
    raise TemplateFault(
        f"a {type(value).__name__} cannot be used as text; loop over it or use |join"
    )


def check_text_size(length: int, limits: RenderLimits, what: str = "a string") -> None:
    """Refuse to build ``what`` of ``length`` characters when it exceeds the output limit."""
    if length > limits.max_output_bytes:
        raise LimitExceeded(
            f"{what} of {length} characters exceeds the limit of {limits.max_output_bytes}"
        )


def check_list_size(length: int, limits: RenderLimits) -> None:
    """Refuse to build a list longer than ``max_range`` items."""
    if length > limits.max_range:
        raise LimitExceeded(f"a list of {length} items exceeds the limit of {limits.max_range}")


def check_result(value: Any, limits: RenderLimits) -> Any:
    """``value`` unchanged, when a string or list of its size is allowed."""
    if isinstance(value, str):
        check_text_size(len(value), limits)
    elif isinstance(value, list | tuple):
        check_list_size(len(value), limits)
    return value
