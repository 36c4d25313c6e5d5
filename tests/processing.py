"""Helpers for processing tests: an execution instance with workflows on, relaying to a test SMTP server."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from msgcenter.store.database import Database
from msgcenter.store.tables import delivery_log, event
from tests.conftest import FAST_PROCESSING, RunningServer, add_operator, start_exec_server

FIXTURES = Path(__file__).parent / "fixtures"
ADMIN = ("mc", "secret")


def order_publication(**changes: Any) -> dict[str, Any]:
    """The sample order-confirmation publication, with ``changes`` applied at the top level."""
    spec = tomllib.loads((FIXTURES / "order_confirmation.toml").read_text())
    spec.update(changes)
    return spec


@contextmanager
def processing_server(db: Database, smtp_port: int, **processing: Any) -> Iterator[RunningServer]:
    """An execution instance with its workflows running, relaying to 127.0.0.1:``smtp_port``."""
    with relaying_server(db, smtp_port, processing=processing) as running:
        yield running


@contextmanager
def relaying_server(
    db: Database,
    smtp_port: int,
    *,
    smtp: dict[str, Any] | None = None,
    processing: dict[str, Any] | None = None,
    **settings: Any,
) -> Iterator[RunningServer]:
    """The same, with ``smtp`` and ``processing`` settings added to the test ones, and any
    other ``settings`` (sections as dicts)."""
    add_operator(db, *ADMIN)
    threaded, running = start_exec_server(
        db,
        processing={**FAST_PROCESSING, **(processing or {})},
        smtp={
            "host": "127.0.0.1",
            "port": smtp_port,
            "timeout_seconds": 5,
            "helo_name": "msgcenter.test",
            **(smtp or {}),
        },
        **settings,
    )
    with threaded:
        yield running


def publish(server: RunningServer, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Publish through the admin API, as the control instance does."""
    answer = httpx.put(f"{server.url}/api/v1/admin/publications", json=spec, auth=ADMIN)
    assert answer.status_code == 201, answer.text
    return answer.json()


def push_rest(
    server: RunningServer, events: list[dict[str, Any]] | dict[str, Any], queue: str = "rt"
) -> list[int]:
    """Push over REST; returns the ids."""
    answer = httpx.post(f"{server.url}/api/v1/events/{queue}", json=events, auth=ADMIN, timeout=30)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return [body["id"]] if "id" in body else body["ids"]


def statuses(db: Database, ids: list[int]) -> dict[int, str]:
    """Event id -> status label."""
    from msgcenter.events.model import EventStatus

    with db.read() as conn:
        rows = conn.execute(select(event.c.id, event.c.status).where(event.c.id.in_(ids)))
        return {i: EventStatus(s).label for i, s in rows}


def all_final(db: Database, ids: list[int]) -> bool:
    """Whether every event of ``ids`` has left pending / pending_delivery."""
    return all(s not in ("pending", "pending_delivery") for s in statuses(db, ids).values())


def delivery_logs(db: Database, event_id: int) -> list[dict[str, Any]]:
    """The delivery logs of one event."""
    with db.read() as conn:
        return [
            dict(r)
            for r in conn.execute(
                select(delivery_log).where(delivery_log.c.event_id == event_id)
            ).mappings()
        ]


def event_json(server: RunningServer, event_id: int) -> dict[str, Any]:
    """GET /api/v1/events/{id}."""
    answer = httpx.get(f"{server.url}/api/v1/events/{event_id}", auth=ADMIN)
    assert answer.status_code == 200, answer.text
    return answer.json()
