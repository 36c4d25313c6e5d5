"""Locale-aware formatting of numbers, amounts and dates, with babel (CLDR data).

Babel re-reads its pattern and symbols on every call (30–50 µs for an amount);
a message formats many, for thousands of events. Here a pattern is prepared
once per locale, currency and precision, and applied with plain string work
that gives babel's output (``tests/unit/test_render_filters.py`` compares
them), with one deliberate difference: where the group separator is an
apostrophe (``de_CH``), babel takes pairs of them for quotes and drops them
(``1234567``); here they stay (``1'234'567``). Patterns this fast path does not
cover (scientific, significant digits, quoted text, ``¤¤``) go to babel itself.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from babel import Locale, UnknownLocaleError
from babel import dates as babel_dates
from babel import numbers as babel_numbers


class FormatLocale:
    """A babel locale with its prepared number formats (one instance per language, cached)."""

    __slots__ = ("babel", "_numbers")

    def __init__(self, locale: Locale) -> None:
        self.babel = locale
        self._numbers: dict[tuple[str | None, int | None], _NumberFormat | None] = {}

    def __repr__(self) -> str:
        return f"<FormatLocale {self.babel}>"

    def number_format(self, currency: str | None, digits: int | None) -> _NumberFormat | None:
        """The prepared pattern for an amount of ``currency`` or a number, ``None`` for babel's."""
        key = (currency, digits)
        if key not in self._numbers:
            self._numbers[key] = _prepare(self.babel, currency, digits)
        return self._numbers[key]


@lru_cache(maxsize=512)
def locale_for(language: str | None, country: str | None = None) -> FormatLocale:
    """The locale for an event's ``language`` (``fr``, ``fr-BE``, ``pt_BR``), refined by ``country``.

    An unknown or empty language gives ``en``: formatting must never fail an event.
    """
    return FormatLocale(_babel_locale(language, country))


def _babel_locale(language: str | None, country: str | None) -> Locale:
    if not language:
        return Locale.parse("en")
    parts = re.split(r"[-_]", language.strip())
    candidates = []
    if len(parts) > 1:
        candidates.append(f"{parts[0].lower()}_{parts[1].upper()}")
    elif country and len(country.strip()) == 2:
        candidates.append(f"{parts[0].lower()}_{country.strip().upper()}")
    candidates.append(parts[0].lower())
    for candidate in candidates:
        try:
            return Locale.parse(candidate)
        except (ValueError, UnknownLocaleError, TypeError):
            continue
    return Locale.parse("en")


class _NumberFormat:
    """A CLDR number pattern prepared for one locale (and currency): prefix, grouping, fraction."""

    __slots__ = (
        "_prefix",
        "_suffix",
        "_quantum",
        "_frac",
        "_min_int",
        "_grouping",
        "_group",
        "_decimal",
    )

    def __init__(self, pattern: Any, locale: Locale, currency: str | None, frac: tuple[int, int]):
        symbol = babel_numbers.get_currency_symbol(currency, locale) if currency else ""
        self._prefix: tuple[str, ...] = tuple(p.replace("¤", symbol) for p in pattern.prefix)
        self._suffix: tuple[str, ...] = tuple(s.replace("¤", symbol) for s in pattern.suffix)
        self._frac = frac
        self._quantum = Decimal(10) ** -frac[1]
        self._min_int = pattern.int_prec[0]
        self._grouping = pattern.grouping
        self._group: str = babel_numbers.get_group_symbol(locale)
        self._decimal: str = babel_numbers.get_decimal_symbol(locale)

    def format(self, value: Decimal) -> str:
        # Mirrors babel.numbers.NumberPattern.apply for plain patterns.
        negative = int(value.is_signed())
        rounded = abs(value).normalize().quantize(self._quantum)
        whole, _, fraction = f"{rounded:f}".partition(".")
        return (
            self._prefix[negative]
            + self._int(whole)
            + self._fraction(fraction or "0")
            + self._suffix[negative]
        )

    def _int(self, digits: str) -> str:
        if len(digits) < self._min_int:
            digits = "0" * (self._min_int - len(digits)) + digits
        size, out = self._grouping[0], ""
        while len(digits) > size:
            out = self._group + digits[-size:] + out
            digits = digits[:-size]
            size = self._grouping[1]
        return digits + out

    def _fraction(self, digits: str) -> str:
        least, most = self._frac
        if len(digits) < least:
            digits += "0" * (least - len(digits))
        if most == 0 or (least == 0 and int(digits) == 0):
            return ""
        while len(digits) > least and digits[-1] == "0":
            digits = digits[:-1]
        return self._decimal + digits


def _plain(pattern: Any) -> bool:
    """Whether the fast path reproduces babel for ``pattern``."""
    affixes = "".join(pattern.prefix + pattern.suffix)
    return (
        not pattern.scale
        and not pattern.exp_prec
        and "@" not in pattern.pattern
        and "'" not in pattern.pattern
        and "¤¤" not in affixes
        and pattern.number_pattern != ""
    )


def _prepare(locale: Locale, currency: str | None, digits: int | None) -> _NumberFormat | None:
    if currency is not None:
        pattern = locale.currency_formats["standard"]
        frac = (babel_numbers.get_currency_precision(currency),) * 2
    elif digits is not None:
        pattern = babel_numbers.parse_pattern(_digits_pattern(digits))
        frac = pattern.frac_prec
    else:
        pattern = locale.decimal_formats[None]
        frac = pattern.frac_prec
    return _NumberFormat(pattern, locale, currency, frac) if _plain(pattern) else None


def _digits_pattern(digits: int) -> str:
    return "#,##0" + ("." + "0" * digits if digits else "")


def _as_decimal(value: int | float | Decimal) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def format_number(
    value: int | float | Decimal, locale: FormatLocale, digits: int | None = None
) -> str:
    """``value`` with the locale's separators; ``digits`` fraction digits, or up to 3."""
    number = _as_decimal(value)
    prepared = locale.number_format(None, digits)
    if prepared is not None and number.is_finite():
        try:
            return prepared.format(number)
        except InvalidOperation:  # more digits than the decimal context holds: babel decides
            pass
    pattern = None if digits is None else _digits_pattern(digits)
    return babel_numbers.format_decimal(number, format=pattern, locale=locale.babel)


def format_currency(value: int | float | Decimal, currency: str, locale: FormatLocale) -> str:
    """``value`` as an amount of ``currency``, with that currency's usual precision."""
    number = _as_decimal(value)
    prepared = locale.number_format(currency, None)
    if prepared is not None and number.is_finite():
        try:
            return prepared.format(number)
        except InvalidOperation:
            pass
    return babel_numbers.format_currency(number, currency, locale=locale.babel)


# Many messages show the same dates (today's orders, a campaign's deadline): cache the text.
@lru_cache(maxsize=4096)
def format_date(moment: date, format: str, locale: FormatLocale) -> str:
    """A date in the locale: ``short``, ``medium``, ``long``, ``full`` or an LDML pattern."""
    return babel_dates.format_date(moment, format=format, locale=locale.babel)


@lru_cache(maxsize=4096)
def format_datetime(moment: datetime, format: str, locale: FormatLocale) -> str:
    """A date and time in the locale, in the moment's own time zone."""
    return babel_dates.format_datetime(moment, format=format, tzinfo=None, locale=locale.babel)


@lru_cache(maxsize=4096)
def format_time(moment: time, format: str, locale: FormatLocale) -> str:
    """A time of day in the locale."""
    return babel_dates.format_time(moment, format=format, locale=locale.babel)
