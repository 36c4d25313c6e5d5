"""Filters: locale-aware numbers, amounts and dates, URL encoding, required (SPEC §3.6)."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from babel import Locale
from babel import numbers as babel_numbers

from msgcenter.render import MessageContent, RenderProblem, compile_content, ctx_from_data, load_ctx
from msgcenter.render.formats import format_currency, format_number, locale_for

CREATED = datetime(2026, 3, 14, 21, 30, tzinfo=UTC)
CTX = load_ctx(
    '<ctx><order total="1234.5" paid="2026-03-14T21:30:00+00:00" due="2026-04-01" count="1234567"/>'
    '<link q="a b&amp;c/é"/><name>Ann</name><blank> </blank></ctx>',
    "xml",
)


def render(template, language="en", ctx=CTX, **event):
    compiled = compile_content(MessageContent(text=template))
    return compiled.render({"language": language, "created": CREATED, **event}, ctx).text


# -- numbers and amounts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "€1,234.50 | 1,234.5 | 1,234.50 | 1,234,567"),
        ("fr", "1\u202f234,50\xa0€ | 1\u202f234,5 | 1\u202f234,50 | 1\u202f234\u202f567"),
        ("de", "1.234,50\xa0€ | 1.234,5 | 1.234,50 | 1.234.567"),
    ],
)
def test_numbers_and_amounts_follow_the_event_language(language, expected):
    template = '{{ ctx.order.total|currency("EUR") }} | {{ ctx.order.total|number }} | {{ ctx.order.total|number(2) }} | {{ ctx.order.count|number }}'
    assert render(template, language) == expected


def test_currency_precision_comes_from_the_currency():
    assert render('{{ ctx.order.total|currency("JPY") }} {{ 3|currency("usd") }}') == "¥1,234 $3.00"


def test_language_variants_and_country_refine_the_locale():
    template = '{{ 1234.5|currency("CHF") }}'
    assert render(template, "de") == "1.234,50\xa0CHF"
    assert render(template, "de-CH") == "CHF\xa01'234.50"
    assert render(template, "de", country="CH") == "CHF\xa01'234.50"
    assert render(template, "pt_BR") == "CHF\xa01.234,50"


@pytest.mark.parametrize("language", ["", None, "xx", "not a language", "fr-ZZ"])
def test_an_unusable_language_falls_back_without_failing(language):
    assert render("{{ 1234.5|number }}", language) in ("1,234.5", "1\u202f234,5")


def test_missing_values_format_as_empty_and_text_is_refused():
    assert (
        render('[{{ ctx.nothing|currency("EUR") }}][{{ ctx.blank|number }}][{{ ctx.none|date }}]')
        == "[][][]"
    )
    with pytest.raises(RenderProblem) as caught:
        render('{{ ctx.name|currency("EUR") }}')
    assert "ctx.name ('Ann') is not a number" in caught.value.reason
    with pytest.raises(RenderProblem) as caught:
        render('{{ 1|currency("euros") }}')
    assert "ISO 4217" in caught.value.reason


LOCALES = [
    "en",
    "en_IN",
    "fr",
    "fr_CH",
    "de",
    "de_CH",
    "es",
    "it",
    "nl",
    "pt_BR",
    "ja",
    "ar",
    "hi",
    "sv",
    "pl",
    "he",
    "tr",
    "ru",
]
VALUES = [
    "0",
    "0.004",
    "0.005",
    "0.015",
    "1",
    "-1.5",
    "12.345",
    "999.995",
    "1234.5",
    "-1234567.891",
    "12345678901234.5",
    "1E+3",
    "100000",
]


@pytest.mark.parametrize("name", LOCALES)
def test_prepared_formats_give_babels_output(name):
    locale = locale_for(name)
    babel_locale = Locale.parse(name)

    def same(ours, babels):
        # Babel drops pairs of apostrophe group separators (de_CH 1'234'567 → 1234567),
        # taking them for quotes; ours keeps them. Everything else is identical.
        assert ours.replace("'", "") == babels, (name, ours, babels)
        assert "'" not in ours or babel_numbers.get_group_symbol(babel_locale) == "'"

    for text in VALUES:
        value = Decimal(text)
        for currency in ("EUR", "JPY", "USD", "BHD"):
            same(
                format_currency(value, currency, locale),
                babel_numbers.format_currency(value, currency, locale=babel_locale).replace(
                    "'", ""
                ),
            )
        same(
            format_number(value, locale),
            babel_numbers.format_decimal(value, locale=babel_locale).replace("'", ""),
        )
        same(
            format_number(value, locale, 2),
            babel_numbers.format_decimal(value, format="#,##0.00", locale=babel_locale).replace(
                "'", ""
            ),
        )
        same(
            format_number(float(value), locale),
            babel_numbers.format_decimal(float(value), locale=babel_locale).replace("'", ""),
        )


# -- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "March 14, 2026 | 3/14/26 | Saturday, March 14, 2026 | 14/03/2026"),
        ("fr", "14 mars 2026 | 14/03/2026 | samedi 14 mars 2026 | 14/03/2026"),
    ],
)
def test_dates_follow_the_event_language(language, expected):
    template = '{{ event.created|date("long") }} | {{ event.created|date("short") }} | {{ ctx.order.paid|date("full") }} | {{ ctx.order.paid|date("dd/MM/yyyy") }}'
    assert render(template, language) == expected


def test_date_times_and_time_zones():
    assert render('{{ event.created|datetime("short") }}') == "3/14/26, 9:30\u202fPM"
    assert (
        render('{{ event.created|datetime("short", tz="Europe/Paris") }}', "fr")
        == "14/03/2026 22:30"
    )
    assert render('{{ event.created|date("long", tz="Asia/Tokyo") }}') == "March 15, 2026"
    assert render('{{ event.created|time("short") }}', "fr") == "21:30"
    assert render('{{ ctx.order.due|date("long") }} {{ ctx.order.due|datetime("short") }}') == (
        "April 1, 2026 4/1/26, 12:00\u202fAM"
    )


def test_dates_from_python_values():
    ctx = ctx_from_data({"day": date(2026, 1, 2)})
    assert render('{{ ctx.day|date("medium") }}', ctx=ctx) == "Jan 2, 2026"


def test_unreadable_dates_are_render_problems():
    for template in ("{{ ctx.name|date }}", '{{ event.created|date(tz="Mars/Olympus") }}'):
        with pytest.raises(RenderProblem):
            render(template)


# -- other filters -------------------------------------------------------------------------


def test_urlencode_encodes_text_for_a_url():
    assert render("{{ ctx.link.q|urlencode }}") == "a%20b%26c/%C3%A9"


def test_required_names_the_missing_path():
    assert render("{{ ctx.name|required }}") == "Ann"
    for template, path in [
        ("{{ ctx.order.number|required }}", "ctx.order.number"),
        ("{{ ctx.blank|required }}", "ctx.blank"),
        ("{{ event.mobile_phone|required }}", "event.mobile_phone"),
        ("{{ ctx.order.article[2].sku|required }}", "ctx.order.article[2].sku"),
        ("{{ nothing|required }}", "nothing"),
    ]:
        with pytest.raises(RenderProblem) as caught:
            render(template)
        assert f"required value {path} is missing" in caught.value.reason


def test_string_filters_accept_ctx_values():
    template = "{{ ctx.name|upper }} {{ ctx.name|replace('n', 'N') }} {{ ctx.name|center(7) }}| {{ ctx.name|truncate(5) }} {{ ctx.name|wordcount }}"
    assert render(template) == "ANN ANN   Ann  | Ann 1"
    assert render("{{ ctx.order|dictsort|map('first')|join(',') }}") == "count,due,paid,total"
    assert render("{{ '%s has %d'|format(ctx.name, 3) }}") == "Ann has 3"


def test_left_out_filters_are_compile_errors():
    for name in ("pprint", "tojson", "urlize", "xmlattr"):
        with pytest.raises(Exception) as caught:
            compile_content(MessageContent(text="{{ ctx|" + name + " }}"))
        assert f"No filter named '{name}'" in caught.value.detail
