"""Hardened XML parsing of SOAP requests and XML ctx (SPEC §3.2 "Intake rules").

No DTD is accepted (so no entity of any kind, internal or external), nothing is
fetched from the network, and nesting deeper than the limit is refused; a
document that is not well-formed gets its libxml2 error with line and column.

libxml2 parses in linear time, but reading an element's attributes through lxml
and canonicalising (C14N) an element grow quadratically with its attributes and
in-scope namespaces: the attributes per element and the namespace declarations
per document are limited right after the parse, in linear time, before anything
else reads the tree.
"""

from __future__ import annotations

import io
import re
from functools import lru_cache

from lxml import etree

from msgcenter.errors import HostileXmlError, MalformedXmlError

#: what may precede a document type declaration (XML 1.0 §2.8: XMLDecl? Misc*): a UTF-8
#: byte-order mark, the XML declaration, comments, processing instructions, white space
_PROLOG = re.compile(rb"(?:\xef\xbb\xbf)?(?:\s+|<\?.*?\?>|<!--.*?-->)*", re.DOTALL)
_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
#: an upper bound of the namespace declarations (it also counts "xmlns" in text)
_XMLNS = b"xmlns"
#: defaults of the limits (the intake's settings override them for SOAP requests)
MAX_ATTRIBUTES = 256
MAX_NAMESPACES = 64
#: libxml2 repeats the position at the end of its message; the error states it once
_POSITION_SUFFIX = re.compile(r",?\s*line \d+, column \d+\s*$")


class _NothingExternal(etree.Resolver):
    """Answers every external reference (a DTD's SYSTEM identifier, an entity) with nothing,
    so that libxml2 never opens a local file: the byte scan cannot see a declaration in
    UTF-16 or UTF-32, and whether the file exists would show in the error."""

    # lxml-stubs omit the context argument lxml passes (and resolve_string needs)
    def resolve(self, system_url: str, public_id: str, context: object) -> object:  # type: ignore[override]
        return self.resolve_string("", context, base_url=None)


def _parser() -> etree.XMLParser:
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        collect_ids=False,
    )
    parser.resolvers.add(_NothingExternal())
    return parser


@lru_cache(maxsize=16)
def _deeper_than(limit: int) -> etree.XPath:
    # An element exists at depth limit + 1 (the root being depth 1): evaluated in C.
    return etree.XPath("boolean(/" + "/".join(["*"] * (limit + 1)) + ")")


@lru_cache(maxsize=16)
def _crowded_element(limit: int) -> etree.XPath:
    # The first element with more than ``limit`` attributes, evaluated in C in linear time.
    return etree.XPath(f"(//*[count(@*) > {limit}])[1]")


def _namespace_declarations(data: bytes, limit: int) -> int:
    """How many namespace declarations ``data`` makes, counted exactly only when a byte scan
    finds more than ``limit`` mentions of "xmlns" (never in a well-behaved document)."""
    if data.count(_XMLNS) <= limit:
        return 0
    events = etree.iterparse(
        io.BytesIO(data),
        events=("start-ns",),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
    )
    return sum(1 for _ in events)


def parse_document(
    data: bytes,
    *,
    max_depth: int,
    max_attributes: int = MAX_ATTRIBUTES,
    max_namespaces: int = MAX_NAMESPACES,
) -> etree._Element:
    """Parse ``data`` into its root element, or raise a :class:`MalformedXmlError` / :class:`HostileXmlError`."""
    # A declaration can only come before the root element; further on, "<!DOCTYPE" is
    # text (CDATA, comments, e.g. an HTML page in ctx) or a syntax error for libxml2.
    prolog = _PROLOG.match(data)
    found = _DECLARATION.match(data, prolog.end() if prolog else 0)
    if found is not None:
        line = data.count(b"\n", 0, found.start()) + 1
        column = found.start() - (data.rfind(b"\n", 0, found.start()) + 1) + 1
        raise HostileXmlError(
            "DTD and entity declarations are not accepted",
            detail=f"<!{found.group(1).decode().upper()} at line {line}, column {column}: "
            "document type and entity declarations are refused (no expansion, no file or network access)",
        )
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        reason = _POSITION_SUFFIX.sub("", exc.msg.strip())
        raise MalformedXmlError(reason, line=line, column=column) from None
    docinfo: etree.DocInfo = root.getroottree().docinfo
    # lxml-stubs lack DocInfo.doctype and do not say that internalDTD may be None
    doctype: str = getattr(docinfo, "doctype", "")
    internal: etree.DTD | None = docinfo.internalDTD
    if doctype or internal is not None:
        # Reached only for encodings the byte scan cannot read (UTF-16 and the like).
        raise HostileXmlError(
            "DTD and entity declarations are not accepted",
            detail="the document has a document type declaration; it is refused",
        )
    if _deeper_than(max_depth)(root):
        raise HostileXmlError(
            "XML nesting too deep", detail=f"elements are nested deeper than {max_depth} levels"
        )
    crowded = _crowded_element(max_attributes)(root)
    if isinstance(crowded, list) and crowded:
        element = crowded[0]
        assert isinstance(element, etree._Element)
        raise HostileXmlError(
            "too many XML attributes",
            detail=f"<{etree.QName(element).localname}> at line {element.sourceline} has more "
            f"than {max_attributes} attributes",
        )
    declared = _namespace_declarations(data, max_namespaces)
    if declared > max_namespaces:
        raise HostileXmlError(
            "too many XML namespace declarations",
            detail=f"the document declares {declared} namespaces; at most {max_namespaces} "
            "are accepted",
        )
    return root
