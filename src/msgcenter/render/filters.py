"""The filters and tests templates may use (SPEC §3.6).

msgcenter's own filters format per the event's locale (its ``language``, refined
by its ``country``; ``en`` when neither is usable), with babel:

- ``value|number`` / ``value|number(2)``: a decimal number (``1,234.5`` / ``1 234,50``);
- ``value|currency("EUR")``: an amount of a currency (``€12.50`` / ``12,50 €``);
- ``value|date``, ``value|datetime``, ``value|time``: with an optional format
  (``"short"``, ``"medium"`` (default), ``"long"``, ``"full"`` or an LDML pattern
  such as ``"dd/MM/yyyy"``) and time zone (``tz="Europe/Paris"``); the value is a
  datetime or ISO 8601 text;
- ``value|required``: the value, or a render error naming the missing path;
- ``|urlencode`` (Jinja's) percent-encodes text for a URL.

A missing value formats as ``""``. Jinja's built-in filters are available too,
made aware of ctx values (``default`` replaces a missing one, ``length`` counts
occurrences, ``items`` and ``dictsort`` list an element's children, string
filters take its text) and bounded in size (``center``, ``indent``, ``wordwrap``,
``replace``, ``format``, ``join``, ``batch``, ``slice`` and ``sum`` check their
arguments first); ``pprint``, ``tojson``, ``urlize`` and ``xmlattr`` are left out.
The tests ``defined``, ``undefined`` and ``number`` understand ctx values too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import lru_cache
from typing import Any, cast

from babel import dates as babel_dates
from jinja2 import Undefined, pass_environment, pass_eval_context
from jinja2 import filters as jinja_filters
from jinja2.filters import make_attrgetter
from jinja2.nodes import EvalContext
from markupsafe import escape

from msgcenter.render import formats
from msgcenter.render.ctx import Ctx, arith, is_blank, items_of, number_of, path_of, raw_of
from msgcenter.render.errors import TemplateFault
from msgcenter.render.formats import FormatLocale
from msgcenter.render.limits import (
    RenderLimits,
    as_text,
    check_list_size,
    check_result,
    check_text_size,
    current_state,
)

#: Jinja filters whose first argument is text: a ctx value is passed as its text
_TEXT_FILTERS = (
    "capitalize",
    "e",
    "escape",
    "forceescape",
    "lower",
    "safe",
    "string",
    "striptags",
    "title",
    "trim",
    "truncate",
    "upper",
    "urlencode",
    "wordcount",
)
#: Jinja filters kept as they are (their output is no larger than their input)
_PLAIN_FILTERS = (
    "abs",
    "count",
    "filesizeformat",
    "first",
    "float",
    "groupby",
    "int",
    "last",
    "length",
    "list",
    "map",
    "max",
    "min",
    "random",
    "reject",
    "rejectattr",
    "reverse",
    "round",
    "select",
    "selectattr",
    "sort",
    "unique",
)
#: printf widths and precisions (``%10s``, ``%.3f``, ``%*d``)
_PRINTF_SIZES = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|[0-9]+)?(?:\.(\*|[0-9]+))?")


class RequiredValueMissing(TemplateFault):
    """``|required`` met a missing or empty value."""


def _locale() -> FormatLocale:
    return current_state().locale


def _is_missing(value: Any) -> bool:
    return value is None or isinstance(value, Undefined) or (type(value) is Ctx and is_blank(value))


def _describe(value: Any) -> str:
    if type(value) is Ctx:
        return f"{path_of(value)} ({str(value)!r})"
    return repr(value)


# -- msgcenter's filters -----------------------------------------------------------------


def required(value: Any) -> Any:
    """``value`` itself, or a render error when it is missing or empty."""
    if type(value) is Ctx:
        if is_blank(value):
            raise RequiredValueMissing(f"required value {path_of(value)} is missing or empty")
    elif isinstance(value, Undefined):
        raise RequiredValueMissing(f"required value {value._undefined_name or 'value'} is missing")
    elif value is None or (isinstance(value, str) and not value.strip()):
        raise RequiredValueMissing("a required value is missing or empty")
    return value


def _decimal(value: Any) -> int | float | Decimal:
    number = number_of(value)
    if number is None:
        raise TemplateFault(f"{_describe(value)} is not a number")
    return number


def number(value: Any, digits: int | None = None) -> str:
    """A decimal number in the event's locale, with ``digits`` fraction digits if given."""
    if _is_missing(value):
        return ""
    if digits is not None and not 0 <= int(digits) <= 20:
        raise TemplateFault("number(digits) must be between 0 and 20")
    return formats.format_number(
        _decimal(value), _locale(), None if digits is None else int(digits)
    )


def currency(value: Any, code: str) -> str:
    """An amount in currency ``code`` (ISO 4217) in the event's locale."""
    if _is_missing(value):
        return ""
    return formats.format_currency(_decimal(value), _currency_code(as_text(code)), _locale())


@lru_cache(maxsize=256)
def _currency_code(code: str) -> str:
    code = code.strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise TemplateFault(f"{code!r} is not an ISO 4217 currency code")
    return code


def _moment(value: Any) -> date | datetime | time:
    raw = raw_of(value) if type(value) is Ctx else value
    if isinstance(raw, date | time):
        return raw
    text = as_text(value).strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text)
    except ValueError:
        raise TemplateFault(
            f"{_describe(value)} is not a date or time (ISO 8601 expected)"
        ) from None


def _zone(tz: str | None) -> Any:
    if tz is None:
        return None
    try:
        return babel_dates.get_timezone(as_text(tz))
    except LookupError:
        raise TemplateFault(f"unknown time zone {tz!r}") from None


def _in_zone(moment: datetime, tz: str | None) -> datetime:
    zone = _zone(tz)
    if zone is None:
        return moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone)


def format_date(value: Any, format: str = "medium", tz: str | None = None) -> str:
    """The date part of ``value`` in the event's locale."""
    if _is_missing(value):
        return ""
    moment = _moment(value)
    if isinstance(moment, time):
        raise TemplateFault(f"{_describe(value)} is a time, not a date")
    if isinstance(moment, datetime):
        moment = _in_zone(moment, tz).date()
    return formats.format_date(moment, as_text(format), _locale())


def format_datetime(value: Any, format: str = "medium", tz: str | None = None) -> str:
    """``value`` as a date and time in the event's locale (in ``tz`` when given)."""
    if _is_missing(value):
        return ""
    moment = _moment(value)
    if isinstance(moment, time):
        raise TemplateFault(f"{_describe(value)} is a time, not a date and time")
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day)
    return formats.format_datetime(_in_zone(moment, tz), as_text(format), _locale())


def format_time(value: Any, format: str = "medium", tz: str | None = None) -> str:
    """The time of day of ``value`` in the event's locale (in ``tz`` when given)."""
    if _is_missing(value):
        return ""
    moment = _moment(value)
    if isinstance(moment, datetime):
        moment = _in_zone(moment, tz).timetz()
    elif not isinstance(moment, time):
        raise TemplateFault(f"{_describe(value)} is a date without a time")
    return formats.format_time(moment, as_text(format), _locale())


def default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    """``default_value`` when ``value`` is missing (or false, with ``boolean=True``)."""
    if isinstance(value, Undefined) or (type(value) is Ctx and not len(value)):
        return default_value
    if boolean and not value:
        return default_value
    return value


def items(value: Any) -> Any:
    """``(name, value)`` pairs of a ctx element or a mapping."""
    if type(value) is Ctx:
        return items_of(value)
    return jinja_filters.do_items(value)


@pass_environment
def attr(environment: Any, value: Any, name: Any) -> Any:
    """``value.<name>`` for a name held in a variable, through the sandbox."""
    return environment.getattr(value, as_text(name))


def dictsort(value: Any, *args: Any, **kwargs: Any) -> Any:
    """Jinja's ``dictsort``, also over a ctx element's children."""
    if type(value) is Ctx:
        value = dict(items_of(value))
    return jinja_filters.do_dictsort(value, *args, **kwargs)


# -- Jinja's filters, bounded -----------------------------------------------------------


def _bounded_filters(limits: RenderLimits) -> dict[str, Callable[..., Any]]:
    """Jinja filters that can multiply their input, with their arguments checked first."""
    return {**_bounded_text_filters(limits), **_bounded_list_filters(limits)}


def _bounded_text_filters(limits: RenderLimits) -> dict[str, Callable[..., Any]]:
    """The text filters whose output can outgrow their input: the size is checked first."""

    def center_(value: Any, width: int = 80) -> str:
        text = as_text(value)
        check_text_size(int(width), limits, "a centred string")
        return text.center(int(width))

    def indent_(value: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
        text = as_text(value)
        pad = len(width) if isinstance(width, str) else int(width)
        check_text_size(len(text) + (text.count("\n") + 1) * pad, limits, "an indented string")
        return jinja_filters.do_indent(text, width, first, blank)

    @pass_environment
    def wordwrap_(
        env: Any,
        value: Any,
        width: int = 79,
        break_long_words: bool = True,
        wrapstring: str | None = None,
        break_on_hyphens: bool = True,
    ) -> str:
        text = as_text(value)
        separator = len(wrapstring) if wrapstring is not None else 1
        lines = len(text) // max(int(width), 1) + text.count("\n") + 1
        check_text_size(len(text) + lines * separator, limits, "a wrapped string")
        return jinja_filters.do_wordwrap(
            env, text, width, break_long_words, wrapstring, break_on_hyphens
        )

    @pass_eval_context
    def replace_(
        eval_ctx: EvalContext, value: Any, old: str, new: str, count: int | None = None
    ) -> str:
        text = value if isinstance(value, str) else as_text(value)
        old, new = as_text(old), as_text(new)
        times = text.count(old) if old else len(text) + 1
        if count is not None:
            times = min(times, max(int(count), 0))
        added = len(escape(new)) if eval_ctx.autoescape else len(new)
        check_text_size(len(text) + times * added, limits, "a replaced string")
        return jinja_filters.do_replace(eval_ctx, text, old, new, count)

    def format_(value: Any, *args: Any, **kwargs: Any) -> str:
        template = as_text(value)
        check_printf(template, kwargs or args, limits)
        return jinja_filters.do_format(template, *args, **kwargs)

    @pass_eval_context
    def join_(
        eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: Any = None
    ) -> str:
        if attribute is not None:
            value = map(make_attrgetter(eval_ctx.environment, attribute), value)
        parts = [v if isinstance(v, str) else as_text(v) for v in value]
        separator = as_text(d)
        check_text_size(
            sum(map(len, parts)) + len(separator) * max(len(parts) - 1, 0),
            limits,
            "a joined string",
        )
        # do_join gives Markup in an autoescaped part: keep it, str() would strip it
        return cast(str, jinja_filters.do_join(eval_ctx, parts, separator))

    return {
        "center": center_,
        "indent": indent_,
        "wordwrap": wordwrap_,
        "replace": replace_,
        "format": format_,
        "join": join_,
    }


def _bounded_list_filters(limits: RenderLimits) -> dict[str, Callable[..., Any]]:
    """The filters that build lists or sums: counts checked first, sums of numbers only."""

    def batch_(value: Any, linecount: int, fill_with: Any = None) -> Any:
        check_list_size(int(linecount), limits)
        return jinja_filters.do_batch(value, linecount, fill_with)

    def slice_(value: Any, slices: int, fill_with: Any = None) -> Any:
        check_list_size(int(slices), limits)
        return jinja_filters.do_slice(value, slices, fill_with)

    @pass_environment
    def sum_(env: Any, iterable: Iterable[Any], attribute: Any = None, start: Any = 0) -> Any:
        # Numbers only: summing lists or strings would build unbounded values quadratically.
        if attribute is not None:
            iterable = map(make_attrgetter(env, attribute), iterable)
        total = start
        for index, item in enumerate((start, *iterable)):
            if number_of(item) is None:
                raise TemplateFault(f"sum() of {_describe(item)}: only numbers can be summed")
            if index:
                total = arith("+", total, item)
        return total

    return {"batch": batch_, "slice": slice_, "sum": sum_}


def check_printf(template: str, args: Any, limits: RenderLimits) -> None:
    """Refuse a ``%`` format whose result could exceed the output limit."""
    if "%" not in template:
        return
    size = len(template)
    for found in _PRINTF_SIZES.finditer(template):
        for number in found.groups():
            if number == "*":
                raise TemplateFault("'*' widths are not allowed in % formats")
            if number:
                size += int(number)
    values = (
        args.values() if isinstance(args, dict) else args if isinstance(args, tuple) else (args,)
    )
    for value in values:
        size += len(as_text(value))
    check_text_size(size, limits, "a formatted string")


def _checked(
    function: Callable[..., Any], limits: RenderLimits, *, text: bool
) -> Callable[..., Any]:
    """``function`` with its value argument taken as text (if ``text``) and its result bounded."""
    pass_arg = getattr(function, "jinja_pass_arg", None)
    skip = 1 if pass_arg is not None else 0

    def filter_(*args: Any, **kwargs: Any) -> Any:
        if text and len(args) > skip and not isinstance(args[skip], str):
            args = (*args[:skip], as_text(args[skip]), *args[skip + 1 :])
        return check_result(function(*args, **kwargs), limits)

    if pass_arg is not None:
        filter_.jinja_pass_arg = pass_arg  # type: ignore[attr-defined] # the mark jinja2 reads
    filter_.__name__ = getattr(function, "__name__", "filter")
    filter_.__doc__ = function.__doc__
    return filter_


def build_filters(limits: RenderLimits) -> dict[str, Callable[..., Any]]:
    """Every filter a template may use, each bounded by ``limits``."""
    builtin = jinja_filters.FILTERS
    found: dict[str, Callable[..., Any]] = {}
    for name in _TEXT_FILTERS:
        found[name] = _checked(builtin[name], limits, text=True)
    for name in _PLAIN_FILTERS:
        found[name] = _checked(builtin[name], limits, text=False)
    bounded: dict[str, Callable[..., Any]] = {
        **_bounded_filters(limits),
        "attr": attr,
        "dictsort": dictsort,
    }
    for name, function in bounded.items():
        found[name] = _checked(function, limits, text=False)
    found.update(
        {
            "default": default,
            "d": default,
            "items": items,
            "required": required,
            "number": number,
            "currency": currency,
            "date": format_date,
            "datetime": format_datetime,
            "time": format_time,
        }
    )
    return found


def _defined(value: Any) -> bool:
    return not isinstance(value, Undefined) and not (type(value) is Ctx and not len(value))


def _undefined(value: Any) -> bool:
    return not _defined(value)


def _number(value: Any) -> bool:
    return number_of(value) is not None


def build_tests() -> dict[str, Callable[..., Any]]:
    """Jinja's tests, with ``defined``, ``undefined`` and ``number`` aware of ctx values."""
    from jinja2.tests import TESTS

    tests = dict(cast(dict[str, Callable[..., Any]], TESTS))
    tests.update(defined=_defined, undefined=_undefined, number=_number)
    return tests
