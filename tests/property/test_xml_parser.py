"""``parse_document`` (SPEC §3.2 "Intake rules"), by property: what is well-formed and within
the depth limit parses to the same tree, a declaration in any prolog is refused, and
nothing but a refusal ever comes out of bytes of any shape."""

from __future__ import annotations

from pathlib import Path

from hypothesis import assume, given
from hypothesis import strategies as st
from lxml import etree

from msgcenter.errors import HostileXmlError, MalformedXmlError
from msgcenter.events.xml import parse_document

from .strategies import Tree, to_xml, trees, xml_text

REFUSALS = (MalformedXmlError, HostileXmlError)


def as_tree(element: etree._Element) -> Tree:
    children = list(element.iterchildren(etree.Element))
    return Tree(
        str(element.tag),
        dict(element.attrib),
        "" if children else element.text or "",
        [as_tree(child) for child in children],
    )


comments = xml_text.map(lambda t: t.replace("-", "_")).map(lambda t: f"<!--{t}-->")
instructions = st.tuples(
    st.sampled_from(["pi", "x-y", "style"]), xml_text.map(lambda t: t.replace("?>", "? >"))
).map(lambda p: f"<?{p[0]} {p[1]}?>")
spaces = st.text(" \t\r\n", min_size=1, max_size=3)
prologs = st.tuples(
    st.sampled_from(["", "\ufeff"]),
    st.sampled_from(["", '<?xml version="1.0"?>', "<?xml version='1.0' encoding='UTF-8'?>\n"]),
    st.lists(st.one_of(comments, instructions, spaces), max_size=4).map("".join),
).map("".join)
declarations = st.sampled_from(
    [
        "<!DOCTYPE ctx>",
        "<!doctype ctx>",
        "<! DOCTYPE ctx>",
        '<!DOCTYPE ctx SYSTEM "file:///etc/passwd">',
        '<!DOCTYPE ctx [<!ENTITY e "boom">]>',
        '<!ENTITY e "boom">',
        '<!DOCTYPE ctx PUBLIC "-//x//EN" "http://127.0.0.1:9/x.dtd">',
    ]
)


@given(trees(), prologs, st.integers(1, 10))
def test_a_well_formed_document_parses_to_its_tree_within_the_depth_limit(tree, prolog, limit):
    data = (prolog + to_xml(tree)).encode("utf-8")
    if tree.depth() > limit:
        try:
            parse_document(data, max_depth=limit)
        except HostileXmlError as refused:
            assert f"deeper than {limit} levels" in refused.detail
        else:
            raise AssertionError(f"depth {tree.depth()} accepted with a limit of {limit}")
    else:
        assert as_tree(parse_document(data, max_depth=limit)) == tree


@given(trees(max_leaves=4), st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32"]))
def test_other_encodings_parse_to_the_same_tree(tree, encoding):
    # Python's utf-16 and utf-32 codecs start with a byte-order mark, the others have none
    declared = f'<?xml version="1.0" encoding="{encoding.upper()}"?>' + to_xml(tree)
    assert as_tree(parse_document(declared.encode(encoding), max_depth=64)) == tree


@given(prologs, declarations, trees(max_leaves=3))
def test_a_declaration_after_any_prolog_is_refused(prolog, declaration, tree):
    data = (prolog + declaration + to_xml(tree)).encode("utf-8")
    try:
        parse_document(data, max_depth=64)
    except HostileXmlError as refused:
        assert "declaration" in refused.detail
    else:
        raise AssertionError("a declaration was accepted")


@given(
    st.sampled_from(["utf-16", "utf-32"]),
    st.sampled_from(["<!DOCTYPE ctx>", "<!DOCTYPE ctx [<!ELEMENT ctx EMPTY>]>"]),
)
def test_a_declaration_the_byte_scan_cannot_read_is_refused_after_parsing(encoding, declaration):
    data = (declaration + "<ctx/>").encode(encoding)  # with a byte-order mark
    try:
        parse_document(data, max_depth=64)
    except HostileXmlError as refused:
        assert "document type declaration" in refused.detail
    else:
        raise AssertionError(f"{declaration!r} in {encoding} was accepted")


@given(st.sampled_from(["utf-16", "utf-32", "utf-7"]))
def test_a_system_identifier_is_never_opened_whatever_the_encoding(encoding):
    existing = Path(__file__)  # any readable file of this machine
    refusals = []
    for path in (existing, existing.with_name("no-such-file.dtd")):
        declaration = f'<?xml version="1.0" encoding="{encoding.upper()}"?>'
        document = declaration + f'<!DOCTYPE ctx SYSTEM "{path.as_uri()}"><ctx/>'
        try:
            parse_document(document.encode(encoding), max_depth=64)
        except (HostileXmlError, MalformedXmlError) as refused:
            refusals.append((type(refused), refused.detail))
        else:
            raise AssertionError("a SYSTEM document type declaration was accepted")
    assert refusals[0] == refusals[1], "the refusal tells whether the file exists"
    assert refusals[0][0] is HostileXmlError


@given(xml_text, st.sampled_from(["<!DOCTYPE x>", '<!ENTITY e "v">', "<!doctype html>"]))
def test_declarations_inside_content_are_text(text, declaration):
    document = (
        f"<ctx><a><![CDATA[{text.replace(']]>', '')}{declaration}]]></a>"
        f"<!--{declaration}--><b>{declaration.replace('<', '&lt;')}</b></ctx>"
    )
    root = parse_document(document.encode("utf-8"), max_depth=8)
    assert (
        root.findtext("a")
        == text.replace("]]>", "").replace("\r\n", "\n").replace("\r", "\n") + declaration
    )
    assert root.findtext("b") == declaration


@st.composite
def mutated_documents(draw: st.DrawFn) -> bytes:
    """A well-formed document with a few bytes flipped, inserted or removed."""
    data = bytearray(to_xml(draw(trees(max_leaves=6))).encode("utf-8"))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = draw(st.sampled_from(list(b"<>/&;=\"'!?[]-\x00\xff\xfe\xef\xbb\xbf") + [0x20]))
        if action == "insert":
            data.insert(at, byte)
        elif at < len(data):
            if action == "delete":
                del data[at]
            else:
                data[at] = byte
    return bytes(data)


@given(st.one_of(st.binary(max_size=200), mutated_documents()), st.integers(1, 64))
def test_any_bytes_parse_or_are_refused(data, limit):
    try:
        root = parse_document(data, max_depth=limit)
    except MalformedXmlError as refused:
        assert refused.line >= 0 and refused.column >= 0
        assert refused.detail.startswith("XML parse error at line ")
    except HostileXmlError:
        pass
    else:
        assume(root is not None)
        assert not root.getroottree().docinfo.doctype
