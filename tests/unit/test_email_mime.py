"""MIME assembly (SPEC §3.7): every message is parsed back with the stdlib parser and compared."""

import email
import email.policy
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.parser import BytesParser
from email.utils import parseaddr, parsedate_to_datetime

import pytest

from msgcenter.channels.email.mime import Attachment, build_message, unsubscribe_uris
from msgcenter.events.model import EmailFormat

TEXT = "Bonjour Anne,\n\nVotre commande n°1001 (42,50 €) est confirmée.\nÀ bientôt !  \n"
HTML = '<p>Bonjour <b>Anne</b>,</p><p>Votre commande n°1001 (42,50 €) est <a href="https://shop.example/o/1001?a=1&b=2">confirmée</a>.</p>'


def build(**overrides):
    fields = {
        "sender": "Boutique Éclair <shop@example.com>",
        "recipient": "anne@example.com",
        "subject": "Votre commande n°1001 est confirmée",
        "message_id": "<dl-1001@example.com>",
        "text": TEXT,
        "html": HTML,
    }
    return build_message(**{**fields, **overrides})


def parse(raw: bytes):
    return BytesParser(policy=email.policy.default).parsebytes(raw)


def rfc2047_address(raw: bytes, name: str) -> tuple[str, str]:
    """(display name, address) of a header, decoded strictly by RFC 2047 §6.2.

    The default policy's address parser keeps the folding space between two
    encoded words of a display name, which §6.2 says to drop; compat32's
    ``decode_header`` follows the RFC.
    """
    value = email.message_from_bytes(raw)[name]
    return parseaddr(str(make_header(decode_header(value))))


def content(part) -> str:
    """A text part's decoded content, line breaks as in the input."""
    assert part.get_content_charset() == "utf-8"
    return part.get_content().replace("\r\n", "\n")


def test_text_and_html_make_an_alternative_with_html_last():
    message = parse(build())
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.get_payload()
    assert (plain.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert content(plain) == TEXT
    assert content(html) == HTML
    assert not message.defects and not plain.defects and not html.defects


def test_headers_decode_to_what_was_given():
    date = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    message = parse(
        build(
            recipient='"Dupont, Anne" <anne@example.com>',
            reply_to="Service client <service@example.com>",
            list_unsubscribe=["https://shop.example/u/1001", "mailto:unsubscribe@example.com"],
            list_unsubscribe_post=True,
            date=date,
        )
    )
    assert message["Subject"] == "Votre commande n°1001 est confirmée"
    assert message["From"].addresses[0].display_name == "Boutique Éclair"
    assert message["From"].addresses[0].addr_spec == "shop@example.com"
    assert message["To"].addresses[0].display_name == "Dupont, Anne"
    assert message["Reply-To"].addresses[0].addr_spec == "service@example.com"
    assert message["Message-ID"] == "<dl-1001@example.com>"
    assert message["MIME-Version"] == "1.0"
    assert parsedate_to_datetime(message["Date"]) == date
    assert message["List-Unsubscribe"] == (
        "<https://shop.example/u/1001>, <mailto:unsubscribe@example.com>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.parametrize(
    ("email_format", "text", "html", "expected"),
    [
        (EmailFormat.UNKNOWN, TEXT, HTML, ["text/plain", "text/html"]),
        (EmailFormat.HTML, TEXT, HTML, ["text/plain", "text/html"]),
        (EmailFormat.TEXT, TEXT, HTML, ["text/plain"]),
        (EmailFormat.UNKNOWN, TEXT, None, ["text/plain"]),
        (EmailFormat.HTML, None, HTML, ["text/html"]),
        (EmailFormat.HTML, "  \n", HTML, ["text/html"]),
        (EmailFormat.TEXT, None, HTML, ["text/html"]),  # no text to honour the wish with
    ],
)
def test_parts_follow_the_email_format(email_format, text, html, expected):
    message = parse(build(email_format=email_format, text=text, html=html))
    if len(expected) == 1:
        assert message.get_content_type() == expected[0]
    else:
        assert [p.get_content_type() for p in message.get_payload()] == expected


def test_a_message_without_any_body_is_refused():
    with pytest.raises(ValueError, match="text or an HTML body"):
        build(text=None, html="")


def test_attachments_wrap_the_body_in_mixed():
    pdf = bytes(range(256)) * 40
    message = parse(
        build(
            attachments=[
                Attachment("facture n°1001 – mars.pdf", "application/pdf", pdf),
                Attachment(
                    "notes.txt", "text/plain; charset=latin-1; x=1", "é\nb\r\n".encode("latin-1")
                ),
                Attachment("../../etc/odd", "not a type", b"x"),
            ]
        )
    )
    assert message.get_content_type() == "multipart/mixed"
    body, *files = message.get_payload()
    assert body.get_content_type() == "multipart/alternative"
    assert [(f.get_filename(), f.get_content_type()) for f in files] == [
        ("facture n°1001 – mars.pdf", "application/pdf"),
        ("notes.txt", "text/plain"),
        ("odd", "application/octet-stream"),
    ]
    assert [f.get_payload(decode=True) for f in files] == [pdf, "é\nb\r\n".encode("latin-1"), b"x"]
    assert files[1].get_content_charset() == "latin-1"
    assert all(f.get_content_disposition() == "attachment" for f in files)


def test_nested_boundaries_differ_and_none_begins_another():
    messages = [
        parse(build(attachments=[Attachment("a.txt", "text/plain", b"x")])) for _ in range(3)
    ]
    boundaries = [
        part.get_boundary() for message in messages for part in (message, message.get_payload()[0])
    ]
    assert len(set(boundaries)) == 6
    assert len({len(b) for b in boundaries}) == 1
    assert all(b.startswith("=_") for b in boundaries)


def test_a_long_name_of_four_byte_characters_stays_within_998_characters_a_line():
    # found by tests/property/test_mime_building.py: 100 emoji were 1,174 characters RFC 2231-encoded
    data = build(attachments=[Attachment("\U0001f600" * 120 + ".pdf", "application/pdf", b"x")])
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    (file,) = parse(data).get_payload()[1:]
    assert file.get_filename() == "\U0001f600" * 74 + ".pdf"


def test_mostly_non_latin_text_goes_base64_and_decodes_back():
    russian = "Здравствуйте, Анна!\nВаш заказ №1001 подтверждён.\n" * 5
    message = parse(build(text=russian, html=None, subject="Заказ №1001 подтверждён"))
    assert message["Content-Transfer-Encoding"] == "base64"
    assert content(message) == russian
    assert message["Subject"] == "Заказ №1001 подтверждён"


def test_line_breaks_of_any_kind_become_crlf():
    message = parse(build(text="one\rtwo\r\nthree\nfour", html=None))
    assert content(message) == "one\ntwo\nthree\nfour"


def test_header_values_cannot_inject_headers():
    raw = build(subject="Hello\r\nBcc: victim@example.com", recipient="anne@example.com\nX-Evil: 1")
    message = parse(raw)
    assert message["Bcc"] is None and message["X-Evil"] is None
    assert message["Subject"] == "Hello Bcc: victim@example.com"


@pytest.mark.parametrize(
    "subject",
    [
        "Plain ASCII subject",
        "A long ASCII subject " * 12,
        "Une très longue ligne d'objet accentuée " * 10,
        "x" * 400,  # no space to fold at
        "literal =?utf-8?q?not-a-word?= text",
        "混合 characters 😀 across encoded words " * 6,
    ],
)
def test_subjects_round_trip_and_lines_stay_short(subject):
    raw = build(subject=subject, sender=f"{'Très long nom ' * 8} <shop@example.com>")
    message = parse(raw)
    assert message["Subject"] == subject.strip()
    assert rfc2047_address(raw, "From") == (("Très long nom " * 8).strip(), "shop@example.com")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78


def test_the_message_is_seven_bit_with_crlf_lines_of_at_most_78():
    one_long_line = "é" + "word " * 2000  # 10 kB without a line break
    raw = build(
        text=one_long_line,
        html=one_long_line,
        attachments=[Attachment("a.bin", "application/octet-stream", b"\0" * 5000)],
    )
    assert raw.isascii()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    plain, html = parse(raw).get_payload()[0].get_payload()
    assert content(plain) == one_long_line


def test_trailing_spaces_and_dots_survive():
    text = "line with trailing spaces   \n.\n.leading dot\nend\t\n"
    assert content(parse(build(text=text, html=None))) == text


@pytest.mark.parametrize("address", ["not an address", "Anne <anne>", "Anne <anné@exemple.fr>"])
def test_unusable_addresses_are_refused(address):
    with pytest.raises(ValueError, match="To"):
        build(recipient=address)


def test_every_message_says_it_is_auto_generated_and_names_its_feedback_stream():
    message = parse(build(feedback_id="order_confirmation:brand_a:rt:exec"))
    assert message["Auto-Submitted"] == "auto-generated"  # RFC 3834 §5
    assert message["Feedback-ID"] == "order_confirmation:brand_a:rt:exec"
    bare = parse(build(auto_submitted=None))
    assert bare["Auto-Submitted"] is None and bare["Feedback-ID"] is None


def test_the_one_click_header_comes_only_with_list_unsubscribe():
    assert parse(build(list_unsubscribe_post=True))["List-Unsubscribe-Post"] is None
    assert parse(build(list_unsubscribe=["mailto:u@example.com"]))["List-Unsubscribe-Post"] is None


@pytest.mark.parametrize(
    ("value", "uris"),
    [
        ("", []),
        (
            "https://shop.example/u?e=ann%40example.com",
            ["https://shop.example/u?e=ann%40example.com"],
        ),
        (
            "<https://shop.example/u/1>, <mailto:unsub@example.com?subject=x,y>",
            ["https://shop.example/u/1", "mailto:unsub@example.com?subject=x,y"],
        ),
        (
            "mailto:a@example.com, https://b.example/u",
            ["mailto:a@example.com", "https://b.example/u"],
        ),
        ("  MAILTO:a@example.com\n", ["MAILTO:a@example.com"]),
    ],
)
def test_unsubscribe_uris_are_read_as_rfc_2369_writes_them_or_bare(value, uris):
    assert unsubscribe_uris(value) == uris


@pytest.mark.parametrize(
    "value",
    [
        "http://shop.example/u",  # a one-click POST in clear text
        "javascript:alert(1)",
        "https://shop.example/u, https://other.example/u",  # RFC 8058: one https URI
        "https://shop.example/u/{{ ctx.id }}",
        "<https://shop.example/a b>",
        "https://shöp.example/u",
        "shop.example/u",
    ],
)
def test_unusable_unsubscribe_uris_are_refused_or_left_out(value):
    with pytest.raises(ValueError, match="List-Unsubscribe"):
        unsubscribe_uris(value)
    kept = unsubscribe_uris(value, strict=False)
    assert all(u.lower().startswith(("https:", "mailto:")) for u in kept)
    assert sum(u.startswith("https:") for u in kept) <= 1


def test_lenient_reading_keeps_the_usable_uris():
    value = "http://x.example/u, mailto:u@example.com, https://a.example/u, https://b.example/u"
    assert unsubscribe_uris(value, strict=False) == ["mailto:u@example.com", "https://a.example/u"]
