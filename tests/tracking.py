"""Helpers for tracking tests: an execution instance that sends tracked mail, and its links."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from html import unescape
from typing import Any
from urllib.parse import urlsplit

from msgcenter.store.database import Database
from tests.conftest import FAST_PROCESSING, RunningServer, add_operator, start_exec_server
from tests.processing import ADMIN, order_publication

#: where the tracked links of the tests point (the tests call the server's own URL instead)
TRACKING_BASE = "https://t.shop.example"
HTML = (
    "<html><body><p>Hello {{ ctx.client.firstname }}</p>"
    '<a href="https://shop.example/orders/{{ ctx.order.id }}?tab=items&amp;from=mail">order</a>'
    ' <a href="mailto:care@example.com">write to us</a>{% include "footer" %}</body></html>'
)


def tracked_publication(**changes: Any) -> dict[str, Any]:
    """The sample publication with tracking on and a web link in its HTML."""
    spec = order_publication(**changes)
    spec["content"].update(tracking=True, html=HTML)
    return spec


@contextmanager
def tracking_server(db: Database, smtp_port: int) -> Iterator[RunningServer]:
    """An execution instance with its workflows, sending to ``smtp_port``, tracking to TRACKING_BASE."""
    add_operator(db, *ADMIN)
    threaded, running = start_exec_server(
        db,
        processing=dict(FAST_PROCESSING),
        smtp={"host": "127.0.0.1", "port": smtp_port, "timeout_seconds": 5},
        tracking={"base_url": TRACKING_BASE},
    )
    with threaded:
        yield running


def tracked_urls(html: str) -> tuple[str, str, str]:
    """The click URL, the mailto link and the open pixel URL of a sent tracked message."""
    click, mailto = (unescape(u) for u in re.findall(r'href="([^"]*)"', html))
    (pixel,) = (unescape(u) for u in re.findall(r'<img src="([^"]*)"', html))
    return click, mailto, pixel


def local(server: RunningServer, url: str) -> str:
    """``url`` (on TRACKING_BASE) as served by ``server``."""
    assert url.startswith(TRACKING_BASE + "/t/"), url
    parts = urlsplit(url)
    return f"{server.url}{parts.path}" + (f"?{parts.query}" if parts.query else "")
