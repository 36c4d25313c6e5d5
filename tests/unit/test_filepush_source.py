"""Reading events from a file for ``msgcenter push``: JSON lines as written, XML in the SOAP shape
converted to REST fields, and a ctx that templates navigate exactly as the SOAP intake's."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from lxml import etree

from msgcenter.events.model import Queue
from msgcenter.filepush.source import (
    FileFormat,
    Item,
    detect_format,
    read_items,
    scan,
)
from msgcenter.render import Ctx, load_ctx
from msgcenter.render.ctx import items_of

#: ctx documents that exercise render.ctx's XML rules
CTXS = [
    "<ctx/>",
    "<ctx>just text</ctx>",
    '<ctx lang="fr"/>',
    '<ctx lang="fr">texte</ctx>',
    """<ctx>
      <client firstname="Ann" vip="false"><lastname>Lee</lastname><points>0</points></client>
      <order id="7"><total currency="EUR">12.50</total>
        <article sku="A" qty="2"/><article sku="B" qty="1"/>
      </order>
      <note>Hello <b>you</b> &amp; <i>them</i>!</note>
      <empty/>
      <blank>   </blank>
    </ctx>""",
    # an attribute and an element of the same name; a repeated element between others
    '<ctx><x a="1"><a>2</a><b/><a>3</a></x></ctx>',
    # comments between elements, and after a leaf's text
    "<ctx><!-- c --><c>one</c><?pi x?><d>two<!-- after --></d></ctx>",
    # CDATA is text; namespaces are dropped (render.ctx reads local names)
    '<ctx xmlns:p="urn:p"><p:q p:r="s"><![CDATA[<not markup>]]></p:q></ctx>',
    "<ctx><list><i>1</i><i>2</i><i>3</i></list><mixed>a<br/>b</mixed></ctx>",
]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def shape(value: Ctx) -> list:
    """Everything a template can reach from ``value``: each occurrence's text and children."""
    return [
        (str(occurrence), [(name, shape(child)) for name, child in items_of(occurrence)])
        for occurrence in value
    ]


@pytest.mark.parametrize("ctx", CTXS)
def test_an_xml_ctx_reads_as_the_soap_intake_stores_it(tmp_path, ctx):
    document = f'<events><rtEvent type="t" email="a@example.com">{ctx}</rtEvent></events>'
    [item] = read_items(write(tmp_path, "e.xml", document), FileFormat.XML, None)
    assert item.body is not None
    pushed = orjson.loads(item.body)["ctx"]
    # the SOAP adapter stores the exclusive canonical form of the <ctx> element
    element = etree.fromstring(document.encode()).find("rtEvent/ctx")
    stored = etree.tostring(element, method="c14n", exclusive=True).decode()
    assert shape(load_ctx(orjson.dumps(pushed).decode(), "json")) == shape(load_ctx(stored, "xml"))


def test_xml_attributes_take_their_rest_names(tmp_path):
    document = """<?xml version="1.0"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
                  xmlns:urn="urn:nms:batchEvent">
 <soapenv:Body><urn:PushEvents><urn:domEventCollection><events>
  <batchEvent type="welcome" email="ann@example.com" emailFormat="2" wishedChannel="0"
     externalId="42" correlationId="c-1" mobilePhone="+33600000000" origin="crm" tier="gold">
    <mobileApp uuid="app-1"/>
    <ctx><client firstname="Ann"/></ctx>
  </batchEvent>
  <urn:batchEvent type="second"/>
 </events></urn:domEventCollection></urn:PushEvents></soapenv:Body>
</soapenv:Envelope>
"""
    first, second = read_items(write(tmp_path, "e.xml", document), FileFormat.XML, None)
    # a start tag written on several lines is at the line where it ends (libxml2 says so)
    assert (first.line, first.queue, second.line, second.queue) == (6, Queue.BATCH, 10, Queue.BATCH)
    assert orjson.loads(first.body) == {
        "type": "welcome",
        "email": "ann@example.com",
        "email_format": "2",
        "wished_channel": "0",
        "external_id": "42",
        "correlation_id": "c-1",
        "mobile_phone": "+33600000000",
        "origin": "crm",
        "tier": "gold",
        "mobile_app_uuid": "app-1",
        "ctx": {"client": {"@firstname": "Ann"}},
    }
    assert orjson.loads(second.body) == {"type": "second"}


def test_comments_inside_a_leaf_vanish_and_its_text_joins(tmp_path):
    # (the SOAP intake keeps comments in the stored ctx, and render.ctx then reads only
    # the text before the first one: "one" and "")
    document = (
        "<e><rtEvent type='t'><ctx><c>one<!-- x -->two</c><d><?pi x?>three</d></ctx></rtEvent></e>"
    )
    [item] = read_items(write(tmp_path, "e.xml", document), FileFormat.XML, None)
    assert orjson.loads(item.body)["ctx"] == {"c": "onetwo", "d": "three"}


def test_an_xml_element_of_the_other_queue_is_refused_when_a_queue_is_chosen(tmp_path):
    document = '<e>\n<rtEvent type="a"/>\n<batchEvent type="b"/>\n</e>'
    items = list(read_items(write(tmp_path, "e.xml", document), FileFormat.XML, Queue.RT))
    assert [(i.line, i.queue, i.refusal) for i in items] == [
        (2, Queue.RT, None),
        (3, None, "<batchEvent> in a push to the rt queue (--queue rt takes <rtEvent> elements)"),
    ]


def test_xml_that_is_not_well_formed_ends_the_reading_at_its_line(tmp_path):
    document = '<e>\n<rtEvent type="a"/>\n<rtEvent type="b">\n</e>\n'
    first, broken = read_items(write(tmp_path, "e.xml", document), FileFormat.XML, None)
    assert first.body is not None
    assert broken.last and broken.line == 4
    assert broken.refusal.startswith("not well-formed XML")


def test_a_dtd_is_refused(tmp_path):
    document = '<!DOCTYPE e [<!ENTITY x "boom">]>\n<e><rtEvent type="a">&x;</rtEvent></e>'
    [refused] = read_items(write(tmp_path, "e.xml", document), FileFormat.XML, None)
    assert refused.last and "DTD" in refused.refusal


def test_json_lines_are_sent_as_written_and_bad_lines_are_refused_by_number(tmp_path):
    lines = [
        '\ufeff{"type": "a", "email": "a@example.com"}',
        "",
        '{"type": "b", "n": 1.50}',
        "{not json",
        "[1, 2]",
        "   ",
        '"text"',
        '{"type": "c"}',
    ]
    items = list(read_items(write(tmp_path, "e.jsonl", "\n".join(lines)), FileFormat.JSONL, None))
    assert [(i.line, i.body, i.queue) for i in items if i.body] == [
        (1, b'{"type": "a", "email": "a@example.com"}', Queue.RT),
        (3, b'{"type": "b", "n": 1.50}', Queue.RT),
        (8, b'{"type": "c"}', Queue.RT),
    ]
    refused = {i.line: i.refusal for i in items if i.body is None}
    assert refused[4].startswith("not valid JSON: ")
    assert refused == {
        4: refused[4],
        5: "not a JSON object but a JSON array",
        7: "not a JSON object but a JSON string",
    }
    assert all(isinstance(i, Item) and not i.last for i in items)


def test_the_format_comes_from_the_extension_or_the_content(tmp_path):
    assert detect_format(write(tmp_path, "a.ndjson", "<x/>")) is FileFormat.JSONL
    assert detect_format(write(tmp_path, "a.XML", "{}")) is FileFormat.XML
    assert detect_format(write(tmp_path, "events.txt", "\n  <e/>")) is FileFormat.XML
    assert detect_format(write(tmp_path, "events.txt", '{"type": "a"}')) is FileFormat.JSONL


def test_a_scan_counts_events_and_hashes_the_content(tmp_path):
    jsonl = write(tmp_path, "a.jsonl", '{"type": "a"}\n\n{"type": "b"}\n')
    counted = scan(jsonl, FileFormat.JSONL, digest=True)
    assert counted.events == 2 and len(counted.digest) == 64
    assert scan(jsonl, FileFormat.JSONL, digest=False).digest is None
    many = "<e>" + "".join(f'<urn:rtEvent type="t{i}"/>' for i in range(50_000)) + "</e>"
    assert scan(write(tmp_path, "a.xml", many), FileFormat.XML, digest=False).events == 50_000
