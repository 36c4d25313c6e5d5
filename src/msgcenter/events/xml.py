"""Hardened XML parsing of SOAP requests and XML ctx (SPEC §3.2 "Intake rules").

No DTD is accepted (so no entity of any kind, internal or external), nothing is
fetched from the network, and nesting deeper than the limit is refused; a
document that is not well-formed gets its libxml2 error with line and column.
"""

from __future__ import annotations

import re
from functools import lru_cache

from lxml import etree

from msgcenter.errors import HostileXmlError, MalformedXmlError

#: what may precede a document type declaration (XML 1.0 §2.8: XMLDecl? Misc*): a UTF-8
#: byte-order mark, the XML declaration, comments, processing instructions, white space
_PROLOG = re.compile(rb"(?:\xef\xbb\xbf)?(?:\s+|<\?.*?\?>|<!--.*?-->)*", re.DOTALL)
_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
#: libxml2 repeats the position at the end of its message; the error states it once
_POSITION_SUFFIX = re.compile(r",?\s*line \d+, column \d+\s*$")


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        collect_ids=False,
    )


@lru_cache(maxsize=16)
def _deeper_than(limit: int) -> etree.XPath:
    # An element exists at depth limit + 1 (the root being depth 1): evaluated in C.
    return etree.XPath("boolean(/" + "/".join(["*"] * (limit + 1)) + ")")


def parse_document(data: bytes, *, max_depth: int) -> etree._Element:
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
    return root
