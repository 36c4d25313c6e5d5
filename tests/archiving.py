"""Helpers for archiving tests (and bench/archive.py): more databases reused across the session,
an execution instance registered on a control instance (see :mod:`tests.control`), and final
events written straight into an execution database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy
from sqlalchemy import Connection, func, insert, select, text

from msgcenter.store import workflows as workflow_store
from msgcenter.store.database import Database
from msgcenter.store.schema import upgrade
from msgcenter.store.tables import archived_event, delivery, event, metadata
from tests.conftest import PG_ADMIN_URL, RunningServer
from tests.control import CONTROL_ADMIN

TEMPLATE = "order_confirmation_email"


class PgDatabases:
    """Extra PostgreSQL databases for tests that run several instances: each created and migrated
    once per session, emptied each time it is handed out, dropped at the end."""

    def __init__(self) -> None:
        self._admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        self._prefix = f"msgcenter_test_{uuid.uuid4().hex[:8]}"
        self._urls: dict[str, str] = {}

    def empty(self, role: str) -> str:
        """The URL of this session's ``role`` database, emptied."""
        url = self._urls.get(role)
        if url is None:
            name = f"{self._prefix}_{role}"
            with self._admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            url = self._urls[role] = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
            migrated = Database(url)
            upgrade(migrated)
            migrated.dispose()
            return url
        engine = sqlalchemy.create_engine(url)
        tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))
        engine.dispose()
        return url

    def drop_all(self) -> None:
        with self._admin.connect() as conn:
            for url in self._urls.values():
                conn.execute(
                    text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
                )
        self._admin.dispose()


@contextmanager
def pooled_database(
    beside: Database, role: str, tmp_path: Path, pg: PgDatabases | None
) -> Iterator[Database]:
    """A second migrated, empty database on the store of ``beside`` (on PostgreSQL, the
    session's database for ``role``, emptied)."""
    if beside.dialect == "sqlite":
        url = f"sqlite:///{tmp_path / f'{role}.db'}"
        migrated = Database(url)
        upgrade(migrated)
        migrated.dispose()
    else:
        assert pg is not None
        url = pg.empty(role)
    database = Database(url)
    try:
        yield database
    finally:
        database.dispose()


def register(
    control: RunningServer,
    name: str,
    exec_url: str,
    login: str,
    password: str,
    *,
    method: str = "web",
    database_url: str | None = None,
    folder: str | None = None,
    paused: bool = True,
    create_workflow: bool = True,
) -> dict[str, Any]:
    """Register and initialize an execution instance through the control instance's API.

    ``paused`` creates its archiving workflow paused, so that archives run only when a test
    asks for them; else the workflow is created running, as **Create the archiving
    workflow** does (unless ``create_workflow`` is False: then it has none).
    """
    if paused:
        pause(control.db, f"mcSynch_{name}")
    account: dict[str, Any] = {
        "name": name,
        "label": f"execution instance {name}",
        "url": exec_url,
        "login": login,
        "password": password,
        "archive_method": method,
        "folder": folder,
    }
    if database_url is not None:
        account["database_url"] = database_url
    added = httpx.post(
        f"{control.url}/api/v1/instances", json=account, auth=CONTROL_ADMIN, timeout=30
    )
    assert added.status_code == 201, added.text
    initialized = httpx.post(
        f"{control.url}/api/v1/instances/{name}/initialize", auth=CONTROL_ADMIN, timeout=30
    )
    assert initialized.status_code == 200, initialized.text
    if create_workflow and not paused:
        created = httpx.post(
            f"{control.url}/api/v1/archives/{name}/workflow", auth=CONTROL_ADMIN, timeout=30
        )
        assert created.status_code == 201, created.text
    return initialized.json()


def pause(db: Database, workflow: str) -> None:
    """Create a workflow's row in state paused (its runner then leaves it idle)."""
    now = datetime.now(UTC)
    with db.write() as conn:
        workflow_store.ensure(conn, [workflow], now)
        workflow_store.set_state(conn, workflow, "paused", now)


def run_archive(control: RunningServer, name: str) -> httpx.Response:
    """``POST /api/v1/archives/{name}/run``."""
    return httpx.post(f"{control.url}/api/v1/archives/{name}/run", auth=CONTROL_ADMIN, timeout=300)


def archive_status(control: RunningServer, name: str) -> dict[str, Any]:
    """The entry of ``name`` in ``GET /api/v1/archives``."""
    answer = httpx.get(f"{control.url}/api/v1/archives", auth=CONTROL_ADMIN, timeout=30)
    assert answer.status_code == 200, answer.text
    return next(a for a in answer.json() if a["instance"] == name)


def archived_count(db: Database) -> int:
    """Archived events in a control database."""
    with db.read() as conn:
        return conn.execute(select(func.count()).select_from(archived_event)).scalar_one()


# -- final events written straight into an execution database ---------------------------------

#: event status by ``id % 20``: mostly sent, some failed, ignored and not taken into account
STATUS_SQL = "CASE id % 20 WHEN 0 THEN 5 WHEN 10 THEN 4 WHEN 5 THEN 3 ELSE 2 END"
#: the delivery-log status of each event status that has a log
LOG_STATUS_SQL = "CASE status WHEN 2 THEN 1 WHEN 4 THEN 2 ELSE 3 END"


def fill_final_events(
    db: Database, count: int, *, first_id: int = 1, start: datetime, spread: timedelta
) -> None:
    """Write ``count`` events in a final status, ids from ``first_id``, last changed evenly over
    ``spread`` from ``start``, with their delivery logs (ids equal to the events'); PostgreSQL
    generates them server-side, which writes a million in well under a minute."""
    last_id = first_id + count - 1
    step_us = max(int(spread / timedelta(microseconds=1)) // max(count, 1), 1)
    with db.write() as conn:
        delivery_id = _delivery(conn, start)
        if db.dialect == "postgresql":
            conn.execute(
                text(
                    "INSERT INTO event (id, queue, type, status, email, wished_channel, email_format, "
                    "ctx, ctx_format, error_count, process_requested_on, created, last_modified, "
                    "publication_id, delivery_id, delivery_log_id) "
                    f"SELECT id, 'rt', 'order_confirmation', {STATUS_SQL}, 'user' || id || '@example.com', "
                    "0, 0, '{}', 'json', 0, t - interval '1 second', t - interval '1 second', t, 1, "
                    f"CASE WHEN {STATUS_SQL} = 5 THEN NULL ELSE CAST(:delivery AS bigint) END, "
                    f"CASE WHEN {STATUS_SQL} = 5 THEN NULL ELSE id END "
                    "FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS id, "
                    "LATERAL (SELECT CAST(:start AS timestamptz) + (id - :first) * CAST(:step AS bigint) "
                    "* interval '1 microsecond' AS t) AS moment"
                ),
                {
                    "first": first_id,
                    "last": last_id,
                    "start": start,
                    "step": step_us,
                    "delivery": delivery_id,
                },
            )
            conn.execute(text(f"SELECT setval('event_id_seq', {last_id})"))
        else:
            rows = []
            for event_id in range(first_id, last_id + 1):
                moment = start + timedelta(microseconds=(event_id - first_id) * step_us)
                status = {0: 5, 10: 4, 5: 3}.get(event_id % 20, 2)
                rows.append(
                    {
                        "id": event_id,
                        "queue": "rt",
                        "type": "order_confirmation",
                        "status": status,
                        "email": f"user{event_id}@example.com",
                        "wished_channel": 0,
                        "email_format": 0,
                        "ctx": "{}",
                        "ctx_format": "json",
                        "error_count": 0,
                        "process_requested_on": moment - timedelta(seconds=1),
                        "created": moment - timedelta(seconds=1),
                        "last_modified": moment,
                        "publication_id": 1,
                        "delivery_id": None if status == 5 else delivery_id,
                        "delivery_log_id": None if status == 5 else event_id,
                    }
                )
            conn.execute(insert(event), rows)
        # one delivery log per event that got as far as routing, derived on the server
        conn.execute(
            text(
                "INSERT INTO delivery_log (id, delivery_id, event_id, publication_id, queue, channel, "
                "address, status, failure_type, failure_reason, attempts, due, valid_until, created, "
                "last_modified, sent_at) "
                f"SELECT id, delivery_id, id, 1, 'rt', 0, email, {LOG_STATUS_SQL}, "
                "CASE status WHEN 4 THEN 'hard' WHEN 3 THEN 'quarantined' END, "
                "CASE status WHEN 4 THEN '550 5.1.1 no such user' END, "
                "CASE status WHEN 3 THEN 0 ELSE 1 END, created, created, created, last_modified, "
                "CASE status WHEN 2 THEN last_modified END "
                "FROM event WHERE id BETWEEN :first AND :last AND status <> 5"
            ),
            {"first": first_id, "last": last_id},
        )
        if db.dialect == "postgresql":
            conn.execute(text(f"SELECT setval('delivery_log_id_seq', {last_id})"))


def _delivery(conn: Connection, moment: datetime) -> int:
    found = conn.execute(select(delivery.c.id).where(delivery.c.template == TEMPLATE)).scalar()
    if found is not None:
        return found
    return conn.execute(
        insert(delivery)
        .values(
            template=TEMPLATE,
            queue="rt",
            channel=0,
            folder="",
            month=moment.strftime("%Y-%m"),
            created=moment,
        )
        .returning(delivery.c.id)
    ).scalar_one()
