"""Helpers for control-instance tests: a control server, execution instances with their own
databases, and servers that misbehave (garbage answers, silence, untrusted TLS)."""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy
import trustme
from cryptography.fernet import Fernet

from msgcenter.control.app import create_control_app
from msgcenter.designs import TemplateContent
from msgcenter.errors import ConflictError
from msgcenter.events.model import Channel
from msgcenter.settings import Settings
from msgcenter.store import control_design
from msgcenter.store.database import Database
from msgcenter.store.schema import upgrade
from tests.conftest import (
    FAST_PROCESSING,
    PG_ADMIN_URL,
    RunningServer,
    ThreadedServer,
    add_operator,
    free_port,
    start_exec_server,
)

KEY = Fernet.generate_key().decode()
#: the control instance's own operator
CONTROL_ADMIN = ("ctl", "ctl-password")
#: the execution instances' operator, as registered on the control instance
EXEC_LOGIN, EXEC_PASSWORD = "mc", "Exec-Pa55word-never-shown"


@contextmanager
def another_database(
    db: Database, tmp_path: Path, name: str, *, migrated: bool = True
) -> Iterator[Database]:
    """Another database on ``db``'s store (a SQLite file, or a PostgreSQL database), migrated."""
    if db.is_sqlite:
        other = Database(f"sqlite:///{tmp_path / name}.db")
        if migrated:
            upgrade(other)
        else:
            other.engine.connect().close()  # creates the empty file
        yield other
        other.dispose()
        return
    database_name = f"msgcenter_test_{name}_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{database_name}"'))
    other = Database(PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database_name)
    try:
        if migrated:
            upgrade(other)
        yield other
    finally:
        other.dispose()
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)'))
        admin.dispose()


def control_settings(db: Database, **control: Any) -> Settings:
    """Settings of a control instance on ``db``; ``control`` overrides ``[control]`` settings."""
    return Settings(
        database_url=db.url,
        control={"credentials_key": KEY, "instance_timeout_seconds": 3, **control},
    )


@contextmanager
def control_server(db: Database, **control: Any) -> Iterator[RunningServer]:
    """A control instance on ``db`` with its workflows and the operator ``CONTROL_ADMIN``;
    ``control`` overrides ``[control]`` settings."""
    with contextlib.suppress(ConflictError):  # a control instance started again on ``db``
        add_operator(db, *CONTROL_ADMIN, rights="mc_admin")
    settings = control_settings(db, **control)
    with ThreadedServer(create_control_app(settings, db)) as url:
        yield RunningServer(url, db, settings)


def exec_server(
    db: Database, smtp_port: int | None = None, *, port: int | None = None
) -> tuple[ThreadedServer, RunningServer]:
    """An execution instance on ``db`` (first item: the context), on ``port`` if given (to come
    back where it was); with ``smtp_port``, its workflows run and send there."""
    processing: dict[str, Any] = {}
    if smtp_port is not None:
        processing = {
            "processing": dict(FAST_PROCESSING),
            "smtp": {
                "host": "127.0.0.1",
                "port": smtp_port,
                "timeout_seconds": 5,
                "helo_name": "msgcenter.test",
            },
        }
    threaded, running = start_exec_server(db, **processing)
    if port is not None:
        threaded.port = threaded.server.config.port = port
        running.url = f"http://127.0.0.1:{port}"
    return threaded, running


def call(control: RunningServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """Call the control instance's API as its administrator."""
    return httpx.request(
        method, f"{control.url}/api/v1{path}", auth=CONTROL_ADMIN, timeout=30, **kwargs
    )


def register(control: RunningServer, name: str, url: str, **fields: Any) -> dict[str, Any]:
    """Register an execution instance on the control instance."""
    body = {
        "name": name,
        "label": f"Execution {name}",
        "url": url,
        "login": EXEC_LOGIN,
        "password": EXEC_PASSWORD,
    }
    answer = call(control, "POST", "/instances", json=body | fields)
    assert answer.status_code == 201, answer.text
    return answer.json()


def order_template(
    db: Database, *, html: str | None = None, name: str = "order_mail", folder: str | None = None
) -> None:
    """An email template for event type order_confirmation, with a block, in the control store."""
    now = datetime.now(UTC)
    content = TemplateContent(
        sender="Shop <shop@example.com>",
        subject="Order {{ ctx.order.id }} confirmed",
        html=html or '<p>Hello {{ ctx.client.firstname }}</p>{% include "footer" %}',
        text="Hello {{ ctx.client.firstname }}, order {{ ctx.order.id }} is confirmed.",
    )
    with db.write() as conn:
        control_design.add_event_type(conn, "order_confirmation", "Order confirmed", now)
        control_design.add_block(conn, "footer", "<p>Shop Ltd for {{ event.email }}</p>", now)
        control_design.add_template(
            conn,
            name,
            "Order confirmation",
            "order_confirmation",
            Channel.EMAIL,
            folder,
            content,
            now,
        )


@contextmanager
def garbage_server() -> Iterator[str]:
    """An HTTP server that answers every request with an HTML page."""

    class Html(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = b"<html><body>It works!</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_DELETE = _answer  # noqa: N815

        def log_message(self, *_args: object) -> None:
            pass

    with _serving(Html) as url:
        yield url


@contextmanager
def tls_server() -> Iterator[str]:
    """An HTTPS server whose certificate comes from a CA nobody trusts."""
    certificate = trustme.CA().issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    with _serving(http.server.BaseHTTPRequestHandler, context) as url:
        yield url.replace("http://", "https://")


@contextmanager
def silent_server() -> Iterator[str]:
    """A port that accepts connections (the kernel completes them) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def nothing_listening() -> str:
    """A URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@contextmanager
def _serving(
    handler: type[http.server.BaseHTTPRequestHandler], context: ssl.SSLContext | None = None
) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def control_cli(database_url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``msgcenter control`` command against the control database."""
    return subprocess.run(
        [sys.executable, "-m", "msgcenter", "control", *args, "--db", database_url],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={
            **os.environ,
            "COLUMNS": "250",
            "MSGCENTER_LOGGING__LEVEL": "warning",
            "MSGCENTER_CONTROL__CREDENTIALS_KEY": KEY,
        },
        timeout=60,
    )
