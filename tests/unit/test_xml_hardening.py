"""``parse_document``: no DTD, no entity, no file or network access, bounded nesting (SPEC §3.2).

Hostile documents must be refused quickly with an error that says why; legal
documents, however big or odd-looking, must parse.
"""

from __future__ import annotations

import pytest

from msgcenter.errors import HostileXmlError, InvalidInputError, MalformedXmlError
from msgcenter.events.xml import parse_document

DEPTH = 16

LAUGHS = (
    '<!DOCTYPE lolz [<!ENTITY lol0 "lol">'
    + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    + "]><lolz>&lol9;</lolz>"
)


def parse(data: bytes | str, max_depth: int = DEPTH):
    return parse_document(data.encode() if isinstance(data, str) else data, max_depth=max_depth)


def nested(depth: int) -> str:
    return "<n>" * depth + "</n>" * depth


@pytest.fixture
def secret_file(tmp_path):
    """A real file that an external entity could try to read."""
    path = tmp_path / "secret.txt"
    path.write_text("TOP-SECRET-CONTENT")
    return path


# -- malformed -----------------------------------------------------------------------------


def test_malformed_gives_line_and_column():
    with pytest.raises(MalformedXmlError) as refused:
        parse("<a>\n  <b>\n</a>")
    assert (refused.value.line, refused.value.column) == (3, 5)
    assert refused.value.detail == (
        "XML parse error at line 3, column 5: Opening and ending tag mismatch: b line 2 and a"
    )


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"", "Document is empty"),
        (b"just text", "Start tag expected"),
        (b"<a>", "Premature end of data"),
        (b"<a></a><b/>", "Extra content at the end of the document"),
        (b'<a x="1" x="2"/>', "Attribute x redefined"),
        (b"<a>\xff</a>", "Invalid bytes in character encoding"),
    ],
)
def test_malformed_reasons(data, reason):
    with pytest.raises(MalformedXmlError) as refused:
        parse(data)
    assert refused.value.detail.startswith("XML parse error at line 1, column ")
    assert reason in refused.value.detail
    # libxml2 ends its messages with the position again; the detail states it once, on one line
    assert refused.value.detail.count(", column ") == 1
    assert "\n" not in refused.value.detail


# -- DTDs and entities ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "data,where",
    [
        ("<!DOCTYPE a><a/>", "<!DOCTYPE at line 1, column 1"),
        ('<?xml version="1.0"?>\n<!DOCTYPE a SYSTEM "a.dtd"><a/>', "<!DOCTYPE at line 2, column 1"),
        ("<?xml version='1.0'?><!-- note -->\n  <!doctype a><a/>", "<!DOCTYPE at line 2, column 3"),
        ('\ufeff<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>', "<!DOCTYPE at line 1, column 4"),
        (LAUGHS, "<!DOCTYPE at line 1, column 1"),
    ],
    ids=["bare", "after declaration", "after comment", "after BOM", "billion laughs"],
)
def test_doctype_refused(data, where):
    with pytest.raises(HostileXmlError) as refused:
        parse(data)
    assert refused.value.message == "DTD and entity declarations are not accepted"
    assert refused.value.detail.startswith(where)


def test_entity_declaration_refused():
    with pytest.raises(HostileXmlError) as refused:
        parse('<!ENTITY e "x"><a>&e;</a>')
    assert refused.value.detail.startswith("<!ENTITY at line 1, column 1")


def test_external_entity_refused_and_never_read(secret_file):
    document = f'<!DOCTYPE a [<!ENTITY leak SYSTEM "{secret_file.as_uri()}">]><a>&leak;</a>'
    with pytest.raises(HostileXmlError) as refused:
        parse(document)
    assert "TOP-SECRET" not in str(refused.value) + refused.value.detail


def test_undeclared_entity_is_malformed():
    with pytest.raises(MalformedXmlError) as refused:
        parse("<a>&nope;</a>")
    assert "Entity 'nope' not defined" in refused.value.detail


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_doctype_in_wide_encoding_refused(encoding, secret_file):
    """The byte scan cannot read UTF-16/32; the parsed document's own DTD record is checked too."""
    text = (
        f'<?xml version="1.0" encoding="{encoding.upper()}"?>'
        f'<!DOCTYPE a [<!ENTITY leak SYSTEM "{secret_file.as_uri()}">]><a>&leak;</a>'
    )
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data  # with its byte-order mark, as senders write it
    with pytest.raises(HostileXmlError) as refused:
        parse(data)
    assert refused.value.detail == "the document has a document type declaration; it is refused"


def test_billion_laughs_in_utf16_is_refused_unexpanded():
    """Without the byte scan's help, libxml2 still never expands: refused, not a hang."""
    with pytest.raises(InvalidInputError) as refused:
        parse(LAUGHS.encode("utf-16"))
    assert "lollol" not in refused.value.detail


@pytest.mark.parametrize(
    "ctx",
    [
        "<![CDATA[<!DOCTYPE html><html><body>Hi</body></html>]]>",
        "<![CDATA[<!ENTITY e 'x'>]]>",
        "<!-- <!DOCTYPE a> -->",
        "&lt;!DOCTYPE html&gt;",
    ],
    ids=["HTML page in CDATA", "ENTITY in CDATA", "DOCTYPE in a comment", "escaped text"],
)
def test_declaration_lookalikes_in_content_parse(ctx):
    """Only a real declaration (in the prolog) is refused: content that mentions one is text."""
    root = parse(f"<?xml version='1.0'?>\n<!-- prolog comment --><a><ctx>{ctx}</ctx></a>")
    assert root.tag == "a"


def test_declaration_after_root_is_malformed():
    with pytest.raises(MalformedXmlError):
        parse("<a><!DOCTYPE b></a>")


# -- nesting -------------------------------------------------------------------------------


def test_depth_exactly_at_limit_parses():
    root = parse(nested(DEPTH))
    assert len(list(root.iter())) == DEPTH


def test_depth_one_over_limit_refused():
    with pytest.raises(HostileXmlError) as refused:
        parse(nested(DEPTH + 1))
    assert refused.value.detail == f"elements are nested deeper than {DEPTH} levels"


def test_deep_branch_among_shallow_ones_refused():
    with pytest.raises(HostileXmlError):
        parse("<r>" + "<a/>" * 1000 + nested(DEPTH) + "</r>")


def test_very_deep_document_refused_by_libxml2():
    """libxml2 stops at its own hard limit long before any harm; still a clean refusal."""
    with pytest.raises(InvalidInputError):
        parse(nested(100_000), max_depth=250)


# -- legal documents -----------------------------------------------------------------------


def test_big_legal_document_parses():
    """Several MB, many elements, long texts and attributes: parsed whole."""
    item = '<article sku="{i}" label="{label}"><name>{text}</name><qty>1</qty></article>'
    body = "".join(
        item.format(i=i, label="é" * 40, text="Lorem ipsum dolor sit amet " * 4)
        for i in range(20_000)
    )
    data = f"<?xml version='1.0' encoding='utf-8'?><order>{body}</order>".encode()
    assert len(data) > 5_000_000
    root = parse(data)
    assert len(root) == 20_000
    assert root[-1].get("sku") == "19999"
    assert root[0].get("label") == "é" * 40


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "iso-8859-1"])
def test_declared_encodings_parse(encoding):
    data = f'<?xml version="1.0" encoding="{encoding}"?><a>Zoë</a>'.encode(encoding)
    assert parse(data).text == "Zoë"


def test_namespaces_and_processing_instructions_parse():
    root = parse(
        "<?xml version='1.0'?><?app hint?><!-- c -->"
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>'
    )
    assert root.tag == "{http://schemas.xmlsoap.org/soap/envelope/}Envelope"
