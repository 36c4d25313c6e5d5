"""The same order-confirmation template renders identically from an XML and a JSON ctx (SPEC §3.6)."""

from datetime import UTC, datetime

import pytest

from msgcenter.render import MessageContent, compile_content, load_ctx

ORDER_XML = """<ctx>
  <client firstname="Ann" lastname="O'Neil"><email>ann@example.com</email></client>
  <order id="A-1042" date="2026-03-14T09:30:00+00:00">
    <total currency="EUR">1234.50</total>
    <shipping>4.90</shipping>
    <article sku="BK-1" qty="2"><label>Blue kettle &amp; lid</label><price>19.90</price></article>
    <article sku="TP-7" qty="1"><label>Teapot &lt;large&gt;</label><price>34.00</price></article>
    <article sku="MG-3" qty="4"><label>Mug</label><price>7.50</price></article>
  </order>
  <store url="https://shop.example.com/orders?id=A-1042&amp;ref=mail"/>
</ctx>"""

ORDER_JSON = """{
  "client": {"firstname": "Ann", "lastname": "O'Neil", "email": "ann@example.com"},
  "order": {
    "id": "A-1042", "date": "2026-03-14T09:30:00+00:00",
    "total": {"@currency": "EUR", "#text": "1234.50"},
    "shipping": 4.90,
    "article": [
      {"sku": "BK-1", "qty": 2, "label": "Blue kettle & lid", "price": 19.90},
      {"sku": "TP-7", "qty": 1, "label": "Teapot <large>", "price": 34.00},
      {"sku": "MG-3", "qty": 4, "label": "Mug", "price": 7.50}
    ]
  },
  "store": {"url": "https://shop.example.com/orders?id=A-1042&ref=mail"}
}"""

ORDER_SUBJECT = "Order {{ ctx.order.id }} confirmed, {{ ctx.client.firstname }}!"

ORDER_HTML = """<!DOCTYPE html>
<html lang="{{ event.language|default('en') }}">
<head>
  <meta charset="utf-8">
  <title>Your order {{ ctx.order.id }}</title>
  <style>
    body { font-family: Helvetica, Arial, sans-serif; color: #222; margin: 0; padding: 0; }
    table.items { border-collapse: collapse; width: 100%; }
    table.items td, table.items th { border-bottom: 1px solid #ddd; padding: 8px; text-align: left; }
    .total { font-weight: bold; font-size: 18px; }
    .muted { color: #888; font-size: 12px; }
    .button { display: inline-block; background: #0a7; color: #fff; padding: 10px 18px;
              border-radius: 4px; text-decoration: none; }
    @media (max-width: 600px) { .container { width: 100% !important; } }
  </style>
</head>
<body>
<span style="display:none">Your order {{ ctx.order.id }} is confirmed and being prepared.</span>
<table class="container" width="600" align="center" cellpadding="0" cellspacing="0" role="presentation">
<tr><td style="padding: 24px 32px; background: #f6f6f6;">
{% include "header" %}
</td></tr>
<tr><td style="padding: 24px 32px;">
  <h1>Thank you, {{ ctx.client.firstname }} {{ ctx.client.lastname }}!</h1>
  <p>We have received your order <strong>{{ ctx.order.id|required }}</strong>
     placed on {{ ctx.order.date|date("long") }}. Here is what you ordered:</p>
  <table class="items">
    <tr><th>Item</th><th>Reference</th><th>Quantity</th><th>Price</th></tr>
{% for article in ctx.order.article %}
    <tr class="{{ loop.cycle('odd', 'even') }}">
      <td>{{ article.label }}</td>
      <td>{{ article.sku }}</td>
      <td>{{ article.qty }}</td>
      <td>{{ (article.price * article.qty)|currency(ctx.order.total.currency) }}</td>
    </tr>
{% endfor %}
  </table>
  <p>{{ ctx.order.article|length }} lines, shipping {{ ctx.order.shipping|currency("EUR") }}.</p>
  <p class="total">Total: {{ ctx.order.total|currency(ctx.order.total.currency) }}</p>
{% if ctx.client.vip %}
  <p>As a VIP customer you get free returns.</p>
{% else %}
  <p>Returns are accepted within 30 days of delivery.</p>
{% endif %}
  <p><a href="{{ ctx.store.url }}">Follow your order</a> or
     <a href="https://shop.example.com/help?q={{ ctx.order.id|urlencode }}">ask for help</a>.</p>
  <p><a class="button" href="{{ ctx.store.url }}">See my order</a></p>
  <p class="muted">This message was sent to {{ event.email }} about order {{ ctx.order.id }}.
     Reference {{ event.external_id|default("-") }}.</p>
</td></tr>
<tr><td style="padding: 16px 32px; background: #f6f6f6;" class="muted">
  <a href="https://shop.example.com/account">My account</a> |
  <a href="https://shop.example.com/help">Help centre</a> |
  <a href="https://shop.example.com/returns">Returns</a> |
  <a href="https://shop.example.com/privacy">Privacy</a><br>
{% include "footer" %}
</td></tr>
</table>
</body>
</html>
"""

ORDER_TEXT = """{% include "header" %}
Thank you, {{ ctx.client.firstname }} {{ ctx.client.lastname }}!

We have received your order {{ ctx.order.id }} placed on {{ ctx.order.date|date("long") }}.

{% for article in ctx.order.article %}
- {{ article.qty }} x {{ article.label }} ({{ article.sku }}): {{ (article.price * article.qty)|currency("EUR") }}
{% endfor %}

Shipping: {{ ctx.order.shipping|currency("EUR") }}
Total: {{ ctx.order.total|currency(ctx.order.total.currency) }}

Follow your order: {{ ctx.store.url }}
{% include "footer" %}
"""

ORDER_BLOCKS = {
    "header": "{{ 'Example Shop' }} — order {{ ctx.order.id }}\n",
    "footer": "Example Shop, 1 rue de la Paix, Paris. Sent to {{ event.email }}.\n",
}

EVENT = {
    "id": 42,
    "type": "order_confirmation",
    "email": "ann@example.com",
    "external_id": "C-77",
    "language": "en",
    "created": datetime(2026, 3, 14, 9, 31, tzinfo=UTC),
}


@pytest.fixture(scope="module")
def compiled():
    content = MessageContent(subject=ORDER_SUBJECT, html=ORDER_HTML, text=ORDER_TEXT)
    return compile_content(content, ORDER_BLOCKS)


def test_xml_and_json_ctx_render_identically(compiled):
    from_xml = compiled.render(EVENT, load_ctx(ORDER_XML, "xml"))
    from_json = compiled.render(EVENT, load_ctx(ORDER_JSON, "json"))
    assert from_xml == from_json


def test_the_order_confirmation_reads_as_expected(compiled):
    message = compiled.render(EVENT, load_ctx(ORDER_XML, "xml"))
    assert message.subject == "Order A-1042 confirmed, Ann!"
    html, text = message.html, message.text
    # autoescaped in HTML, as written in text
    assert "Thank you, Ann O&#39;Neil!" in html
    assert "Thank you, Ann O'Neil!" in text
    assert "<td>Teapot &lt;large&gt;</td>" in html
    assert "Blue kettle & lid" in text
    assert "Blue kettle &amp; lid" in html
    assert 'href="https://shop.example.com/orders?id=A-1042&amp;ref=mail"' in html
    assert "q=A-1042" in html
    # one row per article, computed and formatted amounts
    assert html.count("<tr class=") == 3
    assert "<td>€39.80</td>" in html and "<td>€30.00</td>" in html
    assert "3 lines, shipping €4.90." in html
    assert "Total: €1,234.50" in html
    assert "placed on March 14, 2026" in html
    assert "Returns are accepted within 30 days" in html
    assert "Reference C-77." in html
    assert "- 2 x Blue kettle & lid (BK-1): €39.80\n" in text
    # blocks, included in both parts
    assert html.count("Example Shop") == 2 and text.count("Example Shop") == 2
    assert message.sms == message.push_title == message.push_body == ""


def test_the_same_template_in_french(compiled):
    message = compiled.render({**EVENT, "language": "fr"}, load_ctx(ORDER_JSON, "json"))
    assert "Total: 1\u202f234,50\xa0€" in message.html
    assert "placed on 14 mars 2026" in message.html


def test_the_order_with_a_single_article_still_loops():
    xml = ORDER_XML.replace(
        """<article sku="TP-7" qty="1"><label>Teapot &lt;large&gt;</label><price>34.00</price></article>
    <article sku="MG-3" qty="4"><label>Mug</label><price>7.50</price></article>""",
        "",
    )
    data = ORDER_JSON.replace(
        """,
      {"sku": "TP-7", "qty": 1, "label": "Teapot <large>", "price": 34.00},
      {"sku": "MG-3", "qty": 4, "label": "Mug", "price": 7.50}""",
        "",
    )
    compiled = compile_content(MessageContent(html=ORDER_HTML), ORDER_BLOCKS)
    from_xml = compiled.render(EVENT, load_ctx(xml, "xml"))
    from_json = compiled.render(EVENT, load_ctx(data, "json"))
    assert from_xml == from_json
    assert from_xml.html.count("<tr class=") == 1
    assert "1 lines" in from_xml.html
