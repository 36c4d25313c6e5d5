"""Events read from a file one at a time, in the REST shape (SPEC §3.1 fields, §3.2 REST).

Two formats, both streamed (a file of a million events is never held whole):

- **JSON lines**: one event object per line, exactly as ``POST /api/v1/events/{queue}``
  takes it (see ``EventIn`` in :mod:`msgcenter.intake.rest`); blank lines are skipped.
  A line is sent as written (its bytes, not a re-encoding), so the server judges
  exactly what the file holds.
- **XML**: ``<rtEvent>`` / ``<batchEvent>`` elements anywhere in the document (the
  ``PushEvents`` collection, a whole SOAP envelope, or any wrapper), unqualified or
  in a namespace. Each becomes the REST shape the way the SOAP adapter reads it:
  attributes become fields under their REST names (``emailFormat`` →
  ``email_format``, :data:`~msgcenter.events.model.SOAP_ATTRIBUTE_FIELDS`), a
  ``<mobileApp uuid="…"/>`` child becomes ``mobile_app_uuid``, and ``<ctx>`` becomes
  the JSON object that :mod:`msgcenter.render.ctx` navigates exactly as it navigates
  the XML: attribute ``a`` → ``"@a"``, a repeated element → a list, a leaf → its
  text, an element's own text beside attributes or children → ``"#text"``.

Why XML goes over REST rather than SOAP ``PushEvents``: resuming a push rests on
idempotency keys and on the server saying which pushes were replays, which only
the REST intake offers (``Idempotency-Key``, 200 on a replay); SOAP has
``correlationId`` idempotency only for operators that enabled it. Templates see
the same values either way; what differs is that the event's ctx is stored as
JSON rather than as the XML text.

A line (or element) that cannot be an event is an :class:`Item` with a
``refusal``, never an exception; XML that is not well-formed ends the reading
there (``last``), since nothing after the error can be read. An XML event's line
is where its start tag ends (libxml2's ``sourceline``).
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson
from lxml import etree

from msgcenter.events.model import SOAP_ATTRIBUTE_FIELDS, Queue
from msgcenter.events.validation import json_type

#: the event elements of the SOAP intake, by queue
EVENT_ELEMENTS = {Queue.RT.soap_element: Queue.RT, Queue.BATCH.soap_element: Queue.BATCH}
_READ_CHUNK = 1024 * 1024
_XML_CHUNK = 64 * 1024
_BOM = b"\xef\xbb\xbf"
#: the start tag of an event element, for the progress bar's total (comments and CDATA may
#: make it an over-estimate; the count is only shown)
_EVENT_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(?:rtEvent|batchEvent)[\s/>]")


class FileFormat(enum.StrEnum):
    """How the events are written in the file."""

    JSONL = "jsonl"
    XML = "xml"


@dataclass(frozen=True, slots=True)
class Item:
    """One event read from the file, or why a line could not be one."""

    #: where it starts in the file (1-based)
    line: int
    #: the event as a JSON object (UTF-8), or None when refused
    body: bytes | None = None
    queue: Queue | None = None
    refusal: str | None = None
    #: nothing after this item can be read (XML that is not well-formed)
    last: bool = False


@dataclass(frozen=True, slots=True)
class FileScan:
    """What one quick pass over the file tells before pushing it."""

    #: events in the file (non-blank lines; event start tags in XML)
    events: int
    #: SHA-256 of the content (hex), when asked for
    digest: str | None


def detect_format(path: Path) -> FileFormat:
    """The format named by the file's extension (``.xml``; ``.jsonl``, ``.ndjson``, ``.json``),
    else the one its first non-blank character suggests."""
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return FileFormat.XML
    if suffix in (".jsonl", ".ndjson", ".json"):
        return FileFormat.JSONL
    with path.open("rb") as stream:
        head = stream.read(4096).removeprefix(_BOM).lstrip()
    return FileFormat.XML if head.startswith(b"<") else FileFormat.JSONL


def scan(path: Path, file_format: FileFormat, *, digest: bool) -> FileScan:
    """Count the file's events and, with ``digest``, hash its content, in one pass."""
    hasher = hashlib.sha256() if digest else None
    events = 0
    with path.open("rb") as stream:
        if file_format is FileFormat.JSONL:
            for line in stream:
                if hasher is not None:
                    hasher.update(line)
                if line.strip():
                    events += 1
        else:
            tail = b""
            while chunk := stream.read(_READ_CHUNK):
                if hasher is not None:
                    hasher.update(chunk)
                window = tail + chunk
                # a tag cut by the chunk boundary is counted once, in the next window
                cut = max(len(window) - 64, 0)
                events += sum(1 for m in _EVENT_TAG.finditer(window) if m.start() < cut)
                tail = window[cut:]
            events += len(_EVENT_TAG.findall(tail))
    return FileScan(events, hasher.hexdigest() if hasher is not None else None)


def read_items(path: Path, file_format: FileFormat, queue: Queue | None) -> Iterator[Item]:
    """The file's events in order; ``queue`` None takes rt for JSON lines and each element's
    own name in XML (a given ``queue`` refuses XML elements named for the other one)."""
    if file_format is FileFormat.JSONL:
        return _json_lines(path, queue or Queue.RT)
    return _xml_events(path, queue)


def _json_lines(path: Path, queue: Queue) -> Iterator[Item]:
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            line = raw.strip()
            if number == 1:
                line = line.removeprefix(_BOM)
            if not line:
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield Item(number, refusal=f"not valid JSON: {exc}")
                continue
            if not isinstance(value, dict):
                yield Item(number, refusal=f"not a JSON object but a JSON {json_type(value)}")
                continue
            yield Item(number, line, queue)


def _xml_events(path: Path, queue: Queue | None) -> Iterator[Item]:
    # The file is the user's own, yet read as carefully as a request: no DTD, no entity
    # expansion, no network. Comments and processing instructions are dropped (the text
    # around them joins). A pull parser, fed in chunks, hands over the events it read
    # before a syntax error, which iterparse would drop with the rest of their chunk.
    parser = etree.XMLPullParser(
        events=("end",),
        tag=tuple(f"{{*}}{name}" for name in EVENT_ELEMENTS),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    checked = False
    with path.open("rb") as stream:
        while True:
            chunk = stream.read(_XML_CHUNK)
            failure: etree.XMLSyntaxError | None = None
            try:
                if chunk:
                    parser.feed(chunk)
                else:
                    parser.close()
            except etree.XMLSyntaxError as exc:
                failure = exc
            for _action, element in parser.read_events():
                if not isinstance(element, etree._Element):  # only "end" events are asked for
                    continue
                if not checked:
                    checked = True
                    docinfo = element.getroottree().docinfo
                    if getattr(docinfo, "doctype", "") or docinfo.internalDTD is not None:
                        yield Item(
                            1,
                            refusal="a document type declaration (DTD) is not accepted",
                            last=True,
                        )
                        return
                yield _xml_item(element, queue)
                # keep memory flat: the event and the siblings read before it are done with
                element.clear()
                parent = element.getparent()
                if parent is not None:
                    while element.getprevious() is not None:
                        del parent[0]
            if failure is not None:
                line, column = failure.position
                yield Item(
                    max(line, 1),
                    refusal=f"not well-formed XML (line {line}, column {column}): {failure.msg}",
                    last=True,
                )
                return
            if not chunk:
                return


def _xml_item(element: etree._Element, queue: Queue | None) -> Item:
    # lxml-stubs leave sourceline untyped (an int, or None for a built element)
    line: int = cast(int | None, element.sourceline) or 0
    name = etree.QName(element)
    own = EVENT_ELEMENTS[name.localname]
    if queue is not None and own is not queue:
        return Item(
            line,
            refusal=f"<{name.localname}> in a push to the {queue} queue "
            f"(--queue {queue} takes <{queue.soap_element}> elements)",
        )
    return Item(line, orjson.dumps(event_fields(element)), own)


def event_fields(element: etree._Element) -> dict[str, Any]:
    """An ``<rtEvent>`` / ``<batchEvent>`` element as the REST intake's JSON object."""
    fields: dict[str, Any] = {
        SOAP_ATTRIBUTE_FIELDS.get(str(key), str(key)): str(value)
        for key, value in element.attrib.items()
    }
    namespace = etree.QName(element).namespace
    for child in element.iterchildren(etree.Element):
        child_name = etree.QName(child)
        # as the SOAP adapter: unqualified, or in the event element's namespace
        if child_name.namespace not in (None, namespace):
            continue
        if child_name.localname == "ctx":
            fields["ctx"] = ctx_data(child)
        elif child_name.localname == "mobileApp" and child.get("uuid") is not None:
            fields["mobile_app_uuid"] = child.get("uuid")
    return fields


def ctx_data(ctx: etree._Element) -> dict[str, Any]:
    """A ``<ctx>`` element as the JSON object templates navigate exactly as the XML (the rules
    of :func:`msgcenter.render.ctx.load_ctx`; ``tests/unit/test_filepush_source.py`` holds
    them to it)."""
    data = _element_data(ctx)
    if isinstance(data, str):
        return {"#text": data} if data else {}
    return data


def _element_data(element: etree._Element) -> str | dict[str, Any]:
    # attributes first, then child elements in document order: render.ctx's order
    members: dict[str, list[Any]] = {}
    # in canonical XML's order (by namespace, then local name), as the SOAP intake stores them
    for name, value in sorted(element.attrib.items(), key=lambda a: _c14n_order(str(a[0]))):
        members.setdefault("@" + etree.QName(name).localname, []).append(str(value))
    has_elements = False
    for child in element.iterchildren(etree.Element):
        members.setdefault(etree.QName(child).localname, []).append(_element_data(child))
        has_elements = True
    text = element.text or ""
    if has_elements:
        # indentation between children is no value; mixed content reads as all its text
        direct = text + "".join(child.tail or "" for child in element)
        text = (
            etree.tostring(element, method="text", encoding=str, with_tail=False)
            if direct.strip()
            else ""
        )
    if not members:
        return text
    data: dict[str, Any] = {
        name: values[0] if len(values) == 1 else values for name, values in members.items()
    }
    if text:
        data["#text"] = text
    return data


def _c14n_order(name: str) -> tuple[str, str]:
    """Canonical XML sorts attributes by namespace URI, then local name; none comes first
    (C14N 1.0 §2.2, "Document Order")."""
    qualified = etree.QName(name)
    return (qualified.namespace or "", qualified.localname)
